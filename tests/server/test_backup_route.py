"""``POST /v1/cluster/backup`` behind real servers on real raft nodes (in-memory transport): the
leader streams its state as of now as a snapshot file; a follower sends the client to the
leader (the file is not relayed); the client and ``save_backup`` keep and verify it."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftq.client import Client
from raftq.errors import DataError
from raftq.raft.backup import save_backup
from raftq.raft.pysyncobj.snapshot_hooks import read_machine


@pytest.fixture
def engine() -> str:
    return "raft"


async def test_a_backup_through_a_follower_comes_from_the_leader(start, err, tmp_path: Path):
    async with start(followers=1) as h:
        reply = await h.post("/v1/queues/q/jobs", {"jobs": [{"payload": i} for i in range(7)]})
        assert reply.status == 201, reply.body
        ids = reply.body["ids"]

        # A follower answers 503 not_leader naming the leader, which the client follows.
        refused = await h.post("/v1/cluster/backup", node="n2")
        assert refused.status == 503 and err(refused)[0] == "not_leader"
        assert refused.headers["X-Raftq-Leader"] == h.addresses["n1"]

        applied = h.node.status().applied_index
        direct = await h.post("/v1/cluster/backup")
        assert direct.status == 200
        assert direct.headers["Content-Type"] == "application/octet-stream"
        index = int(direct.headers["X-Raftq-Backup-Index"])
        assert index > applied  # the barrier's entry comes after everything acknowledged

        async with Client([h.addresses["n2"]], timeout_ms=5000) as client:
            data = await client.backup()
        info = save_backup(data, tmp_path / "b.dump")
        assert info.header.last[1] >= index
        machine = read_machine(str(tmp_path / "b.dump"))
        assert sorted(machine.jobs) == ids

        # No fields are taken.
        bad = await h.post("/v1/cluster/backup", {"to": "x"})
        assert bad.status == 400, bad.body


async def test_a_damaged_transfer_is_not_kept(tmp_path: Path) -> None:
    out = tmp_path / "b.dump"
    out.write_bytes(b"the previous backup")
    with pytest.raises(DataError, match="truncated"):
        save_backup(b"RAFTQSNP\x01\x00\x00\x00", out)
    assert out.read_bytes() == b"the previous backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.dump"]


async def test_a_writer_that_fails_is_a_409_and_leaves_no_file(start, err, monkeypatch):
    """The forked writer exits 1 (as on a full disk): one answer naming it, not retried, and
    nothing left in the data dir."""

    def fail(path, *args, **kwargs):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr("raftq.raft.pysyncobj.snapshot_hooks.write_file", fail)
    async with start() as h:
        data_dir = h.node.config.node_data_dir(h.node.node_id)
        reply = await h.post("/v1/cluster/backup")
        assert reply.status == 409, reply.body
        code, message = err(reply)
        assert code == "backup_failed"
        assert message == "backup: the writer failed (exit 1); see the node's stderr"
        # Neither the backup nor the writer's temp file is left (the node never compacted).
        assert [p.name for p in data_dir.iterdir() if p.name.startswith("raft.dump")] == []
