"""``raftq.runloop.run``: raftq's blocking entry points (``raftq serve``, ``raftq worker``,
``Worker.run_forever``, the benchmark's processes, the peers' drivers among them) run on
uvloop where it is installed, without changing the process's event loop policy."""

from __future__ import annotations

import asyncio
import sys

import pytest

from raftq import runloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_and_leaves_the_policy_alone() -> None:
    policy = asyncio.get_event_loop_policy()
    assert runloop.run(_loop_module()).startswith("uvloop")
    assert asyncio.get_event_loop_policy() is policy


def test_run_falls_back_to_the_standard_loop_without_uvloop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop fails
    assert runloop.loop_factory() is None
    assert runloop.run(_loop_module()) == "asyncio.unix_events"


def test_run_returns_the_result_and_raises_the_error() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    async def answer() -> int:
        return 42

    assert runloop.run(answer()) == 42
    with pytest.raises(ValueError, match="boom"):
        runloop.run(fail())
