"""The durable journal seam (raftq/raft/pysyncobj/journal.py): unit tests of the journal and a
guard that fails loudly if a PySyncObj upgrade stops building its journal through the seam."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
import threading
from pathlib import Path

import pysyncobj.syncobj
import pytest
from pysyncobj.journal import FileJournal

from raftq.raft import log_file
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import journal as seam
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.pysyncobj.journal import (
    DurabilitySeamError,
    DurableFileJournal,
    DurableMetaStorer,
    check_version,
    durable_journal,
)
from tests.embed.conftest import make_config


def test_entries_written_are_read_back_at_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    j = DurableFileJournal(path)
    big = b"x" * 10_000  # crosses pages
    for i in range(1, 51):
        j.add(b"cmd%d" % i + (big if i % 10 == 0 else b""), i, 1 + i // 20)
    j.deleteEntriesFrom(45)  # PySyncObj, before it adds entry 46: removes nothing by itself
    j.deleteEntriesTo(5)  # compaction: keeps 6..50
    j.add(b"last", 46, 4)  # conflicts with entry 46 (term 3): cuts 46..50, then appends
    expected = [j[k] for k in range(len(j))]
    j._destroy()

    assert _read_back(path) == expected
    assert expected[0][1:] == (6, 1) and expected[-1] == (b"last", 46, 4)
    again = DurableFileJournal(path)
    assert _entries(again) == expected
    again.clear()
    again._destroy()
    assert _read_back(path) == []
    assert os.path.getsize(path) == log_file.HEADER_SIZE


def test_each_append_is_one_durable_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each add: its record is written with one ``pwrite`` on the journal's O_DSYNC
    descriptor (durable when the write returns) at the end of the file, before add
    returns; no write goes through an mmap. A conflicting add first cuts the file
    (``ftruncate``, then ``fdatasync``: O_DSYNC does not cover a truncation)."""
    path = str(tmp_path / "raft.journal")
    j = DurableFileJournal(path)
    calls: list[tuple[str, int, int]] = []
    real_pwrite, real_ftruncate, real_fdatasync = os.pwrite, os.ftruncate, os.fdatasync

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DSYNC, "a journal write without O_DSYNC"
        calls.append(("pwrite", offset, len(data)))
        return real_pwrite(fd, data, offset)

    def ftruncate(fd: int, length: int) -> None:
        calls.append(("ftruncate", length, 0))
        real_ftruncate(fd, length)

    def fdatasync(fd: int) -> None:
        calls.append(("fdatasync", 0, 0))
        real_fdatasync(fd)

    monkeypatch.setattr(seam.os, "pwrite", pwrite)
    monkeypatch.setattr(seam.os, "ftruncate", ftruncate)
    monkeypatch.setattr(seam.os, "fdatasync", fdatasync)
    for i, size in enumerate([10, 5000, 1], start=1):
        start = j._offset()
        calls.clear()
        j.add(b"c" * size, i, 1)
        record = 24 + size
        assert calls == [("pwrite", start, record)]
        assert _read_back(path)[i - 1 :] == [(b"c" * size, i, 1)]  # a crash right now
    calls.clear()
    j.add(b"d", 3, 2)  # conflicts with entry 3: the cut, durable, then the add
    assert calls == [("ftruncate", start, 0), ("fdatasync", 0, 0), ("pwrite", start, 24 + 1)]
    monkeypatch.undo()
    j._destroy()
    assert _read_back(path) == [(b"c" * 10, 1, 1), (b"c" * 5000, 2, 1), (b"d", 3, 2)]


