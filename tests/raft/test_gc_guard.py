"""raftq.raft.gc_guard: freeze after a full GC pass, unfreeze periodically, hold elections."""

from __future__ import annotations

import gc
import warnings
import weakref
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


def _unfreeze_and_collect() -> None:
    # Nodes embedded in this test process (other test modules) may have frozen the heap with
    # garbage of their own in it (sockets PySyncObj never closed): collect it here, quietly,
    # rather than in whichever test runs next.
    gc.unfreeze()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def clean_gc() -> Iterator[None]:
    _unfreeze_and_collect()
    yield
    _unfreeze_and_collect()


def test_full_pass_freezes_and_holds_then_unfreezes_on_time(clean_gc: None) -> None:
    clock = _Clock()
    g = GcGuard(unfreeze_after_s=60.0, clock=clock)
    a, b = _Hold(), _Hold()
    g.register(a)
    g.register(b)
    try:
        kept = [[i] for i in range(10_000)]  # tracked objects that survive the pass
        gc.collect(1)  # a young pass: not a full one
        assert (a.holds, g.full_passes, gc.get_freeze_count()) == (0, 0, 0)
        gc.collect()  # a full pass
        assert (a.holds, b.holds, g.full_passes) == (1, 1, 1)
        assert gc.get_freeze_count() >= len(kept)  # the survivors left the walked heap
        assert gc.get_count()[0] < 100  # nothing young was frozen with them
        g.observe()
        assert gc.get_freeze_count() >= len(kept)  # not yet time to unfreeze
        clock.now += 61
        g.observe()
        assert gc.get_freeze_count() == 0 and g.unfreezes == 1
    finally:
        g.unregister(a)
        g.unregister(b)
    assert g._on_gc not in gc.callbacks
    gc.collect()
    assert a.holds == 1  # unregistered: no more holds, no more freezes
    assert gc.get_freeze_count() == 0


def test_a_cycle_among_frozen_objects_is_collected_after_the_unfreeze(clean_gc: None) -> None:
    clock = _Clock()
    g = GcGuard(unfreeze_after_s=60.0, clock=clock)
    h = _Hold()
    g.register(h)
    try:

        class Node:
            other: object = None

        x, y = Node(), Node()
        x.other, y.other = y, x
        probe = weakref.ref(x)
        gc.collect()  # survivors, the cycle among them, are frozen
        del x, y
        gc.collect()
        assert probe() is not None  # a frozen cycle waits for the unfreeze
        clock.now += 61
        g.observe()
        gc.collect()
        assert probe() is None
    finally:
        g.unregister(h)
