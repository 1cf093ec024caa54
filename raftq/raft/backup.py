"""Backup and restore of a node's state through its snapshot file.

- ``save_backup(data, out)``: writes a backup the cluster's leader made as of now
  (``POST /v1/cluster/backup``, ``RaftNode.backup``) to ``out`` and verifies it.
- ``backup(node_dir, out)``: copies the node's latest ``raft.dump`` to ``out`` and verifies the
  copy: the state as of that node's last compaction (for a stopped node). Safe on a live
  node: the node only ever replaces the file with a rename of a complete, fsynced one, so the
  copy reads either the old or the new file, never a mix (an open file keeps its contents
  across the rename).
- ``restore(backup, node_dir)``: seeds an empty data dir of a stopped node with a verified
  backup, plus a term/vote file whose term is the snapshot's last term (Raft: a node's term is
  never below its log's last term), no vote, and that commit index. Every node of a new
  cluster seeded from one backup then starts from the same log position.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from raftq.errors import DataError
from raftq.raft.datadir import DUMP_FILE, JOURNAL_FILE, META_FILE
from raftq.raft.pysyncobj.journal import DurableMetaStorer
from raftq.raft.snapshot_file import SnapshotInfo, fsync_dir, verify_file

__all__ = ["backup", "restore", "save_backup"]

_NODE_FILES = (DUMP_FILE, JOURNAL_FILE, META_FILE)


def _copy_durably(src: str, dst: str) -> None:
    tmp = f"{dst}.raftq-{os.getpid()}.tmp"
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)
    fsync_dir(os.path.dirname(os.path.abspath(dst)))


def backup(node_dir: str | Path, out: str | Path) -> SnapshotInfo:
    """Copy the node's snapshot file to ``out`` (atomically) and verify the copy."""
    src = os.path.join(node_dir, DUMP_FILE)
    verify_file(src)  # a damaged source is reported as such, not as a damaged copy
    _copy_durably(src, str(out))
    return verify_file(str(out))


def save_backup(data: bytes, out: str | Path) -> SnapshotInfo:
    """Write a backup received from the cluster (the bytes of a snapshot file) to ``out``
    (temp file, fsync, rename) and verify it (``DataError`` if damaged: ``out`` is then not
    replaced)."""
    out = str(out)
    tmp = f"{out}.raftq-{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        verify_file(tmp)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(os.path.dirname(os.path.abspath(out)))
    return verify_file(out)


def restore(backup_file: str | Path, node_dir: str | Path) -> SnapshotInfo:
    """Seed the empty data dir of a stopped node from a backup (``DataError`` if the backup is
    damaged; ``FileExistsError`` if the dir already holds node data)."""
    info = verify_file(str(backup_file))
    node_dir = Path(node_dir)
    present = [name for name in _NODE_FILES if (node_dir / name).exists()]
    if present:
        raise FileExistsError(
            f"{node_dir} already holds node data ({', '.join(present)}): "
            "move it aside first (restore only seeds an empty data dir)"
        )
    node_dir.mkdir(parents=True, exist_ok=True)
    _copy_durably(str(backup_file), str(node_dir / DUMP_FILE))
    _, last_idx, last_term = info.header.last
    DurableMetaStorer(str(node_dir / META_FILE)).storeMeta(
        {"currentTerm": last_term, "votedForNodeId": None, "raftCommitIndex": last_idx}
    )
    restored = verify_file(str(node_dir / DUMP_FILE))
    if restored.header != info.header:  # pragma: no cover - the copy was verified
        raise DataError(str(node_dir / DUMP_FILE), "differs from the backup", "snapshot")
    return restored
