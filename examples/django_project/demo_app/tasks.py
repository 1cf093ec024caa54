"""The demo app's tasks: plain functions decorated with Django's ``@task``."""

from __future__ import annotations

import time
from typing import Any

# --8<-- [start:tasks]
try:
    from django.tasks import TaskContext, task
except ImportError:  # Django < 6: the django-tasks backport
    from django_tasks import TaskContext, task


@task
def add(a: int, b: int) -> int:
    return a + b


# --8<-- [end:tasks]


@task
async def add_async(a: int, b: int) -> int:
    return a + b


@task(queue_name="reports")
def stamp(label: str) -> list[Any]:
    """Returns when it ran (this machine's monotonic clock, ns): tests read the order."""
    return [label, time.monotonic_ns()]


# --8<-- [start:context]
@task(takes_context=True)
def whoami(context: TaskContext, greeting: str) -> dict[str, Any]:
    return {"greeting": greeting, "id": context.task_result.id, "attempt": context.attempt}


# --8<-- [end:context]


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def not_json() -> set[int]:
    return {1, 2}


@task(takes_context=True)
def flaky(context: TaskContext) -> int:
    if context.attempt == 1:
        raise ConnectionError("the first attempt fails")
    return context.attempt
