"""raftq: a distributed job queue with no external broker, replicated with Raft.

The names below are imported on first use, so ``import raftq`` stays light (the command line
and the server do not pay for the worker or the embedding code):

- ``raftq.Client``, ``raftq.SyncClient``, ``raftq.JobHandle``: producers (``raftq.client``).
- ``raftq.Worker``, ``raftq.Job``, ``raftq.Retry``: workers (``raftq.worker``).
- ``raftq.Node``: a node embedded in an asyncio service (``raftq.embed``).
- ``raftq.App``, ``raftq.Task``: typed tasks (``raftq.tasks``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raftq._version import __version__

__all__ = [
    "App",
    "Client",
    "Job",
    "JobHandle",
    "Node",
    "Retry",
    "SyncClient",
    "Task",
    "Worker",
    "__version__",
]

_LAZY = {
    "App": "raftq.tasks",
    "Task": "raftq.tasks",
    "Client": "raftq.client",
    "SyncClient": "raftq.client",
    "JobHandle": "raftq.client",
    "Worker": "raftq.worker",
    "Job": "raftq.worker",
    "Retry": "raftq.errors",
    "Node": "raftq.embed",
}

if TYPE_CHECKING:
    from raftq.client import Client, JobHandle, SyncClient
    from raftq.embed import Node
    from raftq.errors import Retry
    from raftq.tasks import App, Task
    from raftq.worker import Job, Worker


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raftq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
