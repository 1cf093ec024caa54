"""Crash recovery of raftq's journal file (raftq/raft/log_file.py, raftq/raft/pysyncobj/journal.py).

The journal is an append-only file of checksummed records; at start the node keeps the run of
whole records in index sequence and truncates the file after it. These tests pin that a
restart keeps exactly the complete durable prefix, never an entry that was not written whole,
and every record that was synced (acknowledged):

- a process that runs a scripted sequence of appends, batches, a conflicting cut, a
  compaction and snapshot installs is SIGKILLed before, in the middle of (half the bytes
  written) and after each of its write syscalls in turn;
- a copy of a journal cut at every byte of its last record, one with each byte of a record
  flipped, and one whose indexes skip;
- a journal in PySyncObj's format (format 1) starts and is rewritten in format 2.
"""

from __future__ import annotations

import os
import signal
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.journal import FileJournal

from raftq.errors import DataError
from raftq.raft import log_file
from raftq.raft.datadir import check_data_dir, check_journal, verify_data_dir
from raftq.raft.pysyncobj.journal import DurableFileJournal, DurableMetaStorer

Entry = tuple[bytes, int, int]


def _entries(j: DurableFileJournal) -> list[Entry]:
    return [j[k] for k in range(len(j))]


def _restart(path: str) -> list[Entry]:
    """What the node starts with after a crash now (recovery included), closed again."""
    j = DurableFileJournal(path)
    try:
        return _entries(j)
    finally:
        j._destroy()


# -- kill -9 at every write boundary --------------------------------------------------------

# Each step: (name, action on the journal, floor) where a crash inside the step may leave the
# log as it was before the step, or as any prefix of the log after it at least ``floor``
# entries long (None: only the whole log after it, e.g. a compaction's rename).
Step = tuple[str, Callable[[DurableFileJournal], None], Callable[[list[Entry]], int | None]]


def _add(*entries: Entry) -> Callable[[DurableFileJournal], None]:
    def run(j: DurableFileJournal) -> None:
        for e in entries:
            j.add(*e)

    return run


def _batch(*entries: Entry) -> Callable[[DurableFileJournal], None]:
    def run(j: DurableFileJournal) -> None:
        with j.deferred_sync():  # the leader's appends: one write
            for e in entries:
                j.add(*e)

    return run


def _resend(prev: int, *entries: Entry) -> Callable[[DurableFileJournal], None]:
    """PySyncObj's follower: deleteEntriesFrom after the previous entry, then the adds."""

    def run(j: DurableFileJournal) -> None:
        j.deleteEntriesFrom(prev + 1 - j[0][1])
        for e in entries:
            j.add(*e)

    return run


def _install(prev: Entry, last: Entry) -> Callable[[DurableFileJournal], None]:
    """PySyncObj's snapshot install: clear, then the snapshot's previous and last entries."""

    def run(j: DurableFileJournal) -> None:
        j.clear()
        j.add(*prev)
        j.add(*last)

    return run


def _compact(to: int) -> Callable[[DurableFileJournal], None]:
    def run(j: DurableFileJournal) -> None:
        j.deleteEntriesTo(to)

    return run


def _e(idx: int, term: int = 1, size: int = 10) -> Entry:
    return (b"%d." % idx + b"x" * size, idx, term)


def _floor_at(n: int) -> Callable[[list[Entry]], int | None]:
    return lambda before: n


KEEP_BEFORE = len  # appends: nothing before is lost
WHOLE = lambda before: None  # noqa: E731

