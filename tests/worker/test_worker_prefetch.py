"""``Worker(prefetch=...)``: jobs claimed ahead of free slots, held (leases kept) until a slot
frees; several claims in flight only while the queue has a backlog (issue 7). Against the real
3-node cluster of the worker tests, through a ``Counting`` source: a real ``Client`` that
records how many claims are in flight at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from raftq.client import ClaimedJob, Client, LeaseExtended
from raftq.errors import ConfigError
from raftq.worker import Job, Worker
from tests.integration.cluster import Cluster
from tests.worker.conftest import nodes_of, until


class Counting:
    """``client``, with the number of claims in flight (now and at most) and their sizes."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.inflight = 0
        self.most = 0
        self.asked: list[int] = []
        self.heartbeats: list[int] = []
        self.ack = client.ack
        self.nack = client.nack
        self.release = client.release
        self.get_job = client.get_job

    async def claim(self, queues: Any, **kw: Any) -> list[ClaimedJob]:
        self.inflight += 1
        self.most = max(self.most, self.inflight)
        self.asked.append(kw["max"])
        try:
            return await self.client.claim(queues, **kw)
        finally:
            self.inflight -= 1

    async def heartbeat(
        self, job_id: int, token: int, *, lease_ms: int | None = None, **reports: Any
    ) -> LeaseExtended:
        self.heartbeats.append(job_id)
        return await self.client.heartbeat(job_id, token, lease_ms=lease_ms, **reports)


def test_prefetch_is_validated() -> None:
    with pytest.raises(ConfigError, match=r'prefetch must be "auto" or an integer in 0\.\.10000'):
        Worker(["127.0.0.1:1"], prefetch=-1)


async def test_held_jobs_start_in_claim_order_within_the_concurrency(
    worker_cluster: Cluster,
) -> None:
    """concurrency 2, prefetch 3, batch 1: with a backlog up to 5 jobs are leased to the
    worker and several claims fly at once, but never more than 2 handlers run; every job
    runs exactly once, in the order the claims brought them."""
    queue = "prefetch-order"
    async with Client(nodes_of(worker_cluster)) as client:
        source = Counting(client)
        worker = Worker(client=source, concurrency=2, prefetch=3, batch=1, wait_ms=200)
        running = 0
        most_running = 0
        most_leased = 0
        ran: list[int] = []
        gate = asyncio.Event()

        @worker.handler(queue)
        async def slow(job: Job) -> None:
            nonlocal running, most_running, most_leased
            running += 1
            most_running = max(most_running, running)
            most_leased = max(most_leased, worker.running + worker.held)
            ran.append(job.id)
            await gate.wait()
            running -= 1

        ids = [await client.enqueue(queue, n) for n in range(12)]
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: worker.held == 3 and worker.running == 2, 20, "5 jobs leased")
            held_ids = sorted(ids[2:5])
            for job_id in held_ids:  # leased to the worker, not started
                info = await client.get_job(job_id, linearizable=True)
                assert info["state"] == "leased" and job_id not in ran
            assert (await client.get_job(ids[5], linearizable=True))["state"] == "queued"
            gate.set()
            for job_id in ids:
                await client.job(job_id).wait(20_000)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 20)
    assert ran == ids  # one queue, one priority: claim order is enqueue order
    assert most_running == 2
    assert most_leased <= 5
    assert source.most > 1  # claims were pipelined while the backlog lasted
    assert all(n == 1 for n in source.asked)


async def test_an_idle_worker_keeps_one_claim_in_flight(worker_cluster: Cluster) -> None:
    """No backlog: whatever the prefetch, one long-poll at a time."""
    queue = "prefetch-idle"
    async with Client(nodes_of(worker_cluster)) as client:
        source = Counting(client)
        worker = Worker(client=source, concurrency=4, prefetch=20, batch=2, wait_ms=100)
        done: list[int] = []
        worker.add_handler(queue, lambda job: done.append(job.id))
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: len(source.asked) >= 5, 20, "five long-polls")
            job_id = await client.enqueue(queue, None)
            await client.job(job_id).wait(20_000)
            await until(lambda: len(source.asked) >= 10, 20, "five more long-polls")
        finally:
            worker.stop()
            await asyncio.wait_for(task, 20)
    assert done == [job_id]
    assert source.most == 1


async def test_a_held_job_keeps_its_lease_until_it_runs(worker_cluster: Cluster) -> None:
    """concurrency 1, prefetch 1, lease 600 ms: the held job waits 1.5 s (> its lease) behind
    a running one and is heartbeated meanwhile, so it runs here, once, and is not redelivered."""
    queue = "prefetch-lease"
    async with Client(nodes_of(worker_cluster)) as client:
        source = Counting(client)
        worker = Worker(client=source, concurrency=1, prefetch=1, lease_ms=600, wait_ms=200)
        ran: list[tuple[int, int]] = []

        @worker.handler(queue)
        async def slow(job: Job) -> None:
            ran.append((job.id, job.attempt))
            await asyncio.sleep(1.5)

        first = await client.enqueue(queue, 1)
        second = await client.enqueue(queue, 2)
        task = asyncio.create_task(worker.run())
        try:
            for job_id in (first, second):
                await client.job(job_id).wait(20_000)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 20)
    assert ran == [(first, 1), (second, 1)]
    assert second in source.heartbeats  # while it was held, and while it ran


async def test_stop_hands_held_jobs_back_at_once(worker_cluster: Cluster) -> None:
    """On stop, held jobs are handed back without being started: queued again at once, and
    the claim not counted as an attempt; the running job gets its grace and is acked.

    The jobs have one attempt each: before ``Release``, the hand-back was a nack, which
    counted the claim, and the held jobs went to the dead letters without ever running."""
    queue = "prefetch-stop"
    async with Client(nodes_of(worker_cluster)) as client:
        worker = Worker(
            client=Counting(client), concurrency=1, prefetch=2, wait_ms=200, grace_ms=20_000
        )
        started = asyncio.Event()
        release = asyncio.Event()
        ran: list[int] = []

        @worker.handler(queue)
        async def slow(job: Job) -> None:
            ran.append(job.id)
            started.set()
            await release.wait()

        ids = [await client.enqueue(queue, n, max_attempts=1) for n in range(3)]
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(started.wait(), 20)
            await until(lambda: worker.held == 2, 20, "two jobs held")
            worker.stop()
            for job_id in ids[1:]:  # back in the queue while job 1 still runs
                await until_state(client, job_id, "queued")
            assert not task.done() and ran == ids[:1]
            release.set()
            await asyncio.wait_for(task, 20)
        finally:
            release.set()
            worker.stop(now=True)
            await asyncio.wait_for(task, 20)
        assert (await client.get_job(ids[0], linearizable=True))["state"] == "succeeded"
        for job_id in ids[1:]:
            info = await client.get_job(job_id, linearizable=True)
            assert (info["state"], info["attempts"]) == ("queued", 0), info
    assert ran == ids[:1]


async def until_state(client: Client, job_id: int, state: str) -> None:
    for _ in range(200):
        if (await client.get_job(job_id, linearizable=True))["state"] == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never became {state}")
