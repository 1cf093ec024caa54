"""The Django app of ``raftq.contrib.django`` (it provides the ``raftq_worker`` command)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["RaftqConfig"]


class RaftqConfig(AppConfig):  # type: ignore[misc]  # Django has no type stubs here
    name = "raftq.contrib.django"
    label = "raftq"
    verbose_name = "raftq"
