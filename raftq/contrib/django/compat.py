"""Django's task framework, wherever it comes from: ``django.tasks`` (Django 6 and later), else
the ``django-tasks`` backport (``django_tasks``, the reference implementation of DEP 14 that
became ``django.tasks``; what ``raftq[django]`` installs on Python 3.11). Both have the same
names and shapes; the rest of ``raftq.contrib.django`` imports them from here only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "BaseTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

if TYPE_CHECKING:  # typed against the backport (it ships py.typed; Django 5.2 has no stubs)
    from django_tasks import task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json
else:
    try:
        from django.tasks import task_backends
    except ImportError:
        try:
            from django_tasks import task_backends
        except ImportError as e:
            raise ImportError(
                "raftq.contrib.django needs Django 6's django.tasks or the django-tasks "
                "backport: pip install 'raftq[django]'"
            ) from e
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import (
            Task,
            TaskContext,
            TaskError,
            TaskResult,
            TaskResultStatus,
        )
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    else:
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
        from django.tasks.exceptions import TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json
