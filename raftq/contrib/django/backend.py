"""``RaftqBackend``: Django's task backend (``django.tasks``, DEP 14) on a raftq cluster.

A task's job carries ``{"task": <the task's import path>, "args": [...], "kwargs": {...},
"priority": <Django's priority>, "run_after_ms": <ms or null>}`` in the task's queue; its id is
the ``TaskResult``'s id. ``raftq_worker`` (a management command) runs them.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from raftq.client import Client, SyncClient
from raftq.contrib.django.compat import (
    BaseTaskBackend,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from raftq.contrib.django.convert import (
    STATUS_OF_STATE,
    from_ms,
    parse_error,
    raftq_priority,
    to_ms,
)
from raftq.errors import RaftqError, Rejected
from raftq.worker import Worker

__all__ = ["RaftqBackend"]

_OPTIONS = ("nodes", "config", "token", "max_attempts", "lease_ms", "timeout_ms", "retry_ms")

# Clients shared by every backend instance (Django makes one per thread) with the same
# connection settings: one SyncClient (its own thread and loop) per process, one Client per
# event loop (a Client belongs to the loop that first used it).
_lock = threading.Lock()
_sync_clients: dict[tuple[Any, ...], SyncClient] = {}
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Client]] = (
    weakref.WeakKeyDictionary()
)


class RaftqBackend(BaseTaskBackend):
    """Enqueues Django tasks as raftq jobs and reads their results back.

    ``TASKS = {"default": {"BACKEND": "raftq.contrib.django.RaftqBackend", "QUEUES": [...],
    "OPTIONS": {...}}}``; ``OPTIONS``:

    - ``nodes``: API addresses of some nodes (a list, or ``"host:port,host:port"``), or
      ``config``: the cluster's TOML file (its nodes' API addresses are used);
    - ``token``: the API token (a producer's or a worker's role, for the task's queues);
    - ``max_attempts``: of each job (default: the cluster's, 5): a task that raises is run
      again, with backoff, until it succeeds or its attempts are used up (then ``FAILED``);
      ``1`` for Django's own one-shot behaviour;
    - ``lease_ms``: each job's lease (default 30 000; the worker heartbeats it while the
      task runs); ``timeout_ms``, ``retry_ms``: those of the clients (``raftq.Client``).

    Priorities: Django's -100..100 in ten bands onto raftq's 0..9 (``convert.raftq_priority``;
    Django's default 0 is raftq's 4); ``run_after`` is the job's ``run_at_ms``; the task's
    ``queue_name`` is the raftq queue (``QUEUES`` lists those allowed, as in Django).
    """

    supports_defer = True
    supports_async_task = True  # the worker runs coroutine functions (asgiref's async_to_sync)
    supports_get_result = True  # any process reads a job's state from the cluster
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(params.get("OPTIONS") or {})
        problems = [f"unknown option {k!r}" for k in options if k not in _OPTIONS]
        nodes: Any = options.get("nodes")
        config = options.get("config")
        if (nodes is None) == (config is None):
            problems.append("give OPTIONS 'nodes' or 'config' (one of them)")
        elif config is None and not nodes:
            problems.append("OPTIONS 'nodes' is empty")
        elif config is not None:
            from raftq.config import load_config  # noqa: PLC0415 - only when used

            try:
                nodes = [n.api for n in load_config(Path(config)).nodes]
            except (OSError, RaftqError) as e:
                problems.append(f"OPTIONS 'config': {e}")
        for key in ("max_attempts", "lease_ms", "timeout_ms", "retry_ms"):
            value = options.get(key)
            if value is not None and (type(value) is not int or value <= 0):
                problems.append(f"OPTIONS {key!r} must be a positive integer, got {value!r}")
        if problems:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]: " + "; ".join(problems))
        self.nodes: Sequence[str] | str = nodes
        self.token: str | None = options.get("token")
        self.max_attempts: int | None = options.get("max_attempts")
        self.lease_ms: int | None = options.get("lease_ms")
        self._client_options: dict[str, Any] = {
            k: options[k] for k in ("timeout_ms", "retry_ms") if options.get(k) is not None
        }
        nodes_key = (nodes,) if isinstance(nodes, str) else tuple(nodes)
        self._key = (nodes_key, self.token, tuple(sorted(self._client_options.items())))

    # -- clients --------------------------------------------------------------------------

    @property
    def sync_client(self) -> SyncClient:
        """The process's ``SyncClient`` for this backend's cluster."""
        with _lock:
            client = _sync_clients.get(self._key)
            if client is None:
                client = SyncClient(self.nodes, token=self.token, **self._client_options)
                _sync_clients[self._key] = client
            return client

    @property
    def client(self) -> Client:
        """The running event loop's ``Client`` for this backend's cluster."""
        loop = asyncio.get_running_loop()
        with _lock:
            by_key = _clients.setdefault(loop, {})
            client = by_key.get(self._key)
            if client is None:
                client = Client(self.nodes, token=self.token, **self._client_options)
                by_key[self._key] = client
            return client

    def close(self) -> None:
        """Close the process's ``SyncClient`` of this backend's cluster (a later call makes a
        new one)."""
        with _lock:
            client = _sync_clients.pop(self._key, None)
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the running event loop's ``Client`` of this backend's cluster."""
        with _lock:
            client = _clients.get(asyncio.get_running_loop(), {}).pop(self._key, None)
        if client is not None:
            await client.close()

    # -- enqueue --------------------------------------------------------------------------

    def _job(self, task: Task[Any, Any], args: Any, kwargs: Any) -> dict[str, Any]:
        """The job's payload and enqueue options (``TypeError``: an argument is not JSON)."""
        run_after_ms = None
        if task.run_after is not None:
            when = task.run_after
            run_after_ms = to_ms(when if timezone.is_aware(when) else timezone.make_aware(when))
        payload = {
            "task": task.module_path,
            "args": normalize_json(list(args)),
            "kwargs": normalize_json(dict(kwargs)),
            "priority": task.priority,
            "run_after_ms": run_after_ms,
        }
        return {
            "queue": task.queue_name,
            "payload": payload,
            "priority": raftq_priority(task.priority),
            "run_at_ms": run_after_ms,
            "max_attempts": self.max_attempts,
            "lease_ms": self.lease_ms,
        }

    def _enqueued(self, task: Task[Any, Any], job_id: int, job: dict[str, Any]) -> TaskResult[Any]:
        payload = job["payload"]
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=str(job_id),
            status=TaskResultStatus("READY"),
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=payload["args"],
            kwargs=payload["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        """Enqueue one job of ``task`` (``SyncClient.enqueue``); its id is the result's."""
        self.validate_task(task)
        job = self._job(task, args, kwargs)
        job_id = self.sync_client.enqueue(**job)
        return self._enqueued(task, job_id, job)

    async def aenqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        """``enqueue`` with the event loop's ``Client``."""
        self.validate_task(task)
        job = self._job(task, args, kwargs)
        job_id = await self.client.enqueue(**job)
        return self._enqueued(task, job_id, job)

    # -- results --------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The task's result from ``GET /v1/jobs/{id}`` (``TaskResultDoesNotExist``: no such
        job, collected after its queue's retention, or not a Django task's)."""
        job_id = _job_id(result_id)
        try:
            job = self.sync_client.get_job(job_id)
        except Rejected as e:
            if e.reason == "not_found":
                raise TaskResultDoesNotExist(result_id) from e
            raise
        return self.result_of(job)

    async def aget_result(self, result_id: str) -> TaskResult[Any]:
        """``get_result`` with the event loop's ``Client``."""
        job_id = _job_id(result_id)
        try:
            job = await self.client.get_job(job_id)
        except Rejected as e:
            if e.reason == "not_found":
                raise TaskResultDoesNotExist(result_id) from e
            raise
        return self.result_of(job)

    def result_of(self, job: dict[str, Any]) -> TaskResult[Any]:
        """A job (as ``GET /v1/jobs/{id}`` shows it) as its task's ``TaskResult``.

        ``status``: queued, delayed and waiting jobs are ``READY``, a leased one ``RUNNING``,
        a succeeded one ``SUCCESSFUL`` (its result is the return value), dead and cancelled
        ones ``FAILED``. ``errors`` holds the last failed attempt's error (raftq keeps only
        that one), also while a retry is pending. ``enqueued_at`` is the job's creation,
        ``finished_at`` its end; raftq does not record when an attempt started, so
        ``started_at`` and ``last_attempted_at`` stay ``None``. ``worker_ids`` has one entry
        per attempt (``attempts``), the current worker's name last while one runs, ``""``
        for the others (raftq does not keep each attempt's worker).
        """
        task = self.task_of(job)
        payload = job["payload"]
        status = TaskResultStatus(STATUS_OF_STATE[job["state"]])
        attempts = int(job["attempts"])
        worker_ids = [""] * attempts
        if attempts and job.get("worker"):
            worker_ids[-1] = str(job["worker"])
        errors = []
        if job.get("error"):
            path, traceback = parse_error(str(job["error"]))
            errors.append(TaskError(exception_class_path=path, traceback=traceback))
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=str(job["id"]),
            status=status,
            enqueued_at=_datetime(job.get("created_ms")),
            started_at=None,
            last_attempted_at=None,
            finished_at=_datetime(job.get("finished_ms")),
            args=payload.get("args", []),
            kwargs=payload.get("kwargs", {}),
            backend=self.alias,
            errors=errors,
            worker_ids=worker_ids,
        )
        if status == TaskResultStatus("SUCCESSFUL"):
            object.__setattr__(result, "_return_value", job.get("result"))
        return result

    def task_of(self, job: dict[str, Any]) -> Task[Any, Any]:
        """The ``Task`` a job runs, with the options it was enqueued with."""
        payload = job.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("task"), str):
            raise TaskResultDoesNotExist(f"job {job.get('id')} is not a Django task's")
        path = payload["task"]
        try:
            task = import_string(path)
        except ImportError as e:
            raise TaskResultDoesNotExist(f"job {job.get('id')}: {e}") from e
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"job {job.get('id')}: {path} is not a task")
        run_after_ms = payload.get("run_after_ms")
        changes: dict[str, Any] = {
            "priority": payload.get("priority"),
            "queue_name": job["queue"],
            "backend": self.alias,
            "run_after": None if run_after_ms is None else _datetime(run_after_ms),
        }
        return task.using(**changes)

    # -- worker ---------------------------------------------------------------------------

    def worker(self, queues: Sequence[str], **options: Any) -> Worker:
        """A ``raftq.Worker`` that runs this backend's tasks of ``queues`` (``options``: the
        Worker's, e.g. ``concurrency``, ``name``): each job's task is imported by its path
        and called in the worker's threads (``raftq.contrib.django.worker.run_job``)."""
        from raftq.contrib.django.worker import run_job  # noqa: PLC0415 - workers only

        worker = Worker(self.nodes, token=self.token, **self._client_kwargs(), **options)

        def handler(job: Any) -> Any:
            return run_job(self, job)

        for queue in queues:
            worker.add_handler(queue, handler)
        return worker

    def _client_kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "timeout_ms" in self._client_options:
            out["request_timeout_ms"] = self._client_options["timeout_ms"]
        if "retry_ms" in self._client_options:
            out["retry_ms"] = self._client_options["retry_ms"]
        return out


def _job_id(result_id: str) -> int:
    try:
        job_id = int(result_id)
    except (TypeError, ValueError):
        job_id = 0
    if not 1 <= job_id < 2**63 or str(job_id) != str(result_id):
        raise TaskResultDoesNotExist(f"{result_id!r} is not a raftq job id")
    return job_id


def _datetime(ms: Any) -> datetime | None:
    """Cluster time (ms) as Django wants it: aware UTC with ``USE_TZ``, else naive local."""
    from django.conf import settings  # noqa: PLC0415 - a lazy object: read once configured

    if ms is None:
        return None
    when = from_ms(int(ms))
    return when if settings.USE_TZ else timezone.make_naive(when)
