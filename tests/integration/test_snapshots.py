"""Snapshots, damaged data and recovery with real `raftq serve` processes (issue 4 §2, §3).

- a stopped node whose snapshot or journal was damaged refuses to start with one line naming
  the file, and the rest of the cluster keeps serving;
- a lagging node catches up through a snapshot sent by the leader; a wiped node rejoins and
  recovers from its peers, to the same digest;
- a backup taken from a live node seeds a new cluster with the same jobs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from raftq.raft.pysyncobj.snapshot_hooks import read_machine
from raftq.raft.snapshot_file import verify_file
from tests.integration.cluster import Cluster, http_json

# Compact often (every 30 entries, any second in each node's window): every node has a
# snapshot after a few hundred writes.
COMPACT = "log_compaction_min_entries = 30\nlog_compaction_min_time_s = 1"
REFUSAL_TAIL = (
    "; refusing to start on it. Move this node's data dir aside and start the node empty to "
    "recover from its peers, or restore a backup (docs/operations.md#start-up-refusals)"
)


def _enqueue(cluster: Cluster, nid: str, n: int, start: int = 0) -> list[int]:
    ids = []
    for i in range(start, start + n):
        status, body = http_json(cluster.url(nid, "/v1/queues/q/jobs"), {"payload": {"i": i}})
        assert status == 201, body
        ids.append(int(body["id"]))
    return ids


def _queued(cluster: Cluster, nid: str) -> int:
    status, body = http_json(cluster.url(nid, "/v1/queues/q"))
    assert status == 200, body
    return int(body["depth"]["queued"])


def _wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _data(cluster: Cluster, nid: str) -> Path:
    return cluster.root / "data" / nid


def _term(cluster: Cluster, nid: str) -> int:
    view = cluster.view(nid)
    assert view is not None
    return int(view["self"]["term"])


def _log_since(cluster: Cluster, nid: str, offset: int) -> str:
    return (cluster.root / f"{nid}.log").read_bytes()[offset:].decode(errors="replace")


def _log_size(cluster: Cluster, nid: str) -> int:
    path = cluster.root / f"{nid}.log"
    return path.stat().st_size if path.exists() else 0


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


def test_damaged_snapshot_or_journal_is_refused_and_the_rest_keeps_serving(
    tmp_path: Path,
) -> None:
    with Cluster.generate(tmp_path, extra_raft=COMPACT) as cluster:
        leader = cluster.wait_ready()
        victim = cluster.followers()[0]
        _enqueue(cluster, leader, 150)
        dump = _data(cluster, victim) / "raft.dump"
        journal = _data(cluster, victim) / "raft.journal"
        _wait_for(dump.exists, 30, f"a snapshot on {victim}")
        cluster.kill(victim)
        pristine = tmp_path / "pristine"
        shutil.copytree(_data(cluster, victim), pristine)

        damages = [
            ("snapshot", dump, lambda: _flip(dump, dump.stat().st_size // 2), "checksum mismatch"),
            ("snapshot", dump, lambda: _truncate(dump, dump.stat().st_size - 100), "truncated"),
            # A record damaged inside the log (whole records after it), not a torn end: its
            # payload, and (in the middle of the file) whatever field the byte belongs to.
            # (byte 40: the first payload byte of the first record, whose payload may be 1 byte)
            ("journal", journal, lambda: _flip(journal, 40), "record at byte 16 fails its"),
            (
                "journal",
                journal,
                lambda: _flip(journal, journal.stat().st_size // 2),
                "and whole records follow it (damaged)",
            ),
        ]
        written = 150
        for kind, path, damage, problem in damages:
            shutil.rmtree(_data(cluster, victim))
            shutil.copytree(pristine, _data(cluster, victim))
            damage()
            offset = _log_size(cluster, victim)
            cluster.start(victim)
            assert cluster.procs[victim].wait(60) == 1
            log = _log_since(cluster, victim, offset)
            last = log.strip().splitlines()[-1]
            assert last.startswith(f"raftq: error: {kind} file {path}: "), log
            assert problem in last and last.endswith(REFUSAL_TAIL), last
            assert "Traceback" not in log
            # The two others still take writes and agree.
            _enqueue(cluster, leader, 5, written)
            written += 5

        # Back to its undamaged data with the journal's last record torn (what a crash in the
        # middle of a write leaves): the node drops it, starts, rejoins and converges.
        shutil.rmtree(_data(cluster, victim))
        shutil.copytree(pristine, _data(cluster, victim))
        _truncate(journal, journal.stat().st_size - 5)
        offset = _log_size(cluster, victim)
        cluster.start(victim)
        cluster.wait_converged(60)
        assert _queued(cluster, victim) == written
        assert "dropping its last" in _log_since(cluster, victim, offset)


def test_lagging_and_wiped_nodes_recover_from_peers_and_a_backup_seeds_a_new_cluster(
    tmp_path: Path,
) -> None:
    root = tmp_path / "a"
    root.mkdir()
    with Cluster.generate(root, extra_raft=COMPACT) as cluster:
        leader = cluster.wait_ready()
        lagging, wiped = cluster.followers()
        _enqueue(cluster, leader, 100)
        cluster.wait_converged()

        # Lagging: down while the leader compacts past its log's end, then started again.
        # (Killed, not stopped: a stopped node later reads the entries still buffered in its
        # sockets and may catch up without a snapshot.) Its log may hold entries past its
        # applied index, up to the leader's commit index plus the few in flight.
        offset = _log_size(cluster, lagging)
        cluster.kill(lagging)
        sent = cluster.view(leader)["self"]["commit_index"] + 10  # type: ignore[index]
        leader_dump = _data(cluster, leader) / "raft.dump"
        written = 100
        while not (
            leader_dump.exists() and verify_file(str(leader_dump)).header.prev[1] > sent + 1
        ):
            _enqueue(cluster, leader, 20, written)
            written += 20
        cluster.start(lagging)
        cluster.wait_converged(60)
        assert "installed a snapshot" in _log_since(cluster, lagging, offset)

        # Wiped: its data dir is gone; it rejoins empty and gets everything from its peers.
        cluster.kill(wiped)
        shutil.rmtree(_data(cluster, wiped))
        offset = _log_size(cluster, wiped)
        cluster.start(wiped)
        digest = cluster.wait_converged(60)
        assert "installed a snapshot" in _log_since(cluster, wiped, offset)
        assert all(_queued(cluster, nid) == written for nid in cluster.ids), digest

        # Backup from a live node (the CLI), then a new cluster seeded from it.
        backup = tmp_path / "backup.dump"
        _wait_for((_data(cluster, wiped) / "raft.dump").exists, 30, "a snapshot")
        cli = [sys.executable, "-m", "raftq", "data"]
        out = subprocess.run(
            [*cli, "backup", str(_data(cluster, wiped)), str(backup)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.startswith(f"{backup}: snapshot up to entry ")
    saved = read_machine(str(backup))
    saved_ids = sorted(saved.jobs)
    assert 0 < len(saved_ids) <= written

    root = tmp_path / "b"
    root.mkdir()
    restored = Cluster.generate(root, extra_raft=COMPACT)
    for nid in restored.ids:
        subprocess.run([*cli, "restore", str(backup), str(_data(restored, nid))], check=True)
        check = subprocess.run(
            [*cli, "verify", str(_data(restored, nid))], capture_output=True, check=False
        )
        assert check.returncode == 0, check.stdout
    with restored:
        leader = restored.wait_ready()
        restored.wait_converged()
        assert all(_queued(restored, nid) == len(saved_ids) for nid in restored.ids)
        for job_id in (saved_ids[0], saved_ids[-1]):
            status, body = http_json(restored.url(leader, f"/v1/jobs/{job_id}"))
            assert status == 200 and body["payload"] == {"i": job_id - saved_ids[0]}, body
        # The restored cluster takes new writes after the restored ids.
        (new_id,) = _enqueue(restored, leader, 1, 10_000)
        assert new_id > saved_ids[-1]


def test_cluster_up_reports_a_damaged_node_in_one_line(tmp_path: Path) -> None:
    cluster = Cluster.generate(tmp_path, n=1)
    data = _data(cluster, "n1")
    data.mkdir(parents=True)
    (data / "raft.dump").write_bytes(b"\x1f\x8b\x08\x00 an old pickle dump")
    run = subprocess.run(
        [sys.executable, "-m", "raftq", "cluster", "up", "--config", str(cluster.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    expected = (
        f"raftq: error: snapshot file {data / 'raft.dump'}: PySyncObj's pickle format "
        f"(written by an older raftq){REFUSAL_TAIL}"
    )
    assert expected in output, output
    assert "Traceback" not in output
