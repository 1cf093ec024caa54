"""A finished job's slot is reused while its ack is on its way (issue 7), against the real
3-node cluster of the worker tests.

The worker runs in-process on a ``Gate``: a real ``Client`` whose ``ack`` waits at a gate the
test opens before it sends the ack. While an ack is held there it is outstanding exactly as a
slow Raft commit would leave it (called, not answered; the job still leased to this delivery),
and what the worker does meanwhile is observed without any timing assumption.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from raftq.client import ClaimedJob, Client, LeaseExtended
from raftq.worker import Job, Worker
from tests.integration.cluster import Cluster
from tests.worker.conftest import nodes_of, until

_HOLD_S = 5.0  # a held ack gives up waiting for its gate after this (then the test fails)


class Gate:
    """A ``JobSource``: ``client`` itself, except that ``ack`` waits until ``open`` (or
    ``_HOLD_S``) before it is sent. ``events`` records, in order, ``("claim", n)`` when a
    claim returned n jobs, ``("ack", id)`` when the worker called ack, ``("acked", id)`` /
    ``("refused", id)`` when the cluster answered it."""

    def __init__(self, client: Client, claims: int | None = None) -> None:
        self.client = client
        self.claims_left = claims  # claims sent before ``claims_open`` is set (None: all)
        self.claims_open = asyncio.Event()
        self.events: list[tuple[str, int]] = []
        self.opened = asyncio.Event()
        self.held: list[int] = []  # job ids of acks waiting at the gate
        self.heartbeats = 0
        self.nack = client.nack
        self.get_job = client.get_job

    async def claim(self, queues: Any, **kw: Any) -> list[ClaimedJob]:
        if self.claims_left == 0:
            await self.claims_open.wait()
        elif self.claims_left is not None:
            self.claims_left -= 1
        jobs = await self.client.claim(queues, **kw)
        self.events.append(("claim", len(jobs)))
        return jobs

    async def heartbeat(
        self, job_id: int, token: int, *, lease_ms: int | None = None, **reports: Any
    ) -> LeaseExtended:
        self.heartbeats += 1
        return await self.client.heartbeat(job_id, token, lease_ms=lease_ms, **reports)

    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        self.events.append(("ack", job_id))
        self.held.append(job_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.opened.wait(), _HOLD_S)
        self.held.remove(job_id)
        try:
            await self.client.ack(job_id, token, result)
        except Exception:
            self.events.append(("refused", job_id))
            raise
        self.events.append(("acked", job_id))


@contextlib.asynccontextmanager
async def gated(cluster: Cluster, claims: int | None = None) -> AsyncIterator[tuple[Client, Gate]]:
    async with Client(nodes_of(cluster)) as client:
        yield client, Gate(client, claims)


async def test_a_finished_jobs_slot_runs_the_next_job_while_its_ack_is_outstanding(
    worker_cluster: Cluster,
) -> None:
    """concurrency=1, no prefetch: job 2 is claimed and run while job 1's ack is called and
    not answered (job 1 still leased); with two acks outstanding (2 x concurrency held) no
    third claim."""
    queue = "settle-reuse"
    async with gated(worker_cluster) as (client, gate):
        worker = Worker(client=gate, concurrency=1, prefetch=0, wait_ms=200, name="settler")
        ran: list[int] = []

        @worker.handler(queue)
        async def record(job: Job) -> int:
            ran.append(job.id)
            return job.id

        ids = [await client.enqueue(queue, n) for n in range(3)]
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: len(ran) == 2, 20, "job 2 to run")
            await until(lambda: worker.settling == 2, 20, "job 2 to finish")
            # Job 2 ran in the slot job 1 left, while job 1's ack was outstanding (job 2's
            # own ack waits for that one: acks leave in waves).
            assert ran == ids[:2] and gate.held == [ids[0]]
            assert gate.events == [("claim", 1), ("ack", ids[0]), ("claim", 1)]
            assert worker.running == 0
            for job_id in ids[:2]:  # leased to this delivery until the ack is answered
                info = await client.get_job(job_id, linearizable=True)
                assert (info["state"], info["worker"]) == ("leased", "settler")
            # Two acks outstanding = 2 x concurrency jobs held: no claim for job 3. The worker
            # has had the time of two linearizable reads to (wrongly) claim it.
            assert gate.events.count(("claim", 1)) == 2 and ran == ids[:2]
            assert (await client.get_job(ids[2], linearizable=True))["state"] == "queued"
            gate.opened.set()
            for job_id in ids:
                assert await client.job(job_id).wait(10_000) == job_id
            await until(lambda: worker.settling == 0, 10, "every ack answered")
        finally:
            worker.stop(now=True)
            await asyncio.wait_for(task, 20)
    assert ran == ids
    assert [e for e in gate.events if e[0] == "acked"] == [("acked", i) for i in ids]


async def test_with_prefetch_a_full_round_of_acks_may_be_outstanding(
    worker_cluster: Cluster,
) -> None:
    """concurrency=1, prefetch=1: jobs finish as fast as they are claimed, and the acks of a
    whole round (concurrency + prefetch = 2) may be outstanding while the next round is
    claimed; no more: with every ack held, the worker leases 2 * (1 + 1) = 4 jobs."""
    queue = "settle-prefetch"
    async with gated(worker_cluster) as (client, gate):
        worker = Worker(client=gate, concurrency=1, prefetch=1, batch=1, wait_ms=200)
        ran: list[int] = []
        worker.add_handler(queue, lambda job: ran.append(job.id))
        ids = [await client.enqueue(queue, n) for n in range(6)]
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: worker.settling == 4, 20, "four jobs finished, acks held")
            # The worker has had the time of two linearizable reads to (wrongly) claim more.
            for job_id in ids[4:]:
                assert (await client.get_job(job_id, linearizable=True))["state"] == "queued"
            assert ran == ids[:4] and worker.settling == 4 and worker.held == 0
            assert gate.events.count(("claim", 1)) == 4
            gate.opened.set()
            for job_id in ids:
                await client.job(job_id).wait(10_000)
        finally:
            worker.stop(now=True)
            await asyncio.wait_for(task, 20)
    assert ran == ids


@pytest.mark.parametrize("now", [False, True], ids=["stop", "stop-now"])
async def test_an_outstanding_ack_completes_before_run_returns(
    worker_cluster: Cluster, now: bool
) -> None:
    queue = f"settle-stop-{int(now)}"
    async with gated(worker_cluster) as (client, gate):
        worker = Worker(client=gate, concurrency=2, wait_ms=200, grace_ms=60_000)
        worker.add_handler(queue, lambda job: "done")
        job_id = await client.enqueue(queue, None)
        task = asyncio.create_task(worker.run())
        await until(lambda: gate.held == [job_id], 20, "the ack held at the gate")
        assert (worker.running, worker.settling) == (0, 1)
        worker.stop(now=now)
        # Time for the claim loop to end (its long poll is 200 ms) and for run() to (wrongly)
        # return without the ack; it is still waiting for it.
        await asyncio.sleep(0.5)
        assert (await client.get_job(job_id, linearizable=True))["state"] == "leased"
        assert not task.done()
        gate.opened.set()
        await asyncio.wait_for(task, 20)
        # run() returned only after the cluster answered the ack.
        assert gate.events[-1] == ("acked", job_id)
        assert (worker.running, worker.settling) == (0, 0)
        assert await client.job(job_id).wait(1_000) == "done"


async def test_a_refused_ack_is_reported_and_frees_its_place(
    worker_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The lease runs out while the ack is outstanding and another worker takes the job: the
    ack is refused (409), logged as before, the result dropped, and the worker goes on."""
    caplog.set_level(logging.INFO, logger="raftq.worker")
    queue = "settle-refused"
    # One claim only until the test opens the gate: else the worker itself could take the job
    # back once its lease ran out (as it should), before the other worker does.
    async with gated(worker_cluster, claims=1) as (client, gate):
        worker = Worker(client=gate, concurrency=1, wait_ms=200, lease_ms=300)
        worker.add_handler(queue, lambda job: "late")
        first = await client.enqueue(queue, None)
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: gate.held == [first], 20, "the ack held at the gate")
            # Without heartbeats (the handler is over) the 300 ms lease runs out: take the job.
            taken: list[ClaimedJob] = []
            while not taken:
                taken = await client.claim(queue, worker="thief", wait_ms=1_000)
            assert taken[0].id == first and taken[0].attempt == 2
            gate.opened.set()
            await until(lambda: ("refused", first) in gate.events, 10, "the refused ack")
            await until(lambda: worker.settling == 0, 10, "the refused ack settled")
            await until(lambda: "ack was refused" in caplog.text, 10, "the log line")
            lines = [r.getMessage() for r in caplog.records]
            (line,) = [x for x in lines if "ack was refused" in x]
            assert f"job {first} {queue}#1 " in line and ", 409)" in line
            # The worker goes on: its slot and its settling place are free again.
            gate.claims_open.set()
            second = await client.enqueue(queue, None)
            assert await client.job(second).wait(10_000) == "late"
            await client.ack(first, taken[0].token, "thief's")
            assert await client.job(first).wait(1_000) == "thief's"
        finally:
            worker.stop(now=True)
            await asyncio.wait_for(task, 20)