def test_deferred_appends_are_written_together_when_the_block_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader's appends inside ``deferred_sync`` are held (the file does not have them
    yet), then written in one durable write when the block ends; a cut inside the block
    writes them first. Outside the block every add is durable at once."""
    path = str(tmp_path / "raft.journal")
    j = DurableFileJournal(path)
    syncs: list[float] = []
    j.on_sync = syncs.append
    j.add(b"one", 1, 1)
    assert len(syncs) == 1
    calls: list[tuple[int, int]] = []
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append((offset, len(data)))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(seam.os, "pwrite", pwrite)
    start = j._offset()
    with j.deferred_sync():
        j.add(b"two", 2, 1)
        j.add(b"three", 3, 1)
        assert calls == [] and len(syncs) == 1
        assert [j[k][0] for k in range(len(j))] == [b"one", b"two", b"three"]
        assert _read_back(path) == [(b"one", 1, 1)]  # a crash now: entry 1 only
    records = (24 + 3) + (24 + 5)
    assert calls == [(start, records)] and len(syncs) == 2
    calls.clear()
    with j.deferred_sync():  # nothing appended: nothing written
        pass
    assert calls == [] and len(syncs) == 2
    with j.deferred_sync():
        j.add(b"four", 4, 1)
        j.add(b"4", 4, 2)  # conflicts: cutting the log writes the held record first
        assert calls[0] == (start + records, 24 + 4)
    assert calls[-1] == (start + records, 24 + 1)  # then "4" where "four" was, at the end
    monkeypatch.undo()
    j._destroy()
    assert _read_back(path) == [(b"one", 1, 1), (b"two", 2, 1), (b"three", 3, 1), (b"4", 4, 2)]


def test_meta_is_durable_when_store_returns(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    j = DurableFileJournal(path)
    assert isinstance(j._FileJournal__metaStorer, DurableMetaStorer)
    j.setCurrentTerm(7, "127.0.0.1:9")
    meta = pickle.loads((tmp_path / "raft.journal.meta").read_bytes())
    assert meta["currentTerm"] == 7 and meta["votedForNodeId"] == "127.0.0.1:9"
    assert not (tmp_path / "raft.journal.meta.tmp").exists()
    j._destroy()


def test_version_pin() -> None:
    check_version("0.3.17")
    with pytest.raises(DurabilitySeamError, match=r"pysyncobj 0\.3\.17 \(installed: 0\.3\.18\)"):
        check_version("0.3.18")


def test_seam_is_per_thread_and_restored(tmp_path: Path) -> None:
    original = pysyncobj.syncobj.createJournal
    other: list[object] = []
    with durable_journal():
        assert pysyncobj.syncobj.createJournal is not original
        made = pysyncobj.syncobj.createJournal(str(tmp_path / "a"))
        t = threading.Thread(
            target=lambda: other.append(pysyncobj.syncobj.createJournal(str(tmp_path / "b")))
        )
        t.start()
        t.join()
    assert pysyncobj.syncobj.createJournal is original
    assert type(made) is DurableFileJournal
    assert type(other[0]) is FileJournal  # another thread outside the block: untouched
    made._destroy()
    other[0]._destroy()  # type: ignore[attr-defined]


async def _journal_of_started_node(tmp_path: Path, fsync: str) -> tuple[type, bool]:
    config = make_config(tmp_path, 1, f'[raft]\nfsync = "{fsync}"')
    node = RaftNode(config, new_pysyncobj_engine(config, "n1"))
    await node.start()
    try:
        journal = node.engine.syncobj._SyncObj__raftLog  # type: ignore[union-attr]
        return type(journal), journal._raftq_sync
    finally:
        await node.stop()


async def test_guard_a_started_node_journals_through_the_seam(tmp_path: Path) -> None:
    """If this fails after a PySyncObj upgrade, the upgrade bypassed
    raftq/raft/pysyncobj/journal.py: acknowledged writes would no longer be fsynced, nor the log
    kept as Raft keeps it. Re-verify the seam before pinning."""
    assert await _journal_of_started_node(tmp_path / "a", "always") == (DurableFileJournal, True)
    assert await _journal_of_started_node(tmp_path / "b", "off") == (DurableFileJournal, False)
    assert seam._Seam.inside == 0


async def test_guard_refuses_a_bypassed_seam(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate an upgrade that creates its journal without looking up createJournal.
    monkeypatch.setattr(seam, "_create_journal", lambda f=None: FileJournal(f))
    config = make_config(tmp_path, 1)
    node = RaftNode(config, new_pysyncobj_engine(config, "n1"))
    with pytest.raises(DurabilitySeamError, match="durable journal was not installed"):
        await node.start()
    await asyncio.sleep(0)


def _entries(j: DurableFileJournal) -> list[tuple[bytes, int, int]]:
    return [j[k] for k in range(len(j))]


def _read_back(path: str) -> list[tuple[bytes, int, int]]:
    """The entries a restart reads from ``path`` (what a crash now would leave)."""
    return log_file.read_entries(path)


@pytest.mark.parametrize("sync", [True, False])
def test_compaction_rewrites_the_journal_by_rename(tmp_path: Path, sync: bool) -> None:
    """deleteEntriesTo writes the kept entries to a new file and renames it over the journal;
    the journal then goes on appending to the new file."""
    path = str(tmp_path / "raft.journal")
    j = DurableFileJournal(path, sync=sync)
    for i in range(1, 201):
        j.add(b"cmd%d" % i + b"y" * (i % 7) * 1000, i, 1)
    inode = os.stat(path).st_ino
    order: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        order.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        order.append("rename")
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(seam.os, "fsync", fsync)
        mp.setattr(seam.os, "replace", replace)
        j.deleteEntriesTo(150)
    # Durable before it replaces the old journal, and the rename itself durable after.
    assert order == (["fsync-file", "rename", "fsync-dir"] if sync else ["rename"])
    assert os.stat(path).st_ino != inode, "the journal was rewritten in place"
    assert not os.path.exists(path + ".rewrite")
    j.add(b"after", 201, 2)
    expected = _entries(j)
    assert [e[1] for e in expected] == list(range(151, 202))
    j._destroy()
    assert _read_back(path) == expected


def test_bug_fixed_a_crash_inside_compaction_loses_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug fixed: FileJournal.deleteEntriesTo cleared the journal and re-added the kept
    entries in place, so a crash (even kill -9) part-way left a journal without entries this
    node had acknowledged. Now a crash before the rename leaves the old journal whole, and the
    half-written new file is removed at the next start."""
    path = str(tmp_path / "raft.journal")
    j = DurableFileJournal(path)
    for i in range(1, 101):
        j.add(b"cmd%d" % i, i, 1)
    before = _entries(j)

    def crash(src: str, dst: str) -> None:
        raise SystemExit("killed during the compaction")

    monkeypatch.setattr(seam.os, "replace", crash)
    with pytest.raises(SystemExit):
        j.deleteEntriesTo(60)
    monkeypatch.undo()
    j._destroy()
    assert os.path.exists(path + ".rewrite")
    assert _read_back(path) == before
    restarted = DurableFileJournal(path)
    assert _entries(restarted) == before
    assert not os.path.exists(path + ".rewrite")
    restarted._destroy()