STEPS: list[Step] = [
    ("append 1", _add(_e(1)), KEEP_BEFORE),
    ("append 2, 3", _add(_e(2), _e(3, size=5000)), KEEP_BEFORE),
    ("leader batch 4..8", _batch(*(_e(i) for i in range(4, 9))), KEEP_BEFORE),
    ("resent 3..5: nothing written", _resend(2, _e(3, size=5000), _e(4), _e(5)), KEEP_BEFORE),
    ("conflict at 6 (term 2), then 7", _resend(5, _e(6, 2, 3), _e(7, 2)), _floor_at(5)),
    ("compaction up to 3", _compact(3), WHOLE),
    ("leader batch 8..11", _batch(*(_e(i, 2, 100 * i) for i in range(8, 12))), KEEP_BEFORE),
    ("install of a matching snapshot, then 12", _install(_e(9, 2, 900), _e(10, 2, 1000)), WHOLE),
    ("then 12", _add(_e(12, 2)), KEEP_BEFORE),
    ("install of another log's snapshot", _install(_e(20, 3), _e(21, 3)), _floor_at(0)),
    ("append 22", _add(_e(22, 3)), KEEP_BEFORE),
]

_WRITES = ("pwrite", "ftruncate", "fdatasync", "fsync", "replace")


def _expected_logs() -> list[list[Entry]]:
    """The log after each step (the model: a journal that never crashes, in memory)."""
    logs: list[list[Entry]] = []
    log: list[Entry] = []
    for name, _, _ in STEPS:
        if name.startswith("compaction"):
            log = log[3:]
        elif name.startswith("conflict"):
            log = [*log[:5], _e(6, 2, 3), _e(7, 2)]
        elif name.startswith("install of another"):
            log = [_e(20, 3), _e(21, 3)]
        elif name.startswith("leader batch 8"):
            log = [*log, *(_e(i, 2, 100 * i) for i in range(8, 12))]
        elif name == "append 1":
            log = [_e(1)]
        elif name == "append 2, 3":
            log = [*log, _e(2), _e(3, size=5000)]
        elif name.startswith("leader batch 4"):
            log = [*log, *(_e(i) for i in range(4, 9))]
        elif name == "then 12":
            log = [*log, _e(12, 2)]
        elif name == "append 22":
            log = [*log, _e(22, 3)]
        logs.append(log)
    return logs


