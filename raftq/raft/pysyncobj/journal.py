"""The durability seam around PySyncObj: a journal whose writes are on disk before Raft acts.

PySyncObj 0.3.17 keeps its log in an mmap that it never msyncs, and writes currentTerm/votedFor
with a rename but no fsync (notes §3): an acknowledged entry or a vote can vanish on power loss.
This module is the *one* place raftq changes that, without copying PySyncObj code:

- ``DurableFileJournal`` implements PySyncObj's journal interface over raftq's own journal
  file (``raftq.raft.log_file``: an append-only file of records each carrying its index,
  term, length and a CRC-32 over header and payload); it subclasses
  ``pysyncobj.journal.FileJournal`` only for its term/vote/commit-index methods. After
  ``add``, ``clear``, ``deleteEntriesFrom`` and ``deleteEntriesTo`` return, the written bytes
  are on disk. PySyncObj calls these on its tick thread and only afterwards answers an
  AppendEntries (follower) or counts its own log towards the commit index (leader), so an
  entry is on disk on a majority before it commits and before the client hears success.
  (Appends made inside ``deferred_sync`` are written together, in one durable write, a
  moment later: the leader's, still before they count, and a follower's for one message,
  before it answers: ``sync_held``.)
- The file is written through a file descriptor (``JournalFile``: ``pwrite`` on an
  ``O_DSYNC`` descriptor), never through an mmap: one durable write per append or batch of
  appends, a single syscall (the measured cost of a sync is mostly its GIL hand-offs, see
  ``JournalFile``); the journal's pages are page cache, not the node's RSS. A cut (a
  conflicting entry, a cleared log) is ``ftruncate`` + ``fdatasync``; a compaction writes
  the kept records to a new file, syncs it and renames it over the journal (then syncs the
  directory). Each of these is crash-atomic, so after any crash the file is a run of whole
  records followed by at most one torn write, which the next start drops
  (``open_journal``): it keeps exactly the records that were written whole, among them
  every one that was acknowledged.
- Until 2026-12 the file was PySyncObj's FileJournal (a header whose last-record offset
  points past the records, no checksum): each append cost two durable writes, the record and
  then the header, since the header must never reach the disk ahead of a record it points
  past. A data dir in that format starts: ``open_journal`` reads it and rewrites it in
  raftq's format once (new file, fsync, rename).
- ``DurableMetaStorer`` replaces FileJournal's meta storer: temp file, fsync, rename, fsync of
  the directory, so currentTerm/votedFor are durable before any vote message leaves.
- ``durable_journal()`` installs the class at the one place PySyncObj creates its journal,
  ``pysyncobj.syncobj.createJournal`` (looked up by ``SyncObj.__init__``), for the constructor
  calls made inside the ``with`` block on the calling thread only; other threads (other nodes
  in the same process) see PySyncObj's own factory unless they are inside the block too.

Never forgetting an acknowledged entry (Bug fixed, found by tests/integration/test_durability.py):
PySyncObj's follower drops *every* entry after an AppendEntries' previous entry before adding
the message's entries, and a snapshot install replaces the whole log with the snapshot's two
entries. Raft drops only entries that conflict. Under pipelined load the leader re-sends from
an older index in messages capped at 64 KiB, so a follower's log shrank below entries it had
already acknowledged (the leader counted them towards a majority), and an older snapshot
replaced a longer log (measured: the same snapshot installed 20 times on a healthy follower,
its log cut from 222 to 173 entries with commit index 222). The leader still counts such a
follower as holding what it forgot, and the follower can vote for a candidate that lacks
those entries: in one run of the restore test (a third node restarted on an older copy of
its data), the cluster then handed out job ids a second time and lost acknowledged jobs.
``DurableFileJournal`` therefore
keeps what Raft keeps: ``deleteEntriesFrom`` removes nothing by itself (the adds that follow
it do: ``add`` of an entry already present with the same index and term writes nothing, and
one that conflicts cuts the log there, as Raft says); ``clear`` before a snapshot install
keeps a log that holds the snapshot's previous and last entries, with every entry after
them (Raft's InstallSnapshot rule), and replaces any other log as PySyncObj meant. Entries
kept past what a message matched are not yet verified against the leader's log, so they
must neither commit nor count for the leader: ``RaftqSyncObj`` (raftq/raft/pysyncobj/commit_rule.py)
caps the follower's commit index at the last entry a message carried, and answers an
install with the snapshot's end, not its log's.

A snapshot at start and entries of older terms (Bug fixed, found by the same test in CI: a
job id handed out twice after kill -9 of every node). Until 2026-12-05 those two rules kept
only entries of the current term (only the current leader writes them, so they matched its
log; PySyncObj's own commit rule, the log end, would have committed the others). That lost
acknowledged entries of older terms: the snapshot writer puts the new dump in place and the
journal is truncated up to it a few ticks later, so a crash in between leaves a journal
that starts before the snapshot; at the next start PySyncObj "clears" it down to the
snapshot's two entries, and after a term change the entries after them went (the node came
back with its commit index clamped to the snapshot). The same went for a re-sent
AppendEntries or a snapshot install over a tail of an older term.

Compaction by rename (Bug fixed): FileJournal's ``deleteEntriesTo`` clears the journal and
re-adds the kept entries in place, so a crash part-way (even kill -9) left a journal without
entries the node had acknowledged. ``DurableFileJournal`` writes them to ``<journal>.rewrite``
(with plain writes: an mmap write on a full disk is a SIGBUS), makes it durable, and renames
it over the journal.

A failed write stops the node (Bug fixed: an acknowledged entry that was never on disk).
Any ``OSError`` from a journal or term/vote write (ENOSPC, EIO) ends the process with exit
74 and a one-line reason (``DurableFileJournal._io``, ``raftq.raft.fail_stop``): PySyncObj's
tick thread would log it and go on, answering for an entry its disk lacks. The stop is done
here, not left to PySyncObj; ``on_io_error`` is replaceable for in-process tests only.

With ``sync=False`` (fsync = "off") the class does all of the above without O_DSYNC or fsync.

Pinned to the PySyncObj versions it was verified with (``VERIFIED_VERSIONS``): it relies on
FileJournal's private meta attributes, on the journal interface SyncObj calls, and on where
SyncObj looks its factory up. ``RaftNode`` also
checks after construction that the journal really is ours (and tests/raft guards it).

Relies on PySyncObj 0.3.17 private behaviour:
- ``pysyncobj.syncobj.createJournal`` (swapped around the constructor) and
  ``FileJournal``'s ``_FileJournal__meta``, ``__metaSaved``, ``__metaStorer`` (its
  term/vote/commit-index methods use them); ``_SyncObj__raftLog`` (``verify_journal``):
  ``tests/raft/test_journal.py`` (a started node journals through the seam),
  ``tests/raft/test_journal_keeps_acknowledged.py``, ``tests/raft/test_journal_io_errors.py``,
  ``tests/raft/test_journal_segment.py`` (crash recovery, the format migration) and
  ``tests/raft/test_pysyncobj_private.py`` (every name exists);
- ``pysyncobj.pickle`` and the meta file's format: ``tests/raft/test_data_cli.py``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj.journal import FileJournal, MetaStorer
from pysyncobj.pickle import dumps, loads
from pysyncobj.version import VERSION as PYSYNCOBJ_VERSION
from raftq.errors import DataError, RaftqError
from raftq.raft.fail_stop import EXIT_STORAGE_FAILED, exit_process
from raftq.raft.log_file import (
    FORMAT_VERSION,
    HEADER_SIZE,
    LEGACY_MAGIC,
    RECORD_HEADER,
    Entry,
    encode,
    is_legacy,
    read_legacy,
    scan_file,
    write_journal,
)
from raftq.raft.snapshot_file import fsync_dir

__all__ = [
    "PYSYNCOBJ_VERSION",
    "VERIFIED_VERSIONS",
    "DurabilitySeamError",
    "DurableFileJournal",
    "DurableMetaStorer",
    "JournalFile",
    "JournalIOError",
    "check_version",
    "durable_journal",
    "open_journal",
    "stop_on_io_error",
    "verify_journal",
]

VERIFIED_VERSIONS = frozenset({"0.3.17"})

logger = logging.getLogger(__name__)

_CLEAR_HELD = object()
_REWRITE = ".rewrite"  # suffix of a journal file being written, renamed over the journal


class DurabilitySeamError(RaftqError):
    """The installed PySyncObj is not one the durability seam was verified with, or it did not
    build its journal through the seam."""


class JournalIOError(RaftqError):
    """A journal or term/vote write failed and the stop hook returned (in-process tests only:
    the default hook ends the process). The journal was rolled back to what its file holds."""


def stop_on_io_error(reason: str) -> None:
    """The default ``DurableFileJournal.on_io_error``: end the process, unconditionally."""
    exit_process(EXIT_STORAGE_FAILED, reason)


def _io_failure(what: str, path: str, error: OSError) -> str:
    """The one-line reason of a fail-stop on a failed write: file, error, what to do."""
    where = error.filename if isinstance(error.filename, str) else path
    cause = f"[Errno {error.errno}] {error.strerror}" if error.errno else str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free space on that disk and restart the node"
    else:
        todo = "check that disk (kernel log) and restart the node"
    return (
        f"raftq: stopping: {what} write failed on {where}: {cause}; {todo} "
        f"(nothing acknowledged was lost; exit {EXIT_STORAGE_FAILED})"
    )


def check_version(version: str = PYSYNCOBJ_VERSION) -> None:
    if version not in VERIFIED_VERSIONS:
        raise DurabilitySeamError(
            f"raftq needs pysyncobj {', '.join(sorted(VERIFIED_VERSIONS))} "
            f"(installed: {version}): its journal relies on PySyncObj's internals and was not "
            "verified with this version; pin pysyncobj"
        )


class DurableMetaStorer(MetaStorer):  # type: ignore[misc]
    """Stores ``<journal>.meta`` (term, vote, commit index) atomically and durably (without
    the fsyncs if not ``sync``). Errors are raised: ``DurableFileJournal`` stops the node."""

    def __init__(self, path: str, *, sync: bool = True) -> None:
        super().__init__(path)
        self._raftq_sync = sync

    def getMeta(self) -> dict[str, Any]:  # noqa: N802  # PySyncObj's API
        """PySyncObj's reader (nothing readable: empty), closing its file."""
        try:
            with open(self.getPath(), "rb") as f:
                meta: dict[str, Any] = loads(f.read())
        except Exception:  # PySyncObj's own reader takes any failure as "no meta"
            return {}
        return meta

    def storeMeta(self, meta: dict[str, Any]) -> None:  # noqa: N802  # PySyncObj's API
        path = self.getPath()
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(dumps(meta))
            f.flush()
            if self._raftq_sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self._raftq_sync:
            fsync_dir(os.path.dirname(path))


