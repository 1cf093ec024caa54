"""raftq.raft.gc_guard: freeze after a full GC pass, unfreeze periodically, hold elections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from raftq.raft.gc_guard import GcGuard


class _Hold:
    def __init__(self) -> None:
        self.holds = 0

    def hold(self) -> None:
        self.holds += 1


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clean_gc() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_full_pass_holds_then_freezes_and_unfreezes_on_time(clean_gc: None) -> None:
    clock = _Clock()
    g = GcGuard(unfreeze_after_s=60.0, clock=clock)
    a, b = _Hold(), _Hold()
    g.register(a)
    g.register(b)
    try:
        kept = [[i] for i in range(10_000)]  # tracked objects that survive the pass
        g.observe()
        assert gc.get_freeze_count() == 0  # nothing to do before a full pass
        gc.collect(1)  # a young pass: not a full one
        assert (a.holds, g.full_passes) == (0, 0)
        gc.collect()  # a full pass
        assert (a.holds, b.holds, g.full_passes) == (1, 1, 1)
        g.observe()
        assert gc.get_freeze_count() >= len(kept)  # the survivors left the walked heap
        assert g.freezes == 1
        clock.now += 61
        g.observe()
        assert gc.get_freeze_count() == 0 and g.unfreezes == 1
    finally:
        g.unregister(a)
        g.unregister(b)
    assert g._on_gc not in gc.callbacks
    gc.collect()
    assert a.holds == 1  # unregistered: no more holds


def test_last_unregister_unfreezes(clean_gc: None) -> None:
    g = GcGuard()
    h = _Hold()
    g.register(h)
    gc.collect()
    g.observe()
    assert gc.get_freeze_count() > 0
    g.unregister(h)
    assert gc.get_freeze_count() == 0