def _child(path: str, crash_at: int, mode: str, out: int) -> None:
    """Run STEPS on a new journal at ``path``, reporting each step started and done on
    ``out``; SIGKILL itself at its ``crash_at``-th write syscall: before it, with half of a
    ``pwrite``'s bytes written (``torn``), or after it."""
    count = [0]

    def wrap(name: str) -> None:
        real = getattr(os, name)

        def fault(*args: Any) -> Any:
            count[0] += 1
            if count[0] == crash_at:
                if mode == "torn" and name == "pwrite":
                    fd, data, offset = args
                    real(fd, bytes(data)[: max(1, len(data) // 2)], offset)
                if mode == "after":
                    real(*args)
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args)

        setattr(os, name, fault)

    for name in _WRITES:
        wrap(name)
    os.write(out, b"start -1\n")  # the journal's creation
    j = DurableFileJournal(path)
    os.write(out, b"done -1\n")
    for i, (_, action, _) in enumerate(STEPS):
        os.write(out, b"start %d\n" % i)
        action(j)
        os.write(out, b"done %d\n" % i)
    j._destroy()
    os.write(out, b"writes %d\n" % count[0])


def _run_child(path: str, crash_at: int, mode: str) -> tuple[list[str], int]:
    """Fork a child that runs ``_child``; its report lines and its wait status."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(r)
            _child(path, crash_at, mode, w)
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks).decode().split(), status


def test_kill_9_at_every_write_boundary_keeps_exactly_the_durable_prefix(tmp_path: Path) -> None:
    """Every acknowledged record survives (a step's log once the step returned), nothing
    half-written is read back, and a cut or a compaction is all or nothing."""
    logs = _expected_logs()
    clean = str(tmp_path / "clean")
    os.mkdir(clean)
    words, status = _run_child(os.path.join(clean, "raft.journal"), 0, "before")
    assert status == 0 and words[-2] == "writes", words
    total = int(words[-1])
    assert _restart(os.path.join(clean, "raft.journal")) == logs[-1]
    # creation 3 (fsync, rename, fsync of the dir); one pwrite per add or leader batch (7);
    # a cut or a clear: ftruncate + fdatasync (2 x 2) and its two adds (2 x 2); the
    # compaction 3; the re-sent entries and the matching snapshot write nothing.
    assert total == 21
    crashes = 0
    for mode in ("before", "torn", "after"):
        for k in range(1, total + 1):
            d = tmp_path / f"{mode}-{k}"
            d.mkdir()
            path = str(d / "raft.journal")
            words, status = _run_child(path, k, mode)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (mode, k)
            crashes += 1
            started = [int(words[i + 1]) for i in range(0, len(words), 2) if words[i] == "start"]
            done = [int(words[i + 1]) for i in range(0, len(words), 2) if words[i] == "done"]
            step = started[-1]
            assert done[-1:] != [step], (mode, k, "killed outside a step")
            before = logs[step - 1] if step > 0 else []
            after = logs[step] if step >= 0 else []
            floor = STEPS[step][2](before) if step >= 0 else 0
            got = _restart(path)
            allowed = [before] + (
                [after[:m] for m in range(floor, len(after) + 1)] if floor is not None else [after]
            )
            assert got in allowed, (mode, k, STEPS[step][0] if step >= 0 else "creation", got)
            # The recovered file is whole again: it takes the next append and reads it back.
            j = DurableFileJournal(path)
            nxt = (j[len(j) - 1][1] + 1) if len(j) else 1
            j.add(b"next", nxt, 9)
            j._destroy()
            assert log_file.read_entries(path) == [*got, (b"next", nxt, 9)]
            assert check_journal(path).torn is None
    assert crashes == 3 * total


# -- damaged files --------------------------------------------------------------------------


def _written(tmp_path: Path, n: int = 6) -> tuple[str, list[Entry], list[int]]:
    """A journal of ``n`` entries (a compaction and a conflict behind it) and the offsets
    where its records start."""
    path = str(tmp_path / "raft.journal")
    j = DurableFileJournal(path)
    for i in range(1, n + 3):
        j.add(b"cmd%d" % i + b"y" * (i * 7), i, 1)
    j.deleteEntriesTo(1)  # entries 2..n+2
    j.add(b"other", n + 2, 2)  # cuts n+2 (term 1), adds it with term 2
    entries = _entries(j)
    j._destroy()
    starts = [log_file.HEADER_SIZE]
    for command, _, _ in entries:
        starts.append(starts[-1] + log_file.RECORD_HEADER.size + len(command))
    assert starts[-1] == os.path.getsize(path)
    return path, entries, starts


def test_a_torn_last_record_is_dropped_at_every_byte(tmp_path: Path) -> None:
    """Cut at every byte of the last record (and of the one before): the whole records
    before the cut are kept, the file is truncated after them, and appends go on there."""
    path, entries, starts = _written(tmp_path)
    good = Path(path).read_bytes()
    for cut in range(starts[-3], starts[-1]):
        Path(path).write_bytes(good[:cut])
        whole = max(i for i, s in enumerate(starts) if s <= cut)
        info = check_journal(path)
        assert info.entries == whole and (info.torn is None) == (cut == starts[whole])
        assert _restart(path) == entries[:whole], cut
        assert os.path.getsize(path) == starts[whole], "the torn bytes are still in the file"
    Path(path).write_bytes(good)
    assert _restart(path) == entries


def test_a_flipped_byte_in_the_last_record_ends_the_log_before_it(tmp_path: Path) -> None:
    """Each byte of the last record flipped in turn (checksum, length, index, term, payload:
    a write garbled by a crash): the log ends with the record before it, never with a
    damaged entry."""
    path, entries, starts = _written(tmp_path)
    good = Path(path).read_bytes()
    for at in range(starts[-2], starts[-1]):
        damaged = bytearray(good)
        damaged[at] ^= 0x01 if at % 2 else 0xFF
        Path(path).write_bytes(bytes(damaged))
        assert log_file.read_entries(path) == entries[:-1], at
        assert _restart(path) == entries[:-1], at
        assert os.path.getsize(path) == starts[-2]
    for at in range(log_file.HEADER_SIZE):  # the file header: refused, never guessed at
        damaged = bytearray(good)
        damaged[at] ^= 0x01
        Path(path).write_bytes(bytes(damaged))
        with pytest.raises(DataError, match=r"bad header|journal format"):
            check_journal(path)


def test_a_flipped_byte_inside_the_log_is_refused_not_dropped(tmp_path: Path) -> None:
    """Each byte of the third record (of seven) flipped in turn: whole records follow it, so
    it is damage on disk, not a torn write; dropping the log from there would forget entries
    the node acknowledged. The start-up check and the journal refuse it, and change nothing."""
    path, _, starts = _written(tmp_path)
    good = Path(path).read_bytes()
    for at in range(starts[2], starts[3]):
        damaged = bytearray(good)
        damaged[at] ^= 0x01 if at % 2 else 0xFF
        Path(path).write_bytes(bytes(damaged))
        with pytest.raises(DataError, match=r"and whole records follow it \(damaged\)"):
            check_journal(path)
        with pytest.raises(DataError, match=f"record at byte {starts[2]} "):
            DurableFileJournal(path)
        assert Path(path).read_bytes() == bytes(damaged), at


def test_a_broken_index_sequence_ends_the_log(tmp_path: Path) -> None:
    """Records whose checksums are fine but whose index skips (or repeats) end the log:
    what follows a gap is not this log's continuation."""
    path = str(tmp_path / "raft.journal")
    for bad in (5, 3, 1):
        records = [log_file.encode(b"c%d" % i, i, 1) for i in (1, 2, 3)]
        records.append(log_file.encode(b"odd", bad, 1))
        records.append(log_file.encode(b"c5", 5, 1))
        Path(path).write_bytes(log_file.file_header() + b"".join(records))
        info = check_journal(path)
        assert (info.entries, info.last_idx) == (3, 3) and info.torn is not None
        assert f"entry {bad} after entry 3" in info.torn
        assert [e[1] for e in _restart(path)] == [1, 2, 3]


def test_verify_reports_a_torn_tail_and_the_node_starts(tmp_path: Path) -> None:
    """``raftq data verify`` says what the next start drops; the start-up check lets the
    node start (the tail was never acknowledged: the journal drops it)."""
    path, entries, starts = _written(tmp_path)
    DurableMetaStorer(path + ".meta").storeMeta({"currentTerm": 2})
    Path(path).write_bytes(Path(path).read_bytes()[: starts[-1] - 3])
    reports = {r.path: r for r in verify_data_dir(str(tmp_path))}
    text = reports[path].text
    assert reports[path].ok and "a write torn by a crash" in text, text
    assert f"its last {starts[-1] - 3 - starts[-2]} bytes are dropped" in text, text
    assert f"entries 2..{entries[-2][1]}" in text, text


# -- migration from PySyncObj's format ------------------------------------------------------


def test_a_pysyncobj_format_journal_starts_and_is_rewritten(tmp_path: Path) -> None:
    """A data dir written before this format (PySyncObj's FileJournal, format 1) starts with
    all its entries; the file is rewritten in format 2 once, by rename, and verifies."""
    path = str(tmp_path / "raft.journal")
    old = FileJournal(path)
    for i in range(1, 41):
        old.add(b"old%d" % i + b"z" * (i * 11), i, 1 + i // 15)
    old.deleteEntriesTo(4)  # FileJournal's own compaction: entries 5..40
    expected = [old[k] for k in range(len(old))]
    old._destroy()
    DurableMetaStorer(path + ".meta").storeMeta({"currentTerm": 3})
    info = check_journal(path)
    assert (info.format, info.entries, info.first_idx, info.last_idx) == (1, 36, 5, 40)
    assert log_file.read_entries(path) == expected
    inode = os.stat(path).st_ino

    j = DurableFileJournal(path)
    assert _entries(j) == expected
    assert Path(path).read_bytes()[:8] == log_file.MAGIC and os.stat(path).st_ino != inode
    j.add(b"new", 41, 3)
    j._destroy()
    assert _restart(path) == [*expected, (b"new", 41, 3)]
    info = check_journal(path)
    assert (info.format, info.entries, info.torn) == (2, 37, None)
    assert not os.path.exists(path + ".rewrite")


def test_a_crash_while_rewriting_the_old_format_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "raft.journal")
    old = FileJournal(path)
    for i in range(1, 6):
        old.add(b"old%d" % i, i, 1)
    old._destroy()
    before = Path(path).read_bytes()

    def crash(src: str, dst: str) -> None:
        raise SystemExit("killed before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(SystemExit):
        DurableFileJournal(path)
    monkeypatch.undo()
    assert Path(path).read_bytes() == before  # untouched: the next start converts it
    assert [e[1] for e in _restart(path)] == [1, 2, 3, 4, 5]


def test_the_record_layout(tmp_path: Path) -> None:
    """The format as docs/architecture.md and raftq/raft/log_file.py describe it."""
    record = log_file.encode(b"abc", 7, 2)
    crc, n, idx, term = struct.unpack_from("<IIQQ", record)
    assert (n, idx, term, record[24:]) == (3, 7, 2, b"abc")
    assert crc == zlib.crc32(record[4:])
    head = log_file.file_header()
    assert head[:12] == b"RAFTQLOG" + struct.pack("<I", 2)
    assert head[12:] == struct.pack("<I", zlib.crc32(head[:12]))


def test_the_start_up_check_reads_the_new_format(tmp_path: Path) -> None:
    """The data dir's cross-checks see the new format's entries and terms."""
    _written(tmp_path)
    with pytest.raises(DataError, match="missing, but the journal starts at entry 2"):
        check_data_dir(str(tmp_path))  # a compacted journal needs its snapshot
    problems = [r.text for r in verify_data_dir(str(tmp_path)) if not r.ok]
    assert "missing, but the log has entries of term 2" in problems, problems


# -- the follower's batch -------------------------------------------------------------------


async def test_a_follower_writes_a_messages_entries_at_once_before_it_answers(
    tmp_path: Path,
) -> None:
    """Real nodes (in-memory transport): a follower that was cut off receives the entries it
    missed in one AppendEntries, writes them in one durable write, and sends no success
    answer while any entry it holds is not on its disk yet."""
    from raftq.core import Enqueue, NewJob  # noqa: PLC0415
    from tests.support.memory_cluster import memory_cluster, until  # noqa: PLC0415

    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        fid = next(i for i in cluster.nodes if i != leader.node_id)
        follower = cluster.nodes[fid]
        syncobj: Any = follower.engine.syncobj  # type: ignore[attr-defined]
        journal: DurableFileJournal = syncobj._SyncObj__raftLog
        file = journal._file()
        batches: list[int] = []
        early: list[object] = []
        real_sync, transport = file.sync, syncobj._SyncObj__transport
        real_send = transport.send

        def sync() -> None:
            if file.unsynced:
                batches.append(len(file._pending))
            real_sync()

        def send(node: Any, message: Any) -> Any:
            answer = isinstance(message, dict) and message.get("type") == "next_node_idx"
            if answer and message.get("success") and journal._file().unsynced:
                early.append(message)
            return real_send(node, message)

        file.sync = sync  # type: ignore[method-assign]
        transport.send = send
        cluster.partition(fid)
        for i in range(8):
            job = NewJob(payload=b"job%d" % i)
            await leader.submit(Enqueue(now_ms=leader.now_ms(), queue="q", jobs=(job,)), None)
        last = len(leader.engine.syncobj._SyncObj__raftLog)  # type: ignore[attr-defined]
        cluster.heal(fid)
        target = leader.engine.syncobj._SyncObj__raftLog[last - 1][1]  # type: ignore[attr-defined]
        await until(lambda: len(journal) > 0 and journal[len(journal) - 1][1] >= target)
        await until(lambda: not journal._file().unsynced)
        assert early == [], "a success answer went out before its entries were on disk"
        assert max(batches) >= 8, f"the missed entries were written one by one: {batches}"
        on_disk = log_file.read_entries(journal._raftq_path)
        assert on_disk[-1][1] >= target
