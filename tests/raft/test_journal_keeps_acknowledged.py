"""Bug fixed: a follower forgot log entries it had acknowledged (raftq/raft/pysyncobj/journal.py,
"Never forgetting an acknowledged entry").

PySyncObj 0.3.17's follower handles an AppendEntries that overlaps its log by dropping every
entry after the message's previous entry (``deleteEntriesFrom``) and adding the message's
entries; a snapshot install calls ``clear()`` and adds the snapshot's previous and last
entries. These tests replay exactly those journal calls. On the old journal, a re-sent
message shorter than the log (the leader re-sends from an older index in 64 KiB batches) cut
entries the follower had acknowledged, and an older snapshot replaced a longer log: the
integration test then saw acknowledged jobs lost and job ids handed out twice.
"""

from __future__ import annotations

from pathlib import Path

from pysyncobj.journal import FileJournal

from raftq.raft.log_file import read_entries
from raftq.raft.pysyncobj.journal import DurableFileJournal

TERM = 3


def _follower(tmp_path: Path, n: int = 10, term: int = TERM) -> DurableFileJournal:
    j = DurableFileJournal(str(tmp_path / "raft.journal"))
    j.setCurrentTerm(TERM, None)
    for i in range(1, n + 1):
        j.add(b"cmd%d" % i, i, term)
    return j


def _log(j: FileJournal) -> list[tuple[bytes, int, int]]:
    return [j[k] for k in range(len(j))]


def _on_disk(tmp_path: Path, j: DurableFileJournal) -> list[tuple[bytes, int, int]]:
    j._destroy()
    return read_entries(str(tmp_path / "raft.journal"))  # what a restart reads


def _resend(j: DurableFileJournal, prev_idx: int, entries: list[tuple[bytes, int, int]]) -> None:
    """What PySyncObj's follower does with an AppendEntries whose previous entry is
    ``prev_idx`` while its log goes further (syncobj.py, 'append_entries')."""
    j.deleteEntriesFrom(prev_idx + 1 - j[0][1])
    for entry in entries:
        j.add(*entry)


def test_a_resent_shorter_message_keeps_the_entries_after_it(tmp_path: Path) -> None:
    j = _follower(tmp_path)
    before = _log(j)
    _resend(j, 5, [(b"cmd6", 6, TERM), (b"cmd7", 7, TERM)])  # old code: log ends at 7
    assert _log(j) == before
    _resend(j, 9, [])  # a heartbeat from an older index: old code cut 10
    assert _log(j) == before
    assert _on_disk(tmp_path, j) == before


def test_a_conflicting_entry_still_cuts_the_log_there(tmp_path: Path) -> None:
    j = _follower(tmp_path)
    _resend(j, 5, [(b"cmd6", 6, TERM), (b"new7", 7, TERM + 1)])
    expected = [(b"cmd%d" % i, i, TERM) for i in range(1, 7)] + [(b"new7", 7, TERM + 1)]
    assert _log(j) == expected
    j.add(b"new8", 8, TERM + 1)
    expected.append((b"new8", 8, TERM + 1))
    assert _on_disk(tmp_path, j) == expected


def test_entries_of_an_older_term_are_kept_too(tmp_path: Path) -> None:
    """Until 2026-12-05 they were dropped (PySyncObj's commit rule, the log end, would have
    committed them unverified); ``RaftqSyncObj`` now caps the commit index at the last entry
    a message carried (tests/raft/test_commit_rule.py), so they stay until one conflicts."""
    j = _follower(tmp_path, term=TERM - 1)
    before = _log(j)
    _resend(j, 5, [(b"cmd6", 6, TERM - 1)])
    assert _log(j) == before
    assert _on_disk(tmp_path, j) == before


def test_an_older_snapshot_does_not_replace_a_longer_log(tmp_path: Path) -> None:
    j = _follower(tmp_path)
    before = _log(j)
    # __loadDumpFile(clearJournal=True) of a snapshot taken at entry 7.
    j.clear()
    j.add(b"cmd6", 6, TERM)
    j.add(b"cmd7", 7, TERM)  # old code: the log is [6, 7]
    assert _log(j) == before
    assert _on_disk(tmp_path, j) == before


def test_a_log_holding_the_snapshot_keeps_entries_of_older_terms(tmp_path: Path) -> None:
    """__loadDumpFile of a snapshot ending at 7, on a log that does not begin with its
    previous and last entries: at start after a crash between a snapshot and the journal's
    truncation (tests/raft/test_snapshot_hooks.py runs it on a real node), or an install
    from a leader. The log keeps everything; old code kept it [6, 7]."""
    j = _follower(tmp_path, term=TERM - 1)
    before = _log(j)
    j.clear()
    j.add(b"cmd6", 6, TERM - 1)
    j.add(b"cmd7", 7, TERM - 1)
    assert _log(j) == before
    assert _on_disk(tmp_path, j) == before


def test_a_snapshot_that_is_not_a_prefix_replaces_the_log(tmp_path: Path) -> None:
    j = _follower(tmp_path, n=4)
    j.clear()  # the snapshot is ahead of this follower: install it
    j.add(b"s6", 6, TERM)
    j.add(b"s7", 7, TERM)
    assert _log(j) == [(b"s6", 6, TERM), (b"s7", 7, TERM)]
    j.clear()  # its previous entry matches, its last one conflicts
    j.add(b"s6", 6, TERM)
    j.add(b"x7", 7, TERM + 1)
    assert _on_disk(tmp_path, j) == [(b"s6", 6, TERM), (b"x7", 7, TERM + 1)]


def test_a_clear_not_followed_by_adds_happens_at_the_next_write(tmp_path: Path) -> None:
    j = _follower(tmp_path)
    j.clear()
    j.deleteEntriesTo(0)
    assert _log(j) == []
    j.add(b"a", 1, TERM)
    j.clear()
    j.add(b"a", 1, TERM)  # held: the snapshot's previous entry matches
    assert _on_disk(tmp_path, j) == [(b"a", 1, TERM)]  # closing does the held clear + add