async def test_acks_of_jobs_finished_during_an_ack_round_trip_leave_together_after_it(
    worker_cluster: Cluster,
) -> None:
    """Acks leave in waves: while job 1's ack is in flight (held at the gate), the acks of jobs
    2 and 3, finished meanwhile, are not sent; once it is answered they leave together."""
    queue = "settle-waves"
    async with gated(worker_cluster) as (client, gate):
        worker = Worker(client=gate, concurrency=3, wait_ms=200)
        ran: list[int] = []

        @worker.handler(queue)
        async def record(job: Job) -> int:
            ran.append(job.id)
            return job.id

        first = await client.enqueue(queue, 1)
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: gate.held == [first], 20, "the first ack held at the gate")
            later = [await client.enqueue(queue, n) for n in (2, 3)]
            await until(lambda: len(ran) == 3, 20, "jobs 2 and 3 to run")
            assert worker.settling == 3
            # Their acks wait for the wave in flight (up to a heartbeat period, 10 s here).
            await asyncio.sleep(0.3)
            assert gate.held == [first] and ("ack", later[0]) not in gate.events
            gate.opened.set()
            for job_id in [first, *later]:
                assert await client.job(job_id).wait(10_000) == job_id
        finally:
            worker.stop(now=True)
            await asyncio.wait_for(task, 20)
    acks = [e for e in gate.events if e[0] in ("ack", "acked")]
    assert acks[:2] == [("ack", first), ("acked", first)]
    assert sorted(acks[2:4]) == [("ack", later[0]), ("ack", later[1])]


async def test_heartbeats_keep_a_long_jobs_lease(worker_cluster: Cluster) -> None:
    """The heartbeat task starts when the first beat is due: a job running 3 leases long keeps
    its lease (another worker cannot take it) and succeeds on its first attempt."""
    queue = "settle-beats"
    async with gated(worker_cluster) as (client, gate):
        gate.opened.set()
        worker = Worker(client=gate, concurrency=1, wait_ms=200, lease_ms=900)
        started = asyncio.Event()

        @worker.handler(queue)
        async def slow(job: Job) -> int:
            started.set()
            await asyncio.sleep(2.7)
            return job.attempt

        handle = await client.enqueue_job(queue, None)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(started.wait(), 20)
            assert await client.claim(queue, worker="thief", wait_ms=1_800) == []
            assert await handle.wait(10_000) == 1
        finally:
            worker.stop(now=True)
            await asyncio.wait_for(task, 20)
    assert gate.heartbeats >= 2
