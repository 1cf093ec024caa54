"""Long jobs in ``raftq.Worker`` on the package's real 3-node cluster: progress and
checkpoints ride on the heartbeats, a checkpoint saved right before a failure reaches the next
attempt, and a job cancelled while it runs stops its handler (async: cancelled; thread: sees
``job.cancel_requested``) without an ack or a nack."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from raftq.client import Client
from raftq.errors import JobCancelled
from raftq.worker import Job, Worker
from tests.integration.cluster import Cluster
from tests.worker.conftest import nodes_of, until


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "http"])
async def test_progress_and_a_checkpoint_saved_before_a_failure_reach_the_next_attempt(
    worker_cluster: Cluster, stream: bool
) -> None:
    queue = f"long-checkpoint-{int(stream)}"
    shown = asyncio.Event()
    async with Client(nodes_of(worker_cluster)) as client:
        worker = Worker(
            client=client, concurrency=1, lease_ms=600, retry_in_ms=0, wait_ms=200, stream=stream
        )

        @worker.handler(queue)
        async def resumable(job: Job) -> object:
            if job.attempt == 1:
                assert job.checkpoint is None
                job.save_checkpoint({"page": 3})
                raise RuntimeError("fails before any heartbeat went out")
            job.report_progress({"done": 50})
            await asyncio.wait_for(shown.wait(), 10)  # until a reader saw it
            return job.checkpoint

        handle = await client.enqueue_job(queue, None)
        task = asyncio.create_task(worker.run())
        try:
            seen = []
            async for p in handle.progress(interval_ms=50):
                seen.append(p)
                shown.set()
            assert seen == [{"done": 50}]
            assert await handle.wait(5_000) == {"page": 3}
            info = await client.get_job(handle.id, linearizable=True)
            assert info["attempts"] == 2 and info["checkpoint"] is None  # dropped on success
            assert info["progress"] == {"done": 50}
        finally:
            worker.stop(now=True)
            await asyncio.wait_for(task, 20)


async def test_cancelling_a_running_job_stops_its_handler_without_ack_or_nack(
    worker_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raftq.worker")
    queue = "long-cancel"
    events: list[str] = []
    async with Client(nodes_of(worker_cluster)) as client:
        worker = Worker(client=client, concurrency=2, lease_ms=600, wait_ms=200)

        @worker.handler(queue)
        async def forever(job: Job) -> None:
            if job.payload == "thread":
                await asyncio.to_thread(polls, job)
                return
            events.append("async started")
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                events.append("async cancelled")
                raise

        def polls(job: Job) -> None:
            events.append("thread started")
            deadline = time.monotonic() + 30
            while not job.cancel_requested and time.monotonic() < deadline:
                time.sleep(0.01)
            events.append(f"thread saw cancel_requested={job.cancel_requested}")

        ids = [await client.enqueue(queue, kind) for kind in ("async", "thread")]
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: len(events) == 2, 20, "both handlers to start")
            for job_id in ids:
                await client.cancel(job_id)
            await until(lambda: len(events) == 4, 20, "both handlers to stop")
            assert set(events[2:]) == {"async cancelled", "thread saw cancel_requested=True"}
            await until(lambda: worker.running + worker.settling == 0, 10, "both settled")
            for job_id in ids:
                with pytest.raises(JobCancelled):
                    await client.job(job_id).wait(1_000)
                info = await client.get_job(job_id, linearizable=True)
                assert info["cancel_requested"] is True and info["error"] is None
        finally:
            worker.stop(now=True)
            await asyncio.wait_for(task, 20)
    lines = [r.getMessage() for r in caplog.records if r.name == "raftq.worker"]
    assert sum("cancelled while running" in line for line in lines) == 2, lines
    # Nothing was sent for them: no nack's outcome, no refusal.
    for said in ("could not be nacked", "will be retried", "dead letters", "refused", "lost"):
        assert not any(said in line for line in lines), (said, lines)
