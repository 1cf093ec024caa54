"""The snapshot file format and the data dir checks (raftq/raft/snapshot_file.py, datadir.py):
round trips, and every damage a node must refuse to start on."""

from __future__ import annotations

import gc
import os
import pickle
import struct
import warnings
from pathlib import Path

import msgpack
import pytest
from pysyncobj.journal import FileJournal
from pysyncobj.node import TCPNode

from raftq.core import Enqueue, Machine, NewJob, encode_entry, snapshot_bytes, write_snapshot
from raftq.errors import DataError
from raftq.raft.datadir import check_data_dir, check_journal, check_meta, verify_data_dir
from raftq.raft.pysyncobj.journal import DurableMetaStorer
from raftq.raft.pysyncobj.snapshot_hooks import load_machine, member_directory, read_machine
from raftq.raft.snapshot_file import (
    RaftHeader,
    open_verified,
    remove_temp_files,
    verify_file,
    write_file,
)

HEADER = RaftHeader(
    last=(b"\x02last", 42, 3), prev=(b"\x01prev", 41, 3), cluster=("127.0.0.1:1", "127.0.0.1:2")
)


def _machine(jobs: int) -> Machine:
    m = Machine()
    for i in range(0, jobs, 10):
        batch = tuple(NewJob(payload=b"p%d" % (i + k)) for k in range(10))
        m.apply_entry(encode_entry([Enqueue(now_ms=1000 + i, queue="q", jobs=batch)]))
    return m


def _write(path: Path, m: Machine, header: RaftHeader = HEADER) -> int:
    return write_file(str(path), header, lambda w: write_snapshot(m, w))


def test_round_trip(tmp_path: Path) -> None:
    m = _machine(500)
    path = tmp_path / "raft.dump"
    size = _write(path, m)
    assert path.stat().st_size == size
    info = verify_file(str(path))
    assert info.header == HEADER
    restored = read_machine(str(path))
    assert snapshot_bytes(restored) == snapshot_bytes(m)
    assert restored.digest == m.digest and len(restored.jobs) == 500
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def _raw_header(path: Path) -> object:
    data = path.read_bytes()
    (m,) = struct.unpack_from("<I", data, 12)
    return msgpack.unpackb(data[16 : 16 + m], raw=False)


def test_the_member_directory_is_a_fourth_header_element_only_once_version_2_is_enabled(
    tmp_path: Path,
) -> None:
    """Members added at runtime ride in the header (their id and API are in no snapshot
    otherwise); without any, or before log version 2 is enabled, the header keeps the three
    elements the previous release reads (it refuses any other length)."""
    m, path = _machine(10), tmp_path / "raft.dump"
    _write(path, m)
    raw = _raw_header(path)
    assert isinstance(raw, list) and len(raw) == 3
    runtime = TCPNode("127.0.0.1:4", raftq_id="n4", raftq_api="127.0.0.1:14")
    cluster = [TCPNode("127.0.0.1:1"), TCPNode("127.0.0.1:5"), runtime]
    known = {"127.0.0.1:5": ("n5", "127.0.0.1:15")}
    assert member_directory(cluster, 1, known) == ()
    directory = member_directory(cluster, 2, known)
    assert directory == (
        ("127.0.0.1:4", "n4", "127.0.0.1:14"),
        ("127.0.0.1:5", "n5", "127.0.0.1:15"),
    )
    header = RaftHeader(HEADER.last, HEADER.prev, HEADER.cluster, directory)
    _write(path, m, header)
    assert verify_file(str(path)).header == header
    assert _raw_header(path) == [
        [b"\x02last", 42, 3],
        [b"\x01prev", 41, 3],
        ["127.0.0.1:1", "127.0.0.1:2"],
        {"127.0.0.1:4": ["n4", "127.0.0.1:14"], "127.0.0.1:5": ["n5", "127.0.0.1:15"]},
    ]


def test_rewrite_replaces_atomically_and_old_temp_files_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "raft.dump"
    _write(path, _machine(10))
    stale = tmp_path / "raft.dump.raftq-999.tmp"
    stale.write_bytes(b"half a file")
    assert remove_temp_files(str(path)) == [stale.name]
    _write(path, _machine(20))
    assert len(read_machine(str(path)).jobs) == 20


