"""Queue limits on a real 3-node cluster: four workers, and never more leased than the caps.

Each check twice: sampled while the workers run (the queue's ``leased`` count, on the leader),
and from the history afterwards in cluster time: a job was leased from its claim
(``lease_expires_ms - lease_ms``) until its ack (``finished_ms``), so the caps must hold at
every instant of the merged intervals, and the claim times must fit the rate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftq.client import SyncClient
from tests.integration.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
LEASE_MS = 20_000
HOLD_S = 0.05
CLAIMED: dict[int, int] = {}  # job id -> its claim's cluster time


@pytest.fixture(scope="module")
def api(shared_cluster: Cluster) -> Iterator[list[str]]:
    leader = shared_cluster.leader()
    yield [shared_cluster.api[leader], *(shared_cluster.api[f] for f in shared_cluster.followers())]


def _work(nodes: list[str], queue: str, n_jobs: int, workers: int = 4) -> list[float]:
    """Run ``workers`` threads that claim one job at a time, hold it, ack it, until
    ``n_jobs`` are done; sample the queue's leased count meanwhile (the samples)."""
    done = threading.Event()
    acked: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            with SyncClient(nodes) as c:
                while not done.is_set():
                    jobs = c.claim(queue, worker=name, lease_ms=LEASE_MS, wait_ms=200)
                    for job in jobs:
                        CLAIMED[job.id] = job.lease_expires_ms - LEASE_MS
                        time.sleep(HOLD_S)
                        c.ack(job.id, job.token)
                        with lock:
                            acked.append(job.id)
                            if len(acked) >= n_jobs:
                                done.set()
        except BaseException as e:  # surfaced by the test
            errors.append(e)
            done.set()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(workers)]
    for t in threads:
        t.start()
    samples: list[float] = []
    with SyncClient(nodes[:1]) as c:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            samples.append(c.queue(queue)["depth"]["leased"])
            time.sleep(0.01)
    done.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(acked) >= n_jobs
    return samples


def _spans(c: SyncClient, ids: list[int]) -> list[tuple[int, int, str | None]]:
    """``(claimed_ms, finished_ms, group)`` of each job in cluster time: the claim answer's
    ``lease_expires_ms - LEASE_MS`` (each job here is claimed once) and the ack's
    ``finished_ms``."""
    out = []
    for i in ids:
        job = c.get_job(i)
        assert job["state"] == "succeeded" and job["attempts"] == 1, job
        out.append((CLAIMED[i], job["finished_ms"], job["group"]))
    return out


def _most_at_once(intervals: list[tuple[int, int]]) -> int:
    """The most intervals ``[start, end)`` that hold at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in events:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


def test_concurrency_and_group_caps_hold_with_four_workers(api: list[str]) -> None:
    with SyncClient(api) as c:
        c.set_limits("lim.cg", concurrency=2, group_concurrency=1)
        groups = ["a", "a", "a", "a", "b", "b", "b", "b", "c", "c"]
        ids = [c.enqueue("lim.cg", i, group=g) for i, g in enumerate(groups)]
        samples = _work(api, "lim.cg", len(ids))
        assert samples and max(samples) <= 2
        assert max(samples) == 2  # four workers keep both slots busy
        spans = _spans(c, ids)
        assert _most_at_once([(s, e) for s, e, _ in spans]) <= 2
        for g in "abc":
            assert _most_at_once([(s, e) for s, e, grp in spans if grp == g]) <= 1


def test_a_rate_limit_holds_in_every_window(api: list[str]) -> None:
    with SyncClient(api) as c:
        c.set_limits("lim.rate", rate=(3, 500))
        ids = [c.enqueue("lim.rate", i) for i in range(9)]
        _work(api, "lim.rate", len(ids))
        starts = sorted(s for s, _, _ in _spans(c, ids))
        # Any 4 consecutive claims span at least 500 ms: no window of 500 ms holds 4.
        assert all(starts[i + 3] - starts[i] >= 500 for i in range(len(starts) - 3)), starts
        limits = c.limits("lim.rate")
        assert limits["rate"] == {"limit": 3, "period_ms": 500}


def test_the_guide_example_serves_tenants_fairly(shared_cluster: Cluster) -> None:
    nodes = ",".join(shared_cluster.api[n] for n in shared_cluster.ids)
    done = subprocess.run(
        [sys.executable, "examples/limits.py", "--nodes", nodes],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["most_leased"] == 2
    # Round-robin over the tenants with jobs: the small ones are not behind big's backlog.
    assert out["served"][:3] == ["big", "small-1", "small-2"]
    assert sorted(out["served"]) == ["big"] * 6 + ["small-1", "small-2"]
