"""A failed journal or term/vote write stops the node (raftq/raft/pysyncobj/journal.py, fail-stop).

Bug fixed: PySyncObj's FileJournal appends an entry to its in-memory list before it writes
it, and PySyncObj's tick thread logs any exception and carries on. After a failed write
(ENOSPC, EIO) the entry stayed in memory: the leader re-sent it, ``_keeps`` found (index,
term) in memory and wrote nothing, and the follower acknowledged an entry that was not on
its disk; the next entry was written where the missing one belonged (a file holding entries
1, 3). On the leader, a failed flush of its held appends (``deferred_sync``) dropped them
while it kept counting them. Now any ``OSError`` of the journal calls ``on_io_error`` (by
default: log one line, exit 74) from inside the journal.

The tests replace ``on_io_error`` with a recorder: the journal must then be rolled back to
what its file holds (so nothing on disk is ever claimed that is not there) and raise. A
subprocess shows the default hook ends the process; a real tmpfs shows a real ENOSPC.
"""

from __future__ import annotations

import errno
import gc
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal

from raftq.errors import DataError, RaftqError
from raftq.raft.datadir import check_data_dir, check_journal
from raftq.raft.log_file import read_entries
from raftq.raft.pysyncobj import journal as seam
from raftq.raft.pysyncobj.journal import DurableFileJournal, DurableMetaStorer

REPO = Path(__file__).resolve().parents[2]


def _entries(j: FileJournal) -> list[tuple[bytes, int, int]]:
    return [j[k] for k in range(len(j))]


