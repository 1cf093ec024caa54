"""``run(main)``: ``asyncio.run`` on uvloop where it is installed (a dependency of raftq on
CPython outside Windows), else on the standard loop.

What raftq's own blocking entry points run on: ``raftq serve``, ``raftq worker`` and
``Worker.run_forever``, and the benchmark's processes (the peers' drivers too, so that every
system is driven on the same loop). A worker on uvloop spends about a tenth less CPU per job
(``docs/benchmark-log.md``, "The peers' drivers on uvloop"). The loop
is built for this one run (``asyncio.Runner``'s ``loop_factory``): the process's event loop
policy is left as it was. Code that runs its own loop (``await worker.run()`` inside an
application) keeps that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when uvloop is importable, else ``None`` (the default)."""
    try:
        import uvloop  # noqa: PLC0415  # optional: not on Windows nor PyPy
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop (uvloop's when available)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
