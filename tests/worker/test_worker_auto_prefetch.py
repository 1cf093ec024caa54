"""``Worker(prefetch="auto")``, the default: the worker leases ahead what its slots finish in
about ``AUTO_HOLD_MS`` at the handlers' average run time, at most ``concurrency``; nothing
before a first job has run, nothing for long jobs. In-process, over a ``LocalNode``."""

from __future__ import annotations

import asyncio

import pytest

from raftq.core import Claim
from raftq.errors import ConfigError
from raftq.worker import Job, Worker
from raftq.worker.options import AUTO_HOLD_MS
from tests.worker.test_worker_unit import eventually, fast, local, running


def test_prefetch_is_auto_or_a_count() -> None:
    assert Worker(["127.0.0.1:1"]).options.prefetch == "auto"
    assert Worker(["127.0.0.1:1"], prefetch=7).prefetch == 7
    for bad in (-1, 10_001, "many", 1.5):
        with pytest.raises(ConfigError, match=r'prefetch must be "auto" or an integer in 0\.\.'):
            Worker(["127.0.0.1:1"], prefetch=bad)  # type: ignore[arg-type]


async def test_short_jobs_are_leased_ahead_up_to_the_concurrency() -> None:
    """Twenty instant jobs teach the worker that its jobs are short; then four jobs that block
    fill its four slots, and four more are leased to it, held, while the queue has more."""
    gate = asyncio.Event()
    async with local() as (_, client):
        worker = fast(client, concurrency=4)
        assert worker.prefetch == 0  # nothing known yet: only free slots

        @worker.handler("q")
        async def handler(job: Job) -> None:
            if job.payload >= 20:
                await gate.wait()

        async with running(worker):
            first = await client.enqueue_many("q", [{"payload": i} for i in range(20)])
            for job_id in first:
                await client.job(job_id).wait(5_000)
            assert worker.prefetch == 4
            more = await client.enqueue_many("q", [{"payload": 20 + i} for i in range(12)])
            await eventually(lambda: worker.running == 4 and worker.held == 4)
            await asyncio.sleep(0.3)  # time to lease more, if it wrongly did
            assert (await client.queue("q"))["depth"]["leased"] == 8
            gate.set()
            for job_id in more:
                await client.job(job_id).wait(5_000)


async def test_long_jobs_are_not_leased_ahead() -> None:
    """Jobs that run longer than concurrency x AUTO_HOLD_MS: the worker claims only for free
    slots, so what it cannot start waits in the queue for another worker."""
    run_s = 2 * 4 * AUTO_HOLD_MS / 1000
    async with local() as (node, client):
        worker = fast(client, concurrency=4)

        @worker.handler("q")
        async def slow(job: Job) -> None:
            await asyncio.sleep(run_s)

        ids = await client.enqueue_many("q", [{"payload": i} for i in range(12)])
        async with running(worker):
            await eventually(lambda: worker._run_s is not None)  # a first job has run
            for _ in range(20):
                assert worker.held == 0 and worker.prefetch == 0
                await asyncio.sleep(run_s / 4)
            for job_id in ids:
                await client.job(job_id).wait(5_000)
    assert all(c.max <= 4 for c in node.log if isinstance(c, Claim))
