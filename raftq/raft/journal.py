"""The durability seam around PySyncObj: a journal whose writes are on disk before Raft acts.

PySyncObj 0.3.17 keeps its log in an mmap that it never msyncs, and writes currentTerm/votedFor
with a rename but no fsync (notes §3): an acknowledged entry or a vote can vanish on power loss.
This module is the *one* place raftq changes that, without copying PySyncObj code:

- ``DurableFileJournal`` subclasses ``pysyncobj.journal.FileJournal``; after ``add``, ``clear``,
  ``deleteEntriesFrom`` and ``deleteEntriesTo`` return, the written bytes have been msync'd
  (``MS_SYNC``). PySyncObj calls these on its tick thread and only afterwards answers an
  AppendEntries (follower) or counts its own log towards the commit index (leader), so an
  entry is on disk on a majority before it commits and before the client hears success.
- ``DurableMetaStorer`` replaces FileJournal's meta storer: temp file, fsync, rename, fsync of
  the directory, so currentTerm/votedFor are durable before any vote message leaves.
- ``durable_journal()`` installs the class at the one place PySyncObj creates its journal,
  ``pysyncobj.syncobj.createJournal`` (looked up by ``SyncObj.__init__``), for the constructor
  calls made inside the ``with`` block on the calling thread only; other threads (other nodes
  in the same process) see PySyncObj's own factory unless they are inside the block too.

Pinned to the PySyncObj versions it was verified with (``VERIFIED_VERSIONS``): it relies on
FileJournal's private attributes and on where SyncObj looks its factory up. ``RaftNode`` also
checks after construction that the journal really is ours (and tests/raft guards it).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj.journal import FileJournal, MetaStorer
from pysyncobj.pickle import dumps
from pysyncobj.version import VERSION as PYSYNCOBJ_VERSION

from raftq.errors import RaftqError

__all__ = [
    "PYSYNCOBJ_VERSION",
    "VERIFIED_VERSIONS",
    "DurabilitySeamError",
    "DurableFileJournal",
    "DurableMetaStorer",
    "check_version",
    "durable_journal",
    "verify_journal",
]

VERIFIED_VERSIONS = frozenset({"0.3.17"})

_PAGE = mmap.PAGESIZE
_HEADER_END = 40  # FileJournal header: name 24 + version 8 + format 4 + last-record offset 4


class DurabilitySeamError(RaftqError):
    """The installed PySyncObj is not one the durability seam was verified with, or it did not
    build its journal through the seam."""


def check_version(version: str = PYSYNCOBJ_VERSION) -> None:
    if version not in VERIFIED_VERSIONS:
        raise DurabilitySeamError(
            f'fsync = "always" needs pysyncobj {", ".join(sorted(VERIFIED_VERSIONS))} '
            f"(installed: {version}); the durable journal relies on its internals and was not "
            'verified with this version: pin pysyncobj, or set fsync = "off" (no power-loss '
            "durability)"
        )


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableMetaStorer(MetaStorer):  # type: ignore[misc]
    """Stores ``<journal>.meta`` (term, vote, commit index) atomically and durably."""

    def storeMeta(self, meta: dict[str, Any]) -> None:  # noqa: N802  # PySyncObj's API
        path = self.getPath()
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path))


class DurableFileJournal(FileJournal):  # type: ignore[misc]
    """PySyncObj's FileJournal, msync'd after every change (see the module docstring)."""

    def __init__(self, journalFile: str) -> None:  # noqa: N803  # PySyncObj's name
        self._raftq_batch = False
        # Instrumentation hook (raftq.raft.stats): seconds of each msync, on the tick thread.
        self.on_sync: Callable[[float], None] | None = None
        super().__init__(journalFile)
        self._FileJournal__metaStorer = DurableMetaStorer(journalFile + ".meta")
        # A brand-new journal file and its meta must exist after a crash too.
        self._sync_range(0, _HEADER_END)
        _fsync_dir(os.path.dirname(journalFile))

    # -- the writes -----------------------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        start = self._offset()
        super().add(command, idx, term)
        if not self._raftq_batch:
            # Record first, then the header that points past it, so that our syncs never make
            # the header durable ahead of its record (the kernel's own writeback still could in
            # the short window before them: detecting a torn tail at start is issue 4 §3).
            self._sync_range(start, self._offset())
            if start >= _PAGE:
                self._sync_range(0, _HEADER_END)

    def clear(self) -> None:
        super().clear()
        if not self._raftq_batch:
            self._sync_range(0, _HEADER_END)

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802, N803
        super().deleteEntriesFrom(entryFrom)
        self._sync_range(0, _HEADER_END)

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802, N803
        # FileJournal rewrites the remaining entries through self.clear()/self.add(): one
        # msync of the whole rewritten range at the end instead of one per entry.
        self._raftq_batch = True
        try:
            super().deleteEntriesTo(entryTo)
        finally:
            self._raftq_batch = False
        self._sync_range(0, self._offset())

    # -- helpers --------------------------------------------------------------------------

    def _offset(self) -> int:
        return int(self._FileJournal__currentOffset)

    def _sync_range(self, start: int, end: int) -> None:
        """msync(MS_SYNC) the pages holding bytes [start, end) of the journal file."""
        resizable = self._FileJournal__journalFile
        mm = getattr(resizable, "_ResizableFile__mm", None)  # re-read: a resize remaps
        if mm is None:  # pragma: no cover - layout changed; still durable, just coarser
            resizable.flush()
            return
        begin = start - start % _PAGE
        end = min(max(end, begin + 1), mm.size())
        on_sync = self.on_sync
        if on_sync is None:
            mm.flush(begin, end - begin)
            return
        t0 = time.perf_counter()
        mm.flush(begin, end - begin)
        on_sync(time.perf_counter() - t0)


class _Seam:
    """Where ``pysyncobj.syncobj.createJournal`` is swapped: how many threads are inside
    ``durable_journal()`` and PySyncObj's own factory to restore when the last one leaves."""

    lock = threading.Lock()
    inside = 0
    original: Callable[..., Any] | None = None
    local = threading.local()


