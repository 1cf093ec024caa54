"""How ``raftq_worker`` runs one job of a Django task (in the worker's threads).

The task is imported by the path its job carries and called as Django calls a task: with a
``TaskContext`` first when it ``takes_context``, coroutine functions through ``Task.call``
(asgiref's ``async_to_sync``). Its return value, made JSON as Django requires
(``normalize_json``; a value that cannot be is a failure), becomes the job's result. An
exception fails the attempt: the worker records the exception's class path and traceback as
the job's error (``convert.error_text``, read back as the result's ``TaskError``), and the job
is retried with the cluster's backoff while it has attempts left (``OPTIONS['max_attempts']``).
Django's ``task_started`` and ``task_finished`` signals are sent around each attempt, and the
database connections are closed before and after it as Django does around a request.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from django.db import close_old_connections
from django.utils import timezone

from raftq.contrib.django.compat import (
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from raftq.contrib.django.convert import error_text
from raftq.errors import Retry

if TYPE_CHECKING:
    from raftq.contrib.django.backend import RaftqBackend
    from raftq.worker import Job

__all__ = ["run_job"]


def run_job(backend: RaftqBackend, job: Job) -> Any:
    """Run the Django task of ``job``; return its JSON return value (the job's result).

    Raises:
        Retry: the task raised (the error carries its class path and traceback).
        TaskResultDoesNotExist: the job is not a Django task's, or its task does not import.
    """
    task = backend.task_of({"id": job.id, "queue": job.queue, "payload": job.payload})
    now = timezone.now()
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=str(job.id),
        status=TaskResultStatus("RUNNING"),
        enqueued_at=None,
        started_at=now,
        last_attempted_at=now,
        finished_at=None,
        args=job.payload.get("args", []),
        kwargs=job.payload.get("kwargs", {}),
        backend=backend.alias,
        errors=[],
        worker_ids=[""] * (job.attempt - 1) + [job.worker],
    )
    task_started.send(type(backend), task_result=result)
    close_old_connections()
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
        else:
            value = task.call(*result.args, **result.kwargs)
        value = normalize_json(value)
    except Exception as e:
        path = f"{type(e).__module__}.{type(e).__qualname__}"
        tb = "".join(traceback.format_exception(e))
        result.errors.append(TaskError(exception_class_path=path, traceback=tb))
        _finish(backend, result, TaskResultStatus("FAILED"))
        raise Retry(message=error_text(path, tb)) from e
    finally:
        close_old_connections()
    object.__setattr__(result, "_return_value", value)
    _finish(backend, result, TaskResultStatus("SUCCESSFUL"))
    return value


def _finish(backend: RaftqBackend, result: TaskResult[Any], status: TaskResultStatus) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    task_finished.send(type(backend), task_result=result)