def _file_journal(path: str) -> FileJournal:
    """PySyncObj's own journal (its meta reader leaves a file to the GC: collect it here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        j = FileJournal(path)
        gc.collect()
    return j


def _on_disk(path: str) -> list[tuple[bytes, int, int]]:
    """What a restart reads from the file (what a crash now would leave)."""
    return read_entries(path)


def _journal(tmp_path: Path, n: int, *, sync: bool = True) -> tuple[DurableFileJournal, str]:
    path = str(tmp_path / "raft.journal")
    j = DurableFileJournal(path, sync=sync)
    for i in range(1, n + 1):
        j.add(b"cmd%d" % i, i, 1)
    return j, path


def _stops(j: DurableFileJournal) -> list[str]:
    """Record the fail-stop reasons instead of ending the process."""
    reasons: list[str] = []
    j.on_io_error = reasons.append
    return reasons


def _failing(
    monkeypatch: pytest.MonkeyPatch, name: str, code: int, after: int = 0
) -> Callable[[], int]:
    """Make ``os.<name>`` raise ``OSError(code)`` from its ``after+1``-th call on (a real
    failed syscall's error, as the kernel returns it); returns the number of calls."""
    real = getattr(os, name)
    calls = [0]

    def fake(*args: object) -> object:
        calls[0] += 1
        if calls[0] > after:
            raise OSError(code, os.strerror(code))
        return real(*args)

    monkeypatch.setattr(seam.os, name, fake)
    return lambda: calls[0]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_bug_fixed_a_failed_append_stops_and_a_resent_entry_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Follower path: the write of entry 2 fails. The node stops (hook called with the one
    line); the in-memory log does not claim entry 2; the leader's re-sent entry 2 is written,
    not "kept", and entry 3 follows it on disk (before: the file held 1, 3)."""
    j, path = _journal(tmp_path, 1)
    reasons = _stops(j)
    _failing(monkeypatch, "pwrite", code)
    with pytest.raises((OSError, RaftqError)):
        j.add(b"cmd2", 2, 1)
    monkeypatch.undo()
    assert _entries(j) == _on_disk(path) == [(b"cmd1", 1, 1)], "claims an unwritten entry"
    assert len(reasons) == 1, f"the journal did not stop the node: {reasons}"
    assert reasons[0].startswith(f"raftq: stopping: journal write failed on {path}: ")
    assert f"[Errno {code}] {os.strerror(code)}" in reasons[0]
    todo = "free space on that disk" if code == errno.ENOSPC else "check that disk (kernel log)"
    assert f"{todo} and restart the node" in reasons[0] and "\n" not in reasons[0]
    j.add(b"cmd2", 2, 1)  # the leader re-sends it: it must be written, not kept
    j.add(b"cmd3", 3, 1)
    assert [e[1] for e in _on_disk(path)] == [1, 2, 3]
    assert _entries(j) == _on_disk(path)
    j._destroy()
    check_journal(path)


def test_bug_fixed_a_torn_record_write_leaves_no_unwritten_entry_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half of the record is written, then the write fails: on disk the entry does not
    exist (a restart drops the torn record), so it must not exist in memory either, and the
    torn bytes are gone from the file before anything is appended after them."""
    j, path = _journal(tmp_path, 3)
    reasons = _stops(j)
    real = os.pwrite
    calls = [0]

    def torn(fd: int, data: bytes, offset: int) -> int:
        calls[0] += 1
        if calls[0] > 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, bytes(data)[: len(data) // 2], offset)

    monkeypatch.setattr(seam.os, "pwrite", torn)
    with pytest.raises((OSError, RaftqError)):
        j.add(b"cmd4", 4, 1)
    monkeypatch.undo()
    assert calls[0] == 2 and len(reasons) == 1
    assert _entries(j) == _on_disk(path) and len(j) == 3
    j.add(b"cmd4", 4, 1)
    assert [e[1] for e in _on_disk(path)] == [1, 2, 3, 4]
    j._destroy()


def test_bug_fixed_the_leaders_failed_flush_of_held_appends_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leader path: appends held inside ``deferred_sync`` are written when the block ends;
    that write fails. Before, the held records were dropped and the leader went on counting
    a log of 5 entries with 3 on disk."""
    j, path = _journal(tmp_path, 3)
    reasons = _stops(j)
    with pytest.raises((OSError, RaftqError)), j.deferred_sync():
        j.add(b"cmd4", 4, 1)
        j.add(b"cmd5", 5, 1)
        _failing(monkeypatch, "pwrite", errno.ENOSPC)
    monkeypatch.undo()
    assert _entries(j) == _on_disk(path) and len(j) == 3, "the leader counts unwritten entries"
    assert len(reasons) == 1 and "journal write failed" in reasons[0]
    with j.deferred_sync():  # re-proposed by the next leader, say: written this time
        j.add(b"cmd4", 4, 2)
    assert [e[1:] for e in _on_disk(path)] == [(1, 1), (2, 1), (3, 1), (4, 2)]
    j._destroy()


def test_bug_fixed_a_failed_term_vote_write_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vote must not leave in a term the node could not record: the failed fsync of the
    term/vote file stops it, and the term in memory stays the one on disk."""
    j, path = _journal(tmp_path, 1)
    j.setCurrentTerm(3, "127.0.0.1:1")
    reasons = _stops(j)
    _failing(monkeypatch, "fsync", errno.EIO)
    with pytest.raises((OSError, RaftqError)):
        j.setCurrentTerm(4, "127.0.0.1:2")
    monkeypatch.undo()
    assert len(reasons) == 1
    assert reasons[0].startswith(f"raftq: stopping: term/vote file write failed on {path}.meta")
    assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (3, "127.0.0.1:1")
    j._destroy()


def test_a_failed_term_vote_write_stops_without_fsync_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync = "off": no fsync, but a failed write of the file (here its open) still stops."""
    j, _ = _journal(tmp_path, 1, sync=False)
    reasons = _stops(j)
    monkeypatch.setattr(seam.os, "replace", _raise(errno.ENOSPC))
    with pytest.raises((OSError, RaftqError)):
        j.setCurrentTerm(2, None)
    monkeypatch.undo()
    assert len(reasons) == 1 and "No space left on device" in reasons[0]
    j._destroy()


def _raise(code: int) -> Callable[..., None]:
    def fail(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("op", ["clear", "compaction"])
def test_failed_clear_and_compaction_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    """The other writes: a clear (its truncation) and a compaction (its new file's fsync):
    the node stops, the journal stays what the file holds."""
    j, path = _journal(tmp_path, 5)
    reasons = _stops(j)
    _failing(monkeypatch, "ftruncate" if op == "clear" else "fsync", errno.EIO)
    with pytest.raises((OSError, RaftqError)):
        if op == "clear":
            j.clear()  # an empty log is cleared at once; a full one waits for the adds
            j.flush()
        else:
            j.deleteEntriesTo(2)
    monkeypatch.undo()
    assert len(reasons) == 1
    assert _entries(j) == _on_disk(path) and len(j) == 5
    j._destroy()


# -- a real full disk -----------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test (needs root, as the project's tests run)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.integration
def test_bug_fixed_a_full_disk_stops_the_journal_with_the_file_consistent(
    small_tmpfs: Path,
) -> None:
    """Appends on a real 64 KiB tmpfs (half of it taken by a filler) until it is full: the
    first ENOSPC stops the node and the log in memory is the file's; once the filler is
    deleted, the re-sent entry is written (not "kept") and the file passes the start-up
    check with no gap."""
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * 32 * 1024)
    path = str(small_tmpfs / "raft.journal")
    j = DurableFileJournal(path)
    reasons = _stops(j)
    written = 0
    with pytest.raises((OSError, RaftqError)):  # adds until the disk is full
        for i in range(1, 1000):
            j.add(b"x" * 1000, i, 1)
            written = i
    assert len(reasons) == 1 and "[Errno 28] No space left on device" in reasons[0]
    assert written > 0 and len(j) == written and _entries(j) == _on_disk(path)
    filler.unlink()  # the operator frees space
    j.add(b"x" * 1000, written + 1, 1)  # re-sent: must be written (it never was)
    j.add(b"y", written + 2, 1)
    assert [e[1] for e in _on_disk(path)] == list(range(1, written + 3))
    assert _entries(j) == _on_disk(path)
    j._destroy()
    check_journal(path)


@pytest.mark.integration
def test_the_default_hook_ends_the_process_with_exit_74(tmp_path: Path) -> None:
    """Production: nothing to catch, the process ends (exit 74) with the one line on stderr."""
    script = textwrap.dedent(
        """
        import errno, os, sys
        from raftq.raft.pysyncobj.journal import DurableFileJournal
        j = DurableFileJournal(sys.argv[1])
        j.add(b"one", 1, 1)
        def full(*args):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.pwrite = full
        try:
            j.add(b"two", 2, 1)
        except BaseException as e:
            print("carried on after", repr(e))
        print("still running")
        """
    )
    path = str(tmp_path / "raft.journal")
    proc = subprocess.run(
        [sys.executable, "-c", script, path],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 74, (proc.returncode, proc.stdout, proc.stderr)
    assert "still running" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "raftq: stopping:" in line]
    assert lines == [
        f"raftq: stopping: journal write failed on {path}: [Errno 28] No space left on "
        "device; free space on that disk and restart the node (nothing acknowledged was "
        "lost; exit 74)"
    ]


# -- the start-up check ---------------------------------------------------------------------


def _plain_journal(path: Path, entries: list[tuple[int, int]]) -> None:
    """A journal written by PySyncObj's own FileJournal, with the given (index, term)s."""
    j = _file_journal(str(path))
    for idx, term in entries:
        j.add(b"cmd%d" % idx, idx, term)
    j._destroy()
    DurableMetaStorer(str(path) + ".meta").storeMeta({"currentTerm": 9})


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([(1, 1), (3, 1)], "entry 3 follows entry 1"),
        ([(1, 1), (2, 2), (3, 1)], "entry 3 has term 1 after term 2"),
    ],
    ids=["gap", "decreasing-term"],
)
def test_start_up_check_refuses_a_journal_with_a_gap_or_a_term_going_back(
    tmp_path: Path, entries: list[tuple[int, int]], problem: str
) -> None:
    """What a write lost without stopping left behind (entries 1, 3): refused at start with
    one line naming the file and what to do; a journal without the defect passes."""
    path = tmp_path / "raft.journal"
    _plain_journal(path, entries)
    with pytest.raises(DataError) as info:
        check_data_dir(str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"journal file {path}: ") and problem in message
    assert "Move this node's data dir aside" in message and "\n" not in message
    path.unlink()
    _plain_journal(path, [(1, 1), (2, 2), (3, 2)])
    check_data_dir(str(tmp_path))