def _create_journal(journalFile: str | None = None) -> Any:  # noqa: N803
    factory = getattr(_Seam.local, "factory", None)
    original = _Seam.original
    assert original is not None
    if factory is None or journalFile is None:
        return original(journalFile)
    return factory(journalFile)


@contextlib.contextmanager
def durable_journal() -> Iterator[None]:
    """Within the block, SyncObj constructors called on *this* thread get a DurableFileJournal
    (when a journal file is configured). Re-entrant and safe with several nodes per process:
    the module attribute is swapped while any thread is inside, and dispatches per thread."""
    check_version()
    with _Seam.lock:
        if _Seam.inside == 0:
            _Seam.original = _syncobj_module.createJournal
            _syncobj_module.createJournal = _create_journal
        _Seam.inside += 1
    previous = getattr(_Seam.local, "factory", None)
    _Seam.local.factory = DurableFileJournal
    try:
        yield
    finally:
        _Seam.local.factory = previous
        with _Seam.lock:
            _Seam.inside -= 1
            if _Seam.inside == 0:
                _syncobj_module.createJournal = _Seam.original
                _Seam.original = None


def verify_journal(syncobj: Any, fsync: str) -> None:
    """Fail loudly if PySyncObj did not build its journal through the seam (e.g. after an
    upgrade that creates it elsewhere): acknowledging without fsync must not go unnoticed."""
    journal = getattr(syncobj, "_SyncObj__raftLog", None)
    if fsync == "always" and not isinstance(journal, DurableFileJournal):
        raise DurabilitySeamError(
            f"the durable journal was not installed (PySyncObj built {type(journal).__name__}): "
            f"pysyncobj {PYSYNCOBJ_VERSION} bypasses raftq.raft.journal"
        )
