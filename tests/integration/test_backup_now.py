"""`raftq data backup OUT` on a node started seconds ago (issue 20 item 5): the leader writes
the state as of the call, so the backup holds every write acknowledged before it (until then
the command copied the node's last compaction: a young node had none, "missing; refusing to
start on it. Move this node's data dir aside...", and an older one's was up to 5 minutes
stale). A new cluster restored from it has every job, in the state it had."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from raftq.client import SyncClient
from tests.integration.cluster import Cluster, http_json

_CLI = [sys.executable, "-m", "raftq"]


def test_a_backup_of_a_young_node_holds_every_acknowledged_write(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    with Cluster.generate(live, n=1) as cluster:
        node = cluster.wait_ready()
        api = cluster.api[node]
        with SyncClient([api], timeout_ms=10_000) as client:
            ids = [client.enqueue("q", {"i": i}) for i in range(12)]
            claimed = client.claim("q", worker="w", max=5)
            for job in claimed[:3]:
                client.ack(job.id, job.token, {"done": job.id})
            client.cancel(ids[-1])
        # At once: no compaction has run on this node (its default period is 300 s).
        assert not (live / "data" / node / "raft.dump").exists()
        backup = tmp_path / "backup.dump"
        run = subprocess.run(
            [*_CLI, "data", "backup", str(backup), "--nodes", api],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith(f"{backup}: the cluster's state up to entry "), run.stdout

    acked = {job.id for job in claimed[:3]}
    running = {job.id for job in claimed[3:]}
    expected = {
        job_id: "succeeded"
        if job_id in acked
        else "leased"
        if job_id in running
        else "cancelled"
        if job_id == ids[-1]
        else "queued"
        for job_id in ids
    }

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    restored = Cluster.generate(fresh, n=1)
    seeded = subprocess.run(
        [*_CLI, "data", "restore", str(backup), str(fresh / "data" / "n1")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    with restored:
        leader = restored.wait_ready()
        states = {}
        for job_id in ids:
            status, body = http_json(restored.url(leader, f"/v1/jobs/{job_id}"))
            assert status == 200, body
            states[job_id] = body["state"]
            if job_id in acked:
                assert body["result"] == {"done": job_id}, body
        assert states == expected
