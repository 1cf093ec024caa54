"""Give the heap memory that big frees leave behind back to the OS (glibc ``malloc_trim``).

Objects above 512 bytes bypass CPython's pymalloc and come from glibc malloc: the journal's
entries (one per group-committed batch, ~100 KB for 1000 jobs), request bodies, decoded batches.
glibc returns freed memory to the OS only from the top of an arena, so after a log compaction
frees the journal's entries, whatever was allocated above them keeps the whole span resident.
Measured at 1M queued jobs (docs/benchmark-log.md, "Memory at 1M queued jobs"): after compaction,
two nodes of three kept 120 MB free inside their malloc arenas (RSS 606-611 MB), the third had
given it back by chance (498 MB). ``malloc_trim(0)`` releases the free pages inside every arena
(``madvise``), whatever lies above them.

``HeapTrimmer`` decides when: a few observations after a log compaction or a snapshot install
(the big frees), and every half minute or so for what a burst of requests left. The call runs
off the event loop (ctypes releases the GIL); it holds each arena's lock for the time of its
``madvise`` calls (milliseconds for a hundred MB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

__all__ = ["HeapTrimmer", "trim_heap"]

logger = logging.getLogger(__name__)


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where there is none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_MALLOC_TRIM = _load_malloc_trim()


def trim_heap() -> bool:
    """Release the free memory of every malloc arena to the OS. ``True`` if glibc released
    some, ``False`` if none or if this C library has no ``malloc_trim``."""
    return _MALLOC_TRIM is not None and _MALLOC_TRIM(0) == 1


class HeapTrimmer:
    """Counts observations (the node's tick loop, every ``tick_interval_ms``) and says when
    to trim.

    ``due(marker)`` is called at every observation with something that changes when a big
    free has happened or is about to (the number of snapshots written, the machine object).
    A trim is due ``delay`` observations after the last change (PySyncObj truncates its
    journal a tick or two after the snapshot writer succeeded; the old machine of a snapshot
    install is freed once nothing holds it), and otherwise every ``period`` observations (what
    a burst of requests left behind before the first compaction).
    """

    def __init__(self, delay: int = 2, period: int = 120) -> None:
        self._delay = delay
        self._period = period
        self._marker: object = None
        self._countdown = 0
        self._since = 0  # observations since the last trim
        self.trims = 0  # trims done (tests, debugging)

    def due(self, marker: object) -> bool:
        self._since += 1
        if marker != self._marker:
            self._marker = marker
            self._countdown = self._delay
            return False
        if self._countdown > 0:
            self._countdown -= 1
            if self._countdown > 0:
                return False
        elif self._since < self._period:
            return False
        self._since = 0
        self.trims += 1
        return True
