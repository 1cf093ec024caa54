"""Job handles: wait returns the result, or raises the recorded outcome; polling backs off."""

from __future__ import annotations

import asyncio
import threading

import pytest

from raftq.client import Client, JobHandle, SyncClient
from raftq.core import EnableVersion
from raftq.errors import JobCancelled, JobDead, JobFailed, Rejected, WaitTimeout
from tests.support.memory_cluster import ON_BOTH, until


@ON_BOTH
async def test_wait_returns_the_result_once_acked(start):
    async with start() as c, Client(c.csv()) as client:
        handle = await client.enqueue_job("q", {"n": 1}, priority=3)
        assert isinstance(handle, JobHandle)
        assert client.job(handle.id).id == handle.id

        async def work() -> None:
            await asyncio.sleep(0.2)
            (job,) = await client.claim("q", worker="w")
            await client.ack(job.id, job.token, result={"double": 2})

        worker = asyncio.create_task(work())
        assert await handle.wait(5_000) == {"double": 2}
        await worker
        assert (await handle.status())["state"] == "succeeded"


@ON_BOTH
async def test_wait_raises_the_dead_letter_error_or_cancellation(start):
    async with start() as c, Client(c.csv()) as client:
        doomed = await client.enqueue_job("q", None, max_attempts=1)
        (job,) = await client.claim("q", worker="w")
        await client.nack(job.id, job.token, error="Boom: it broke\nTraceback ...")
        with pytest.raises(JobDead) as dead:
            await doomed.wait(1_000)
        assert isinstance(dead.value, JobFailed)
        assert dead.value.error == "Boom: it broke\nTraceback ..."
        assert (dead.value.job_id, dead.value.state) == (doomed.id, "dead")
        assert str(dead.value) == f"job {doomed.id} is dead: Boom: it broke"

        cancelled = await client.enqueue_job("q", None)
        await cancelled.cancel()
        with pytest.raises(JobCancelled):
            await cancelled.wait(1_000)


@ON_BOTH
async def test_wait_times_out_with_the_last_state_and_polls_with_backoff(start):
    async with start() as c, Client(c.csv()) as client:
        handle = await client.enqueue_job("q", None, delay_ms=60_000)
        seen_before = len(c.faults["n1"].seen)
        with pytest.raises(WaitTimeout) as timeout:
            await handle.wait(1_000)
        assert isinstance(timeout.value, TimeoutError)
        assert timeout.value.job is not None and timeout.value.job["state"] == "delayed"
        polls = [p for m, p, _ in c.faults["n1"].seen[seen_before:] if m == "GET"]
        # 50 ms growing x1.5: about 8 polls in a second, far fewer than at a fixed 50 ms.
        assert 5 <= len(polls) <= 12


@ON_BOTH
async def test_wait_on_an_unknown_job_is_not_found(start):
    async with start() as c, Client(c.csv()) as client:
        with pytest.raises(Rejected) as nf:
            await client.job(424242).wait(1_000)
        assert nf.value.status == 404


@ON_BOTH
async def test_sync_handle(start):
    async with start() as c:
        address = c.csv()

        def produce_and_wait() -> object:
            with SyncClient(address) as client:
                handle = client.enqueue_job("q", "x")
                (job,) = client.claim("q", worker="w")
                client.ack(job.id, job.token, result="done")
                return handle.wait(5_000), handle.status()["state"]

        result: list[object] = []
        thread = threading.Thread(target=lambda: result.append(produce_and_wait()))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        assert result == [("done", "succeeded")]


async def test_progress_yields_each_new_report_until_the_job_finishes(start):
    async with start() as c, Client(c.csv()) as client:
        await c.leader.submit(EnableVersion(now_ms=c.leader.now_ms(), version=3))
        handle = await client.enqueue_job("q", "x")
        (job,) = await client.claim("q", worker="w")
        seen: list[object] = []

        async def watch() -> None:
            async for p in handle.progress(interval_ms=10):
                seen.append(p)

        watcher = asyncio.create_task(watch())
        for p in (1, 1, 2):  # a repeated value is yielded once
            beat = await client.heartbeat(job.id, job.token, progress=p, checkpoint={"at": p})
            assert not beat.cancel_requested
            await until(lambda p=p: seen[-1:] == [p], 5.0)
        await client.ack(job.id, job.token)
        await asyncio.wait_for(watcher, 5.0)  # ends once the job is finished
        assert seen == [1, 2]


async def test_sync_progress_and_heartbeat(start):
    async with start() as c:
        await c.leader.submit(EnableVersion(now_ms=c.leader.now_ms(), version=3))
        address = c.csv()

        def run() -> tuple[list[object], bool]:
            with SyncClient(address) as client:
                handle = client.enqueue_job("q", "x")
                (job,) = client.claim("q", worker="w")
                client.heartbeat(job.id, job.token, progress="half")
                client.cancel(job.id)
                beat = client.heartbeat(job.id, job.token)
                return list(handle.progress(interval_ms=10)), beat.cancel_requested

        result: list[object] = []
        thread = threading.Thread(target=lambda: result.append(run()))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        assert result == [(["half"], True)]
