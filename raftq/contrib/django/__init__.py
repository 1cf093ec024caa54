"""Django's task framework (``django.tasks``, or the ``django-tasks`` backport) on raftq.

``pip install 'raftq[django]'``, then in settings::

    INSTALLED_APPS = [..., "raftq.contrib.django"]      # for the raftq_worker command
    TASKS = {
        "default": {
            "BACKEND": "raftq.contrib.django.RaftqBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"nodes": ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]},
        }
    }

and run workers with ``python manage.py raftq_worker [--queue Q ...] [--concurrency N]``.
See ``RaftqBackend`` and the guide's "Django tasks" section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RaftqBackend"]

if TYPE_CHECKING:
    from raftq.contrib.django.backend import RaftqBackend


def __getattr__(name: str) -> Any:
    # Lazy: Django imports this package as an app before its settings are ready.
    if name == "RaftqBackend":
        from raftq.contrib.django.backend import RaftqBackend  # noqa: PLC0415

        return RaftqBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
