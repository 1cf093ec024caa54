"""Keep the cyclic GC's full passes short with a big state, and forgive the ones that happen.

At 1M queued jobs the machine holds a million objects the cyclic GC tracks (one ``Job``
each). A full pass (generation 2) walks every tracked object with the GIL held: measured
300-1200 ms per pass while a node loaded 1M jobs (docs/benchmark-log.md, "Memory and depth at
1M queued"), during which the tick thread neither sends heartbeats (leader) nor reads them
(follower), and elections follow. Jobs hold no reference cycles: the walk finds nothing.

- At the end of a full pass, everything that survived it goes to the permanent generation
  (``gc.freeze``), which later passes skip: they walk only what was allocated since. Frozen
  objects are still freed by reference counting as usual; only reference cycles among them
  wait for the next unfreeze.
- Every ``unfreeze_after_s`` (an hour), ``gc.unfreeze()``: the next full pass walks the whole
  heap once and collects such cycles, so what can pile up between two unfreezes is bounded.
- After every full pass, each registered node's election timer restarts (``hold``): a
  follower's heartbeats sat unread for the length of the pass (a leader's ``hold`` does
  nothing). Delaying a follower's candidacy is always safe in Raft.

The GC is per process, so the guard is too: nodes ``register`` their hold and call ``observe``
from their tick loop; the first registration installs the ``gc.callbacks`` hook and the last
``unregister`` removes it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["GcGuard", "Holdable", "guard"]


class Holdable(Protocol):
    def hold(self) -> None: ...


class GcGuard:
    def __init__(
        self, unfreeze_after_s: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._unfreeze_after_s = unfreeze_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._holds: list[Holdable] = []
        self._last_unfreeze = clock()
        self.full_passes = 0  # full passes seen since the hook was installed
        self.freezes = 0
        self.unfreezes = 0

    def register(self, hold: Holdable) -> None:
        with self._lock:
            if not self._holds:
                gc.callbacks.append(self._on_gc)
                self._last_unfreeze = self._clock()
            self._holds.append(hold)

    def unregister(self, hold: Holdable) -> None:
        """Stop holding ``hold``; the last one removes the hook. What is frozen stays frozen:
        unfreezing would make the interpreter's collection at exit walk the whole heap (a
        second at 1M jobs) before a stopped node's process can end. An embedding process
        that goes on without a node may call ``gc.unfreeze()`` itself."""
        with self._lock:
            if hold in self._holds:
                self._holds.remove(hold)
            if not self._holds and self._on_gc in gc.callbacks:
                gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook, on whichever thread triggered the collection. At the end of
        a full pass the young generations are empty and every survivor is in the oldest one:
        freezing then moves exactly the survivors (no young garbage cycle)."""
        if phase != "stop" or info.get("generation") != 2:
            return
        self.full_passes += 1
        self.freezes += 1
        gc.freeze()
        for hold in list(self._holds):
            hold.hold()

    def observe(self) -> None:
        """Called regularly (each node's tick loop): unfreeze every ``unfreeze_after_s``.
        Cheap when there is nothing to do."""
        now = self._clock()
        if now - self._last_unfreeze >= self._unfreeze_after_s:
            self._last_unfreeze = now
            self.unfreezes += 1
            gc.unfreeze()


guard = GcGuard()  # the process's one guard (tests build their own)
