"""The examples, run as their README lines say: `raftq worker examples.worker:send_email`,
`python examples/worker.py`, `python examples/producer.py`, against a real cluster.
(`examples/embedded_service.py` is run by tests/integration/test_embedding.py.)"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

from raftq.client import Client
from tests.integration.cluster import Cluster
from tests.worker.conftest import REPO, Procs, nodes_of


def produce(cluster: Cluster, *addresses: str) -> tuple[int, list[dict[str, Any]], str]:
    argv = [sys.executable, "examples/producer.py", "--nodes", nodes_of(cluster)]
    done = subprocess.run(
        [*argv, "--reminder-delay-ms", "300", *addresses],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_cli_worker_and_producer_examples(worker_cluster: Cluster, procs: Procs) -> None:
    cluster = worker_cluster
    procs.worker(
        "cli", cluster, "examples.worker:send_email", "--queue", "emails", "--retry-in-ms", "50"
    )
    code, lines, err = produce(cluster, "ada@example.com", "grace@example.com")
    assert code == 0, err
    assert [(x["to"], x["kind"]) for x in lines] == [
        ("ada@example.com", "welcome"),
        ("ada@example.com", "reminder"),
        ("grace@example.com", "welcome"),
        ("grace@example.com", "reminder"),
    ]
    for x in lines:
        assert x["result"]["to"] == x["to"]
        assert x["result"]["message_id"].startswith(f"{x['kind']}-{x['id']}-")

    # Idempotency keys: producing again returns the same jobs, nothing is sent twice.
    code, again, err = produce(cluster, "ada@example.com", "grace@example.com")
    assert (code, again) == (0, lines), err
    assert procs.log("cli").count("succeeded in") == 4

    async def inspect() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Client(nodes_of(cluster)) as client:
            reminder = await client.get_job(lines[1]["id"], linearizable=True)
            busy = await client.enqueue_job("emails", {"to": "x@y.z", "mailbox_busy": True})
            await busy.wait(10_000)
            return reminder, await busy.status(linearizable=True)

    reminder, busy = asyncio.run(inspect())
    assert reminder["run_at_ms"] - reminder["created_ms"] >= 300  # delay_ms
    assert busy["attempts"] == 2  # the example's Retry(delay_ms=200), then success

    # A bad address fails every attempt: the producer reports the recorded error.
    code, failed, _ = produce(cluster, "not-an-address")
    assert code == 1
    assert failed[0]["error"].startswith("ValueError: not an email address: 'not-an-address'")

    procs.signal("cli", signal.SIGTERM)
    assert procs.wait("cli", 15) == 0


def test_script_worker_example(worker_cluster: Cluster, procs: Procs) -> None:
    cluster = worker_cluster
    script = [sys.executable, "examples/worker.py", "--nodes", nodes_of(cluster)]
    procs.start("script", script)
    code, lines, err = produce(cluster, "linus@example.com")
    assert code == 0, err
    assert {x["result"]["to"] for x in lines} == {"linus@example.com"}
    assert "sending the welcome email to linus@example.com" in procs.log("script")
    # The reminder logs as one (issue 20: it logged "welcome email" too).
    assert "sending the reminder email to linus@example.com" in procs.log("script")
    procs.signal("script", signal.SIGINT)
    assert procs.wait("script", 15) == 0


def run_example(cluster: Cluster, script: str, *args: str) -> list[Any]:
    """``python examples/SCRIPT --nodes ... ARGS``; it must exit 0; its JSON lines."""
    argv = [sys.executable, f"examples/{script}", "--nodes", nodes_of(cluster), *args]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_schedules_example(worker_cluster: Cluster) -> None:
    lines = run_example(worker_cluster, "schedules.py", "--every-ms", "200", "--fires", "3")
    nightly, job, *listed = lines
    assert nightly["nightly_next_fire_ms"] > 0
    assert (job["queue"], job["schedule"]) == ("heartbeats", "heartbeat")
    assert job["fire_ms"] % 200 == 0
    shown = {s["name"]: s for s in listed}
    assert shown["heartbeat"]["paused"] is True and shown["heartbeat"]["fires"] >= 3
    assert shown["heartbeat"]["next_fire_ms"] is None
    assert shown["nightly-report"]["next_fire_ms"] == nightly["nightly_next_fire_ms"]


def test_long_job_example(worker_cluster: Cluster) -> None:
    lines = run_example(worker_cluster, "long_job.py", "--pages", "5", "--fail-at", "3")
    *progress, last = lines
    # The second attempt resumed from the checkpoint the first one saved before failing.
    assert last == {"result": {"pages": 5, "resumed_at": 3, "attempt": 2}}
    # What the heartbeats carried (every 300 ms; a report made after the last one before the
    # ack is not sent: the result tells the end).
    assert progress and all(p["progress"]["of"] == 5 for p in progress)
    assert {p["progress"]["done"] for p in progress} <= {1, 2, 3, 4, 5}
