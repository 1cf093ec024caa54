"""``Client``, ``SyncClient`` and ``raftq.Node`` offer every operation of
``raftq.client.protocol.Operations``, with the same parameter names, kinds and defaults.

A failure lists every difference at once, one line each (``Node.ack_many: missing``,
``SyncClient.dead: parameter 'limit' default 10, expected 100``...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from raftq.client import Client, SyncClient
from raftq.client.handle import JobReader, Producer
from raftq.client.protocol import Operations
from raftq.node.embedded import Node
from raftq.worker.source import JobSource

OPERATIONS = sorted(
    name
    for name, value in vars(Operations).items()
    if not name.startswith("_") and inspect.isfunction(value)
)


def _shape(fn: Callable[..., Any]) -> list[tuple[str, str, object]]:
    """(name, kind, default) of each parameter but ``self``."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    return [(p.name, p.kind.description, p.default) for p in params]


def differences(cls: type, *, blocking: bool = False) -> list[str]:
    """How ``cls`` departs from ``Operations``: one line per difference. ``blocking``: the
    operations must be plain functions (``SyncClient``), else as in the protocol."""
    out: list[str] = []
    for name in OPERATIONS:
        expected = vars(Operations)[name]
        got = inspect.getattr_static(cls, name, None)
        where = f"{cls.__name__}.{name}"
        if got is None:
            out.append(f"{where}: missing")
            continue
        if not inspect.isfunction(got):
            out.append(f"{where}: a {type(got).__name__}, not a method")
            continue
        is_async = inspect.iscoroutinefunction(got)
        want_async = False if blocking else inspect.iscoroutinefunction(expected)
        if is_async != want_async:
            out.append(f"{where}: {'a coroutine' if is_async else 'blocking'}, expected "
                       f"{'a coroutine' if want_async else 'blocking'}")  # fmt: skip
        have, want = _shape(got), _shape(expected)
        if have != want:
            out.append(f"{where}: parameters {_render(have)}, expected {_render(want)}")
    return out


def _render(shape: list[tuple[str, str, object]]) -> str:
    parts = []
    for name, kind, default in shape:
        text = f"{name} ({kind})"
        if default is not inspect.Parameter.empty:
            text += f"={default!r}"
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


@pytest.mark.parametrize(
    ("cls", "blocking"),
    [(Client, False), (Node, False), (SyncClient, True)],
    ids=["Client", "Node", "SyncClient"],
)
def test_offers_every_operation_with_the_protocols_signature(cls: type, blocking: bool) -> None:
    found = differences(cls, blocking=blocking)
    assert not found, "\n".join(found)


def test_the_narrower_protocols_agree_with_the_full_surface() -> None:
    """The worker's ``JobSource`` and the handles' ``JobReader``/``Producer`` are slices of
    ``Operations``: same names, same signatures."""
    for narrow in (JobSource, JobReader, Producer):
        names = [n for n, v in vars(narrow).items() if inspect.isfunction(v)]
        names = [n for n in names if not n.startswith("_")]
        assert names, narrow
        for name in names:
            assert name in OPERATIONS, f"{narrow.__name__}.{name}: not in Operations"
            got, want = vars(narrow)[name], vars(Operations)[name]
            assert _shape(got) == _shape(want), f"{narrow.__name__}.{name}"
            assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(want)


def test_a_difference_is_reported_precisely() -> None:
    """The checker itself: a class that departs in each possible way is caught, line by line."""

    class Odd:
        async def enqueue(self, queue: str, payload: Any, priority: int = 0) -> int:
            return 0

        def queues(self) -> list[dict[str, Any]]:
            return []

        async def dead(self, queue: str, *, limit: int = 10) -> list[dict[str, Any]]:
            return []

        cluster = property(lambda self: {})

    found = differences(Odd)
    assert "Odd.ack_many: missing" in found
    assert "Odd.queues: blocking, expected a coroutine" in found
    assert "Odd.cluster: a property, not a method" in found
    assert (
        "Odd.dead: parameters (queue (positional or keyword), limit (keyword-only)=10), "
        "expected (queue (positional or keyword), limit (keyword-only)=100)"
    ) in found
    assert any(line.startswith("Odd.enqueue: parameters (queue") for line in found)
    assert len(found) == len(OPERATIONS)  # four present but wrong, every other one missing
