"""Workers as real `raftq worker` processes against a real 3-node cluster (issue 5 §4).

Handlers are in ``tests/worker/handlers.py``; each job names a side file that the handlers
append ``start``/``end``/``done`` lines to, so completions are counted across processes
independently of what the cluster says.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from raftq.client import Client
from raftq.errors import JobDead
from tests.integration.cluster import Cluster
from tests.worker.conftest import Procs, nodes_of, until, wait_until
from tests.worker.handlers import read_side

TARGET = "tests.worker.handlers:worker"


def _fail_times(n: int) -> int:
    return 1 if n % 10 == 3 else 2 if n % 10 == 7 else 0


def test_thousand_jobs_with_transient_failures_all_succeed_exactly_once(
    worker_cluster: Cluster, procs: Procs, tmp_path: Path
) -> None:
    cluster, side = worker_cluster, str(tmp_path / "side")
    for name in ("w1", "w2"):
        procs.worker(name, cluster, TARGET, "-q", "flaky", "-c", "8", "--retry-in-ms", "30")
    total = 1000

    async def produce_and_collect() -> tuple[list[int], list[dict]]:
        async with Client(nodes_of(cluster)) as client:
            ids: list[int] = []
            for start in range(0, total, 250):
                batch = [
                    {
                        "payload": {
                            "n": n,
                            "fail_times": _fail_times(n),
                            "mode": "retry" if n % 10 == 7 else "error",
                            "side": side,
                        },
                        "max_attempts": 5,
                    }
                    for n in range(start, start + 250)
                ]
                ids += await client.enqueue_many("flaky", batch)
            deadline = time.monotonic() + 90
            while (await client.queue("flaky"))["depth"]["succeeded"] < total:
                assert time.monotonic() < deadline, await client.queue("flaky")
                await asyncio.sleep(0.2)
            sem = asyncio.Semaphore(32)

            async def get(job_id: int) -> dict:
                async with sem:
                    return await client.get_job(job_id, linearizable=True)

            return ids, list(await asyncio.gather(*(get(i) for i in ids)))

    ids, jobs = asyncio.run(produce_and_collect())
    assert len(set(ids)) == total
    for n, job in enumerate(jobs):
        assert job["state"] == "succeeded", job
        assert job["result"]["n"] == n
        assert job["attempts"] == _fail_times(n) + 1 == job["result"]["attempt"]
        assert job["result"]["token"] == job["token"]
    # Each job's handler completed exactly once, with the token of the delivery that was acked.
    done = [(job_id, token) for event, job_id, _, token, _ in read_side(side) if event == "done"]
    assert Counter(job_id for job_id, _ in done) == Counter(ids)
    assert dict(done) == {job["id"]: job["token"] for job in jobs}
    # Both workers pulled work, and each outcome is one log line.
    assert set(Counter(job["result"]["worker"] for job in jobs)) == {"w1", "w2"}

    def outcome_lines() -> Counter[str]:
        logs = procs.log("w1") + procs.log("w2")
        kinds = ("succeeded in", "failed after", "asked to retry")
        return Counter(k for line in logs.splitlines() for k in kinds if k in line)

    wait_until(lambda: outcome_lines()["succeeded in"] == total, 10, "1000 success lines")
    assert outcome_lines() == {"succeeded in": total, "failed after": 100, "asked to retry": 200}


async def test_always_failing_job_is_dead_lettered_with_its_last_error_then_requeued(
    worker_cluster: Cluster, procs: Procs, tmp_path: Path
) -> None:
    cluster, side, fixed = worker_cluster, str(tmp_path / "side"), tmp_path / "fixed"
    procs.worker("w", cluster, TARGET, "-q", "doomed", "--retry-in-ms", "50")
    async with Client(nodes_of(cluster)) as client:
        handle = await client.enqueue_job(
            "doomed", {"fixed_if": str(fixed), "side": side}, max_attempts=3
        )
        with pytest.raises(JobDead) as dead:
            await handle.wait(30_000)
        error = dead.value.error or ""
        assert error.startswith("ValueError: boom on attempt 3\n"), error
        assert "Traceback" in error and "in doomed" in error and "handlers.py" in error
        assert "raftq/worker" not in error  # the thread pool's frames are trimmed
        assert dead.value.job["attempts"] == 3
        letters = await client.dead("doomed")
        assert [(j["id"], j["error"]) for j in letters] == [(handle.id, error)]

        fixed.write_text("deployed the fix")
        assert await client.requeue_dead("doomed", [handle.id]) == 1
        assert await handle.wait(30_000) == "fixed"
        info = await handle.status(linearizable=True)
        assert info["attempts"] == 1  # requeue reset the attempts
        assert await client.dead("doomed") == []
    assert [e[:3] for e in read_side(side)] == [("done", handle.id, 1)]


async def test_kill_9_mid_job_redelivers_after_the_lease_and_completes_once(
    worker_cluster: Cluster, procs: Procs, tmp_path: Path
) -> None:
    cluster, side = worker_cluster, str(tmp_path / "side")
    procs.worker("A", cluster, TARGET, "-q", "slow-kill", "-c", "1", "--lease-ms", "1500")
    async with Client(nodes_of(cluster)) as client:
        handle = await client.enqueue_job("slow-kill", {"side": side, "sleep_ms": [60_000]})
        await until(lambda: read_side(side), 20, "worker A to start the job")
        procs.signal("A", signal.SIGKILL)
        procs.wait("A")
        info = await client.get_job(handle.id, linearizable=True)
        assert (info["state"], info["worker"]) == ("leased", "A")  # A's until its lease ends
        procs.worker("B", cluster, TARGET, "-q", "slow-kill", "--lease-ms", "1500")
        result = await handle.wait(20_000)
    assert (result["worker"], result["attempt"]) == ("B", 2)
    events = [(e, attempt, name) for e, _, attempt, _, name in read_side(side)]
    assert events == [("start", 1, "A"), ("start", 2, "B"), ("end", 2, "B")]


async def test_sigstopped_worker_past_its_lease_cannot_ack_late(
    worker_cluster: Cluster, procs: Procs, tmp_path: Path
) -> None:
    cluster, side = worker_cluster, str(tmp_path / "side")
    procs.worker("A", cluster, TARGET, "-q", "slow-stop", "-c", "1", "--lease-ms", "1000")
    async with Client(nodes_of(cluster)) as client:
        handle = await client.enqueue_job("slow-stop", {"side": side, "sleep_ms": [1_000]})
        await until(lambda: read_side(side), 20, "worker A to start the job")
        procs.signal("A", signal.SIGSTOP)  # frozen mid-job; its lease runs out
        try:
            procs.worker("B", cluster, TARGET, "-q", "slow-stop", "--lease-ms", "1000")
            result = await handle.wait(20_000)
            assert (result["worker"], result["attempt"]) == ("B", 2)
        finally:
            procs.signal("A", signal.SIGCONT)
        # A wakes up, its handler finishes, and its ack is refused by the fencing token.
        await until(lambda: "ack was refused" in procs.log("A"), 15, "A's late ack")
        (line,) = [x for x in procs.log("A").splitlines() if "ack was refused" in x]
        assert f"job {handle.id} slow-stop#1 " in line and ", 409)" in line
        info = await client.get_job(handle.id, linearizable=True)
    assert (info["state"], info["result"]) == ("succeeded", result)
    assert ("end", handle.id, 1, "A") in [(e, i, a, n) for e, i, a, _, n in read_side(side)]
    procs.signal("A", signal.SIGTERM)
    assert procs.wait("A", 15) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stop_signal_lets_jobs_finish_or_nacks_them_and_leaves_none_leased(
    worker_cluster: Cluster, procs: Procs, tmp_path: Path, sig: signal.Signals
) -> None:
    cluster, side, queue = worker_cluster, str(tmp_path / "side"), "slow-term"
    grace_ms = 1_500
    procs.worker(
        "A",
        cluster,
        TARGET,
        "-q",
        queue,
        "-c",
        "4",
        "--grace-ms",
        str(grace_ms),
        "--lease-ms",
        "10000",
    )
    async with Client(nodes_of(cluster)) as client:
        short = [await client.enqueue(queue, {"side": side, "sleep_ms": [600]}) for _ in "ab"]
        long = [await client.enqueue(queue, {"side": side, "sleep_ms": [60_000]}) for _ in "ab"]
        await until(lambda: len(read_side(side)) == 4, 20, "4 jobs to start")
        signalled = time.monotonic()
        procs.signal("A", sig)
        assert await asyncio.to_thread(procs.wait, "A", 20) == 0
        assert time.monotonic() - signalled < grace_ms / 1000 + 5
        for job_id in short:
            assert (await client.get_job(job_id, linearizable=True))["state"] == "succeeded"
        for job_id in long:
            info = await client.get_job(job_id, linearizable=True)
            assert (info["state"], info["attempts"]) == ("queued", 1), info
            assert info["error"].startswith("WorkerStopped")
        assert (await client.queue(queue))["depth"]["leased"] == 0
        log = procs.log("A")
        assert log.count("succeeded in") == 2
        assert log.count("interrupted by shutdown") == 2
        # Nacked with retry_in_ms=0: redelivered at once to the next worker.
        procs.worker("B", cluster, TARGET, "-q", queue)
        for job_id in long:
            result = await client.job(job_id).wait(10_000)
            assert (result["worker"], result["attempt"]) == ("B", 2)


async def test_a_stuck_sync_handler_does_not_keep_the_worker_from_exiting(
    worker_cluster: Cluster, procs: Procs, tmp_path: Path
) -> None:
    cluster, side = worker_cluster, str(tmp_path / "side")
    procs.worker("A", cluster, TARGET, "-q", "blocking", "--grace-ms", "300")
    async with Client(nodes_of(cluster)) as client:
        job_id = await client.enqueue("blocking", {"side": side, "sleep_ms": 120_000})
        await until(lambda: read_side(side), 20, "the handler to start")
        procs.signal("A", signal.SIGTERM)
        assert await asyncio.to_thread(procs.wait, "A", 15) == 0  # not after 120 s
        info = await client.get_job(job_id, linearizable=True)
    assert (info["state"], info["error"][:13]) == ("queued", "WorkerStopped")