class JournalFile:
    """The journal file (``raftq.raft.log_file``'s format) as the tick thread writes it:
    records appended at its end with ``pwrite``, its end moved back with ``ftruncate``.

    With ``sync`` the file is opened ``O_DSYNC``: a ``pwrite`` returns once its bytes (and the
    file size they need) are on disk, as if followed by ``fdatasync``, so one batch of
    appends costs one syscall. One syscall per durable write instead of two matters here:
    every syscall that releases the GIL must take it back, and with the node's event loop
    busy on the other thread that wait was most of a journal sync (measured: 3.1 ms for
    write + fdatasync twice, 1.9 ms for two O_DSYNC writes, 0.36 ms for either alone;
    docs/benchmark-log.md). A truncation is ``ftruncate`` then ``fdatasync`` (``O_DSYNC``
    does not cover it): records past the new end must never come back after a crash.

    While ``deferring`` (the leader's appends, see ``DurableFileJournal.deferred_sync``) the
    records are held and written by ``sync()`` in one ``pwrite``, so that the leader can send
    an entry before it waits for its own disk. Only the tick thread uses the file
    (PySyncObj's journal is single-threaded).

    Invariant: ``end`` is where the next record goes: the file's size plus the held records.
    """

    def __init__(self, path: str, *, sync: bool, end: int) -> None:
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_DSYNC if sync else 0)
        self._fd = os.open(path, flags)
        self._sync = sync
        self._written = end  # the end of what the file holds
        self.end = end
        self._pending: list[bytes] = []  # records held while deferring
        self.deferring = False

    @property
    def unsynced(self) -> bool:
        """Records written while deferring are held for ``sync()``."""
        return bool(self._pending)

    def append(self, record: bytes) -> None:
        self.end += len(record)
        self._pending.append(record)
        if not self.deferring:
            self.sync()

    def sync(self) -> None:
        """Write the held records, in one ``pwrite`` (durable on return with ``sync``)."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        self._pwrite(self._written, data)
        self._written += len(data)

    def truncate(self, end: int) -> None:
        """Cut the file at ``end`` (the end of a whole record), durably."""
        self.sync()
        os.ftruncate(self._fd, end)
        if self._sync:
            os.fdatasync(self._fd)
        self._written = self.end = end

    def flush(self) -> None:
        self.sync()

    def _destroy(self) -> None:
        self.sync()
        os.close(self._fd)

    def discard(self) -> None:
        """Forget what is held (after a failed write: the journal is read back from disk)."""
        self._pending = []
        self.end = self._written
        self.deferring = False

    def close(self) -> None:
        """Close without writing what is held."""
        self.discard()
        os.close(self._fd)

    def _pwrite(self, offset: int, values: bytes) -> None:
        view = memoryview(values)
        while view:  # pwrite may write less than asked (a signal, a full disk's last block)
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written


def open_journal(path: str, *, sync: bool) -> tuple[list[Entry], JournalFile]:
    """Open the journal at ``path`` for appending, after recovery: a missing or empty file is
    created, PySyncObj's format-1 file is rewritten in raftq's format (once), and a file
    whose end is not a whole record in sequence (a write torn by a crash) is truncated
    after the last one that is (durably). Returns its entries and the open file.

    Recovery keeps exactly the records ``log_file.scan`` accepts: every record that was
    durable before the crash, since records are appended only after durable ones."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    if fd is None or os.fstat(fd).st_size == 0:
        if fd is not None:
            os.close(fd)
        return [], _replace_journal(path, [], sync=sync)
    try:
        if is_legacy(os.pread(fd, len(LEGACY_MAGIC), 0)):
            try:
                entries = read_legacy(fd)
            except ValueError as e:
                raise DataError(path, f"format 1, unreadable: {e}", "journal") from e
            logger.info(
                "journal %s: rewriting PySyncObj's format 1 (%d entries) in raftq's format %d",
                path,
                len(entries),
                FORMAT_VERSION,
            )
            return entries, _replace_journal(path, entries, sync=sync)
        try:
            found = scan_file(fd)
        except ValueError as e:
            raise DataError(path, str(e), "journal") from e
    finally:
        os.close(fd)
    if found.damaged_inside:  # not a torn write: entries this node acknowledged may be lost
        raise DataError(path, f"{found.problem}, and whole records follow it (damaged)", "journal")
    file = JournalFile(path, sync=sync, end=found.size)
    if found.problem is not None:
        logger.warning(
            "journal %s: %s; dropping its last %d bytes (a write torn by a crash: never "
            "acknowledged), keeping %d entries",
            path,
            found.problem,
            found.size - found.end,
            len(found.entries),
        )
        file.truncate(found.end)
    return found.entries, file