def test_every_flipped_byte_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "raft.dump"
    _write(path, _machine(20))
    good = path.read_bytes()
    for i in range(len(good)):
        damaged = bytearray(good)
        damaged[i] ^= 0x40
        path.write_bytes(bytes(damaged))
        with pytest.raises(DataError):
            verify_file(str(path))


def test_every_truncation_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "raft.dump"
    _write(path, _machine(20))
    good = path.read_bytes()
    for n in range(len(good)):
        path.write_bytes(good[:n])
        with pytest.raises(DataError, match=r"truncated|checksum|damaged|bad magic"):
            verify_file(str(path))
    path.write_bytes(good + b"\0")
    with pytest.raises(DataError):
        verify_file(str(path))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x1f\x8b\x08\x00rest of a gzip file" * 3, "PySyncObj's pickle format"),
        (b"NOTRAFTQ" + b"\0" * 100, "bad magic"),
        (b"RAFTQSNP" + struct.pack("<II", 9, 0) + b"\0" * 100, "format version 9"),
    ],
)
def test_foreign_files_are_named(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "raft.dump"
    path.write_bytes(content)
    with pytest.raises(DataError, match=problem) as e:
        verify_file(str(path))
    line = str(e.value)
    assert "\n" not in line and str(path) in line and "docs/operations.md" in line


def test_error_message_is_one_line_naming_file_problem_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "raft.dump"
    _write(path, _machine(10))
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    with pytest.raises(DataError) as e:
        verify_file(str(path))
    assert str(e.value) == (
        f"snapshot file {path}: checksum mismatch (damaged); refusing to start on it. Move this "
        "node's data dir aside and start the node empty to recover from its peers, or restore "
        "a backup (docs/operations.md#start-up-refusals)"
    )


# -- journal ---------------------------------------------------------------------------------


def _file_journal(path: Path) -> FileJournal:
    """PySyncObj's own journal (its meta reader leaves a file to the GC: collect it here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        j = FileJournal(str(path))
        gc.collect()
    return j


def _journal(tmp_path: Path, entries: int = 5) -> Path:
    path = tmp_path / "raft.journal"
    j = _file_journal(path)
    for i in range(1, entries + 1):
        j.add(b"\x01cmd%d" % i, i, 1 + i // 3)
    j._destroy()
    return path


def _end(path: Path) -> int:
    return int(struct.unpack_from("<I", path.read_bytes(), 36)[0])


def test_journal_ok(tmp_path: Path) -> None:
    info = check_journal(str(_journal(tmp_path)))
    assert (info.entries, info.first_idx, info.last_idx, info.last_term) == (5, 1, 5, 2)


def test_journal_truncated_tail(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    end = _end(path)
    with path.open("r+b") as f:
        f.truncate(end - 3)
    with pytest.raises(DataError, match="truncated: its header says records end at byte"):
        check_journal(str(path))


def test_journal_record_running_past_the_end(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with path.open("r+b") as f:  # the first record's length: now far too long
        f.seek(40)
        f.write(struct.pack("<I", 10_000))
    with pytest.raises(DataError, match="runs past the end"):
        check_journal(str(path))


def test_journal_header_pointing_past_unwritten_records(tmp_path: Path) -> None:
    """The header made durable ahead of its record (zeros where the record should be)."""
    path = _journal(tmp_path)
    end = _end(path)
    with path.open("r+b") as f:
        f.seek(36)
        f.write(struct.pack("<I", end + 64))
        f.seek(end)
        f.write(b"\0" * 64)
    with pytest.raises(DataError, match="record at byte"):
        check_journal(str(path))


@pytest.mark.parametrize("offset", [0, 4, 32])
def test_journal_bad_header(tmp_path: Path, offset: int) -> None:
    path = _journal(tmp_path)
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"\x7f")
    with pytest.raises(DataError, match=r"bad header|journal format"):
        check_journal(str(path))


def test_journal_every_length_byte_flip_is_detected(tmp_path: Path) -> None:
    """Structure only: a flip inside a command is not detectable (no per-record checksum in
    PySyncObj's format); a flip in any length, index or term field is."""
    path = _journal(tmp_path)
    good = path.read_bytes()
    offset = 40
    fields = []
    while offset < _end(path):
        (n,) = struct.unpack_from("<I", good, offset)
        fields += list(range(offset, offset + 4))  # leading length
        fields += list(range(offset + 4, offset + 8))  # low bytes of idx
        fields += list(range(offset + 4 + n, offset + 8 + n))  # trailing length
        offset += n + 8
    for i in fields:
        damaged = bytearray(good)
        damaged[i] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(DataError):
            check_journal(str(path))


def test_journal_truncated_below_its_header(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(b"PYSYNCOBJ")
    with pytest.raises(DataError, match="shorter than its header"):
        check_journal(str(path))


# -- meta and cross-checks -------------------------------------------------------------------


def test_meta_round_trip_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal.meta"
    assert check_meta(str(path)) is None
    DurableMetaStorer(str(path)).storeMeta(
        {"currentTerm": 4, "votedForNodeId": "127.0.0.1:1", "raftCommitIndex": 9}
    )
    info = check_meta(str(path))
    assert info is not None and (info.term, info.voted_for, info.commit_index) == (
        4,
        "127.0.0.1:1",
        9,
    )
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"term/vote file .*unreadable"):
        check_meta(str(path))
    # A pickle that would call a function is refused, not run.
    path.write_bytes(pickle.dumps({"currentTerm": os.getcwd}, protocol=2))
    with pytest.raises(DataError, match="unreadable"):
        check_meta(str(path))


def test_data_dir_cross_checks(tmp_path: Path) -> None:
    _journal(tmp_path)  # entries of term 2, but no term/vote file
    with pytest.raises(DataError, match="missing, but the log has entries of term 2"):
        check_data_dir(str(tmp_path))
    DurableMetaStorer(str(tmp_path / "raft.journal.meta")).storeMeta({"currentTerm": 1})
    with pytest.raises(DataError, match="term 1 is older than the log's term 2"):
        check_data_dir(str(tmp_path))
    DurableMetaStorer(str(tmp_path / "raft.journal.meta")).storeMeta({"currentTerm": 2})
    check_data_dir(str(tmp_path))
    # A journal compacted past entry 1 needs its snapshot.
    j = _file_journal(tmp_path / "raft.journal")
    j.deleteEntriesTo(2)
    j._destroy()
    with pytest.raises(DataError, match="missing, but the journal starts at entry 3"):
        check_data_dir(str(tmp_path))
    _write(tmp_path / "raft.dump", _machine(10))
    # The snapshot's last term 3 is above the stored term 2.
    with pytest.raises(DataError, match="term 2 is older than the log's term 3"):
        check_data_dir(str(tmp_path))
    DurableMetaStorer(str(tmp_path / "raft.journal.meta")).storeMeta({"currentTerm": 3})
    check_data_dir(str(tmp_path))
    reports = verify_data_dir(str(tmp_path))
    assert [r.ok for r in reports] == [True, True, True]
    assert "snapshot ok: up to entry 42 (term 3)" in reports[0].text
    bad = tmp_path / "raft.journal"
    bad.write_bytes(bad.read_bytes()[:50])
    assert [r.ok for r in verify_data_dir(str(tmp_path))] == [True, False, True]


def test_empty_dir_is_fine(tmp_path: Path) -> None:
    check_data_dir(str(tmp_path))
    assert verify_data_dir(str(tmp_path)) == []


def test_a_file_renamed_over_the_path_after_verifying_is_not_read(tmp_path: Path) -> None:
    """Bug fixed: a node loaded a snapshot from the leader by verifying the dump, then opening
    it again by path to read the body; a local compaction's writer renamed its own file over
    the dump in between, and the body was read from that file at the first one's offset
    ("not a raftq snapshot of version 3: False", the node stopped). The body now comes from
    the very file that was verified."""
    path = tmp_path / "raft.dump"
    _write(path, _machine(20))
    info, f = open_verified(str(path))
    with f:
        other = tmp_path / "other.dump"
        longer = RaftHeader(last=(b"x" * 300, 9, 2), prev=(b"y", 8, 2), cluster=("a:1", "b:2"))
        _write(other, _machine(10), longer)
        os.replace(other, path)
        assert len(load_machine(info, f).jobs) == 20
    assert len(read_machine(str(path)).jobs) == 10
