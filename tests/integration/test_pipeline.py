"""examples/pipeline.py on a real 3-node cluster, with the leader killed -9 halfway through
the fan-out: the pipeline still completes exactly once. The fan-in callback is enqueued once
(one job ever in its queue, one succeeded), its claim saw every square, and the sum is right.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from raftq.client import SyncClient
from tests.integration.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
N = 24


def test_pipeline_completes_once_across_a_leader_kill(cluster: Cluster) -> None:
    nodes = ",".join(cluster.api[nid] for nid in cluster.ids)
    proc = subprocess.Popen(
        [sys.executable, "examples/pipeline.py", "--nodes", nodes, "--n", str(N)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, object]] = []
    killed = None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(json.loads(raw))
            squares = sum(1 for x in lines if x.get("queue") == "pipeline.square")
            if killed is None and squares >= N // 3:
                killed = cluster.leader()
                cluster.kill(killed, signal.SIGKILL)
        assert proc.wait(60) == 0, lines[-3:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert killed is not None, "the pipeline ended before the leader could be killed"
    summary = lines[-1]
    assert summary["sum"] == sum(i * i for i in range(N)) and summary["results"] == N
    callbacks = {x["id"] for x in lines if x.get("queue") == "pipeline.sum"}
    assert callbacks == {summary["callback"]}
    survivors = ",".join(cluster.api[nid] for nid in cluster.ids if nid != killed)
    with SyncClient(survivors) as client:
        deadline = time.monotonic() + 15
        while True:  # the ack the pipeline saw is committed; this node may apply it later
            fan_in = client.queue("pipeline.sum")
            if fan_in["depth"]["succeeded"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert fan_in["totals"]["enqueued"] == 1 and fan_in["depth"]["succeeded"] == 1
        batch = client.batch(int(str(summary["batch"])))
        assert batch["counts"]["succeeded"] == N and batch["done"]
        assert batch["fired"] == ["on_complete", "on_success"]


def test_a_single_enqueue_waits_for_the_jobs_it_depends_on(cluster: Cluster) -> None:
    """``SyncClient.enqueue(depends_on=...)`` / ``enqueue_job``: the dependant waits until
    its parent succeeded, and is claimed with the parent's result; with
    ``on_dependency_failure="run"`` it runs after its parent died too."""
    with SyncClient(cluster.api[cluster.leader()]) as client:
        parent = client.enqueue("deps", "p", max_attempts=1)
        child = client.enqueue_job("deps", "c", depends_on=[parent])
        anyway = client.enqueue("deps", "r", depends_on=[parent], on_dependency_failure="run")
        assert client.get_job(child.id)["state"] == "waiting"
        (claimed,) = client.claim("deps", worker="w", max=10)
        assert claimed.id == parent
        client.ack(parent, claimed.token, "parent's result")
        got = {j.id: j for j in client.claim("deps", worker="w", max=10, wait_ms=5_000)}
        assert set(got) == {child.id, anyway}
        assert got[child.id].parents == {parent: "parent's result"}
        for j in got.values():
            client.ack(j.id, j.token)
        assert child.wait(5_000) is None

        dying = client.enqueue("deps", "d", max_attempts=1)
        cancelled = client.enqueue("deps", "x", depends_on=[dying])
        runs = client.enqueue("deps", "y", depends_on=[dying], on_dependency_failure="run")
        (claimed,) = client.claim("deps", worker="w", max=10)
        client.nack(dying, claimed.token, error="boom")
        (released,) = client.claim("deps", worker="w", max=10, wait_ms=5_000)
        assert released.id == runs and released.parent_states == {dying: "dead"}
        assert client.get_job(cancelled)["state"] == "cancelled"
