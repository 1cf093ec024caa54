"""`raftq data verify|backup|restore` in-process (raftq.cli.main), on files made by the real
writers."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftq.cli.main import main
from raftq.core import Machine, write_snapshot
from raftq.raft.pysyncobj.journal import DurableMetaStorer
from raftq.raft.snapshot_file import RaftHeader, verify_file, write_file


def _node_dir(root: Path) -> Path:
    root.mkdir()
    header = RaftHeader(last=(b"\x01a", 8, 2), prev=(b"\x01b", 7, 2), cluster=("h:1",))
    write_file(str(root / "raft.dump"), header, lambda w: write_snapshot(Machine(), w))
    DurableMetaStorer(str(root / "raft.journal.meta")).storeMeta({"currentTerm": 2})
    return root


def test_verify_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = _node_dir(tmp_path / "n1")
    assert main(["data", "verify", str(node)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"ok  {node / 'raft.dump'}: snapshot ok: up to entry 8 (term 2), "
        f"{(node / 'raft.dump').stat().st_size} bytes, checksum verified",
        f"ok  {node / 'raft.journal.meta'}: term/vote ok: term 2, voted for nobody, commit index 1",
    ]
    dump = node / "raft.dump"
    dump.write_bytes(dump.read_bytes()[:-1])
    assert main(["data", "verify", str(node)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"BAD {dump}: truncated or damaged")
    assert main(["data", "verify", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == f"raftq: error: {tmp_path / 'nope'}: not a directory\n"


def test_backup_and_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = _node_dir(tmp_path / "n1")
    backup = tmp_path / "b.dump"
    assert main(["data", "backup", str(node), str(backup)]) == 0
    assert capsys.readouterr().out.startswith(f"{backup}: snapshot up to entry 8 (term 2), ")
    target = tmp_path / "new" / "n1"
    assert main(["data", "restore", str(backup), str(target)]) == 0
    assert verify_file(str(target / "raft.dump")).header.last == (b"\x01a", 8, 2)
    assert main(["data", "verify", str(target)]) == 0
    assert "term/vote ok: term 2, voted for nobody, commit index 8" in capsys.readouterr().out
    # A folder that holds node data is not overwritten.
    assert main(["data", "restore", str(backup), str(target)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"raftq: error: {target} already holds node data") and err.count("\n") == 1
    )
    # A damaged backup is refused with the one-line data error.
    backup.write_bytes(backup.read_bytes()[:100])
    assert main(["data", "restore", str(backup), str(tmp_path / "n9")]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"raftq: error: snapshot file {backup}: truncated") and err.count("\n") == 1
    )
    assert not (tmp_path / "n9").exists()


def test_backup_of_a_dir_without_a_snapshot_names_the_live_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A young node has no snapshot yet (issue 20 item 5): the offline copy says so and how to
    back up the running cluster, never to move the data dir aside."""
    node = tmp_path / "n1"
    node.mkdir()
    DurableMetaStorer(str(node / "raft.journal.meta")).storeMeta({"currentTerm": 1})
    out = tmp_path / "b.dump"
    assert main(["data", "backup", str(node), str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"raftq: error: {node / 'raft.dump'}: that node has not written a snapshot yet (a "
        f"young node's state is in its journal): no backup written; back up the running "
        f"cluster with `raftq data backup {out}` (--nodes, an admin token): it holds the "
        "state as of now\n"
    )
    assert "aside" not in err and not out.exists()


def test_restore_of_an_old_format_backup_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = tmp_path / "old.dump"
    backup.write_bytes(b"\x1f\x8b\x08\x00 a PySyncObj pickle dump")
    assert main(["data", "restore", str(backup), str(tmp_path / "n1")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"raftq: error: snapshot file {backup}: PySyncObj's pickle format (written by an older "
        "raftq); not a backup this raftq can restore, nothing written\n"
    )
    assert not (tmp_path / "n1").exists()