def _replace_journal(path: str, entries: list[Entry], *, sync: bool) -> JournalFile:
    """Write ``entries`` to a new journal file and rename it over ``path``: a crash leaves the
    old file or the new one, whole."""
    tmp = path + _REWRITE
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    end = write_journal(tmp, entries, sync=sync)
    os.replace(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(path) or ".")
    return JournalFile(path, sync=sync, end=end)


class DurableFileJournal(FileJournal):  # type: ignore[misc]
    """PySyncObj's journal interface over raftq's journal file, synced after every change (see
    the module docstring). Subclasses ``FileJournal`` for its term/vote/commit-index
    methods only (its ``__meta`` attributes); the log and its file are ours."""

    def __init__(self, journalFile: str, *, sync: bool = True) -> None:  # noqa: N803
        # sync=False (fsync = "off"): the same Raft-safe log and crash-safe compaction, but no
        # fdatasync/fsync: survives kill -9 (the page cache), not power loss.
        self._raftq_sync = sync
        self._raftq_path = journalFile
        # A clear() held back until the entries added next show whether it must happen:
        # _CLEAR_HELD, then the snapshot's previous entry once it matched, else None.
        self._raftq_held: object = None
        # Instrumentation hook (raftq.raft.stats): seconds of each sync, on the tick thread.
        self.on_sync: Callable[[float], None] | None = None
        # Called with a one-line reason when a journal or term/vote write fails: ends the
        # process (stop_on_io_error). Replaced only by in-process tests; if it returns, the
        # journal is rolled back to what its files hold and the write raises JournalIOError.
        self.on_io_error: Callable[[str], None] = stop_on_io_error
        self._raftq_broken: str | None = None  # a rollback failed too: every write refused
        with contextlib.suppress(FileNotFoundError):  # left by a crash inside a compaction
            os.unlink(journalFile + _REWRITE)
        # FileJournal's term/vote/commit-index state (pinned: VERIFIED_VERSIONS).
        storer = DurableMetaStorer(journalFile + ".meta", sync=sync)
        private: dict[str, Any] = self.__dict__
        private["_FileJournal__metaStorer"] = storer
        private["_FileJournal__meta"] = storer.getMeta()
        private["_FileJournal__metaSaved"] = True
        self._raftq_log, self._raftq_file = open_journal(journalFile, sync=sync)

    # -- the log ----------------------------------------------------------------------------

    def __getitem__(self, idx: Any) -> Any:
        return self._raftq_log[idx]

    def __len__(self) -> int:
        return len(self._raftq_log)

    # -- the writes -----------------------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        with self._io():
            if self._keeps(command, idx, term):
                return
            self._append(command, idx, term)

    def clear(self) -> None:
        with self._io():
            if len(self) > 0:
                # PySyncObj installs a snapshot: clear(), add(previous entry), add(last entry).
                self._raftq_held = _CLEAR_HELD
                return
            self._clear_now()

    def _destroy(self) -> None:
        with self._io():
            self._resolve_held()
            self._raftq_file._destroy()

    def flush(self) -> None:
        with self._io():
            self._resolve_held()
            self._sync()

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802, N803
        with self._io("term/vote file"):  # stored synchronously (DurableMetaStorer)
            super().setCurrentTerm(term, votedForNodeId)

    def onOneSecondTimer(self) -> None:  # noqa: N802  # PySyncObj's name
        with self._io("term/vote file"):  # the commit index, once a second
            super().onOneSecondTimer()

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802, N803
        """PySyncObj's follower, before it adds an AppendEntries' entries: it would drop
        everything after the message's previous entry, Raft drops only from a conflict on.
        Nothing is removed here; the adds that follow keep what matches and cut the log at
        the first entry that conflicts (``_keeps``)."""
        with self._io():
            self._resolve_held()

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802, N803
        """Log compaction (the snapshot up to ``entryTo`` is already on disk): the kept
        entries are written to a new file, made durable, and renamed over the journal (then
        the directory is fsynced): a crash leaves either the old journal or the new one,
        whole. (FileJournal rewrote the kept entries in place: a crash part-way left a
        journal without entries this node acknowledged.)"""
        with self._io():
            self._compact(entryTo)

    def _compact(self, entryTo: int) -> None:  # noqa: N803
        self._resolve_held()
        kept = self._raftq_log[entryTo:]
        # The held records (if deferring) are in ``kept``: the new file has them, durably.
        file = _replace_journal(self._raftq_path, kept, sync=self._raftq_sync)
        self._raftq_file.close()
        self._raftq_file = file
        self._raftq_log = kept

    def _append(self, command: bytes, idx: int, term: int) -> None:
        t0 = time.perf_counter()
        file = self._raftq_file
        file.append(encode(bytes(command), idx, term))  # durable on return, unless deferring
        self._raftq_log.append((command, idx, term))
        if not file.deferring:
            self._timed(t0)

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Appends inside the block are held and written, durably, together when it ends (in
        one write; any other write inside it, or ``sync_held``, writes them first). The
        leader's appends: it may send an entry before its own copy is durable, as long as it
        does not count that copy towards a majority until then
        (``RaftqSyncObj._checkCommandsToApply``). The follower's appends of one
        AppendEntries: they must be durable before it acknowledges them, so ``RaftqSyncObj``
        calls ``sync_held`` before it sends the answer."""
        file = self._file()
        file.deferring = True
        try:
            yield
        finally:
            file = self._file()  # the same file, unless a compaction replaced it meanwhile
            file.deferring = False
            if file.unsynced:
                with self._io():
                    self._sync()

    def sync_held(self) -> None:
        """Write the appends held by ``deferred_sync`` now, durably (a follower, before it
        answers for them); the block goes on holding later ones."""
        if self._raftq_file.unsynced:
            with self._io():
                self._sync()

    def _resolve_held(self) -> None:
        """Any write but an ``add`` after a held-back clear: do the clear (and re-add the
        snapshot's previous entry if it was held too), as PySyncObj asked."""
        held = self._raftq_held
        if held is None:
            return
        self._clear_now()
        if held is not _CLEAR_HELD:
            self._append(*held)  # type: ignore[misc]

    def _clear_now(self) -> None:
        self._raftq_held = None
        self._raftq_log = []
        self._raftq_file.truncate(HEADER_SIZE)

    def _cut(self, position: int) -> None:
        """Drop the entries from ``position`` on, from the log and (durably) from the file."""
        dropped = self._raftq_log[position:]
        size = sum(RECORD_HEADER.size + len(command) for command, _, _ in dropped)
        del self._raftq_log[position:]
        self._raftq_file.truncate(self._raftq_file.end - size)

    # -- never forgetting an acknowledged entry (see the module docstring) ---------------

    def _keeps(self, command: bytes, idx: int, term: int) -> bool:
        """Whether an ``add`` of entry (idx, term) is already satisfied by the log.

        PySyncObj only ever adds at the end, so an ``idx`` inside the log means that a
        truncation or a clear was held back. An entry with the same index and term is the
        same entry (Raft's Log Matching property): nothing to write. A different one
        conflicts: drop it and everything after it, as Raft says, then add the new one.
        After a held-back ``clear`` (a snapshot install adds the snapshot's previous and last
        entries), the log is kept, with everything after them, if it holds both; otherwise
        it is replaced as PySyncObj meant."""
        held, self._raftq_held = self._raftq_held, None
        position = idx - self[0][1] if len(self) else -1
        inside = 0 <= position < len(self)
        same = inside and self[position][2] == term
        if held is _CLEAR_HELD:
            if same:
                self._raftq_held = (command, idx, term)
                return True
            self._clear_now()
            return False
        if held is not None:  # the snapshot's previous entry is ours; this is its last one
            if same:
                return True
            self._clear_now()
            self._append(*held)  # type: ignore[misc]
            return False
        if same:
            return True
        if inside:
            self._cut(position)
        return False

    # -- a failed write stops the node (fail-stop) ----------------------------------------

    @contextlib.contextmanager
    def _io(self, what: str = "journal") -> Iterator[None]:
        """Around every public method that may write (or read) the journal or the term/vote
        file: an ``OSError`` stops the node (``on_io_error``).

        Why not carry on: PySyncObj's tick thread logs any exception and goes on. After a
        failed append the entry would stay in the in-memory log (FileJournal appended to
        its list before it wrote), so the re-sent entry is "kept" and acknowledged without
        being on disk; after a failed flush of the leader's held appends, the leader would
        count entries its disk does not hold; after a failed term/vote write, it would vote
        in a term it did not record. A full disk or an I/O error is not something the node
        can answer for: it stops, and a restart (after the disk is fixed) reads the file,
        whose whole records in sequence are kept and whose torn end is dropped."""
        if self._raftq_broken is not None:
            raise JournalIOError(self._raftq_broken)
        try:
            yield
        except OSError as e:
            path = self._raftq_path + ("" if what == "journal" else ".meta")
            reason = _io_failure(what, path, e)
            self.on_io_error(reason)  # the default ends the process here
            self._roll_back(reason)
            raise JournalIOError(reason) from e

    def _roll_back(self, reason: str) -> None:
        """After a failed write whose stop hook returned: the in-memory journal and meta
        become what the files hold (as a restart would read them), so that no entry is
        "kept" that the file lacks. If even that fails, every later write is refused."""
        private: dict[str, Any] = self.__dict__
        self._raftq_held = None
        try:
            self._raftq_file.close()
            self._raftq_log, self._raftq_file = open_journal(
                self._raftq_path, sync=self._raftq_sync
            )
        except (OSError, DataError):
            self._raftq_broken = reason
            self._raftq_log = []
            return
        private["_FileJournal__meta"] = self._FileJournal__metaStorer.getMeta()
        private["_FileJournal__metaSaved"] = True

    # -- helpers --------------------------------------------------------------------------

    def _offset(self) -> int:
        return self._raftq_file.end

    def _file(self) -> JournalFile:
        return self._raftq_file

    def _sync(self) -> None:
        """Write what is held, durably (``JournalFile.sync``), timed for ``on_sync``."""
        t0 = time.perf_counter()
        self._raftq_file.sync()
        self._timed(t0)

    def _timed(self, t0: float) -> None:
        if self._raftq_sync and self.on_sync is not None:
            self.on_sync(time.perf_counter() - t0)


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
def durable_journal(*, sync: bool = True) -> Iterator[None]:
    """Within the block, SyncObj constructors called on *this* thread get a DurableFileJournal
    (when a journal file is configured; ``sync=False`` for fsync = "off"). Re-entrant and safe
    with several nodes per process: the module attribute is swapped while any thread is
    inside, and dispatches per thread."""
    check_version()
    with _Seam.lock:
        if _Seam.inside == 0:
            _Seam.original = _syncobj_module.createJournal
            _syncobj_module.createJournal = _create_journal
        _Seam.inside += 1
    previous = getattr(_Seam.local, "factory", None)
    _Seam.local.factory = functools.partial(DurableFileJournal, sync=sync)
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
    upgrade that creates it elsewhere): acknowledging without fsync, or PySyncObj's own
    truncations (see the module docstring), must not go unnoticed."""
    journal = getattr(syncobj, "_SyncObj__raftLog", None)
    if not isinstance(journal, DurableFileJournal) or journal._raftq_sync != (fsync == "always"):
        raise DurabilitySeamError(
            f"the durable journal was not installed (PySyncObj built {type(journal).__name__}): "
            f"pysyncobj {PYSYNCOBJ_VERSION} bypasses raftq.raft.pysyncobj.journal"
        )
