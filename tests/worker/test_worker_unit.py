"""The worker runtime in-process, against real API servers over a ``LocalNode`` (whose clock
the tests move), so each behaviour is checked precisely and fast: outcomes, Retry, timeouts,
lost leases, free slots, priorities across queues, graceful stop, fatal refusals."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from raftq.client import ClaimedJob, Client
from raftq.client.stream import StreamUnsupportedError
from raftq.core import Ack, Claim, EnableVersion, Nack
from raftq.errors import ConfigError, JobDead, OutcomeUnknown, Rejected, Retry
from raftq.server import app as app_module
from raftq.server import create_app
from raftq.worker import Job, Worker, describe_error
from tests.support.local_node import LocalNode, serve


@asynccontextmanager
async def local() -> AsyncIterator[tuple[LocalNode, Client]]:
    node = LocalNode("n1")
    async with serve(create_app(node)) as address:
        node.set_address("n1", address)
        async with Client(address, retry_ms=2_000) as client:
            yield node, client


@asynccontextmanager
async def running(worker: Worker, queues: Sequence[str] | None = None) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run(queues))
    try:
        yield
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 15)


def fast(client: Any, **options: Any) -> Worker:
    return Worker(client=client, wait_ms=100, retry_in_ms=0, **options)


async def eventually(check: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- registration -----------------------------------------------------------------------


def test_handlers_register_by_decorator_and_explicitly() -> None:
    worker = Worker("127.0.0.1:1")

    @worker.handler("a", timeout_ms=5)
    async def a(job: Job) -> None: ...

    def b(job: Job) -> None: ...

    worker.add_handler("b", b)
    assert a.__name__ == "a"  # the decorator returns the function itself
    assert worker.queues == ("a", "b")
    with pytest.raises(ValueError, match="already has a handler"):
        worker.add_handler("a", b)
    with pytest.raises(ValueError, match="queue names"):
        worker.add_handler("no spaces", b)
    with pytest.raises(ValueError, match="timeout_ms"):
        worker.add_handler("c", b, timeout_ms=0)
    with pytest.raises(ConfigError) as bad:
        Worker(concurrency=0, lease_ms=10, heartbeat_ms=100_000)
    assert len(bad.value.problems) == 3


async def test_run_refuses_without_handlers_or_for_unknown_queues() -> None:
    worker = Worker("127.0.0.1:1")
    with pytest.raises(ValueError, match="no handler"):
        await worker.run()
    worker.add_handler("a", lambda job: None)
    with pytest.raises(ValueError, match="no handler for queue"):
        await worker.run(["a", "zzz"])


# -- outcomes ---------------------------------------------------------------------------


async def test_return_value_acks_async_on_the_loop_sync_in_the_pool() -> None:
    threads: dict[str, str] = {}
    async with local() as (_, client):
        worker = fast(client, concurrency=2)

        @worker.handler("async")
        async def on_loop(job: Job) -> dict[str, Any]:
            threads["async"] = threading.current_thread().name
            return {"echo": job.payload, "token": job.token, "attempt": job.attempt}

        @worker.handler("sync")
        def in_pool(job: Job) -> bytes:
            threads["sync"] = threading.current_thread().name
            return b"raw" + bytes(job.payload)

        a = await client.enqueue_job("async", {"x": [1, 2]})
        s = await client.enqueue_job("sync", [1, 2])
        async with running(worker):
            result = await a.wait(5_000)
            assert await s.wait(5_000) == b"raw\x01\x02"
    assert result["echo"] == {"x": [1, 2]} and result["attempt"] == 1
    assert result["token"] > 0
    assert threads["async"] == threading.main_thread().name
    assert threads["sync"].startswith("raftq-worker")


async def test_exception_nacks_with_the_error_and_a_trimmed_traceback() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise KeyError("missing")
        deep(n - 1)

    async with local() as (node, client):
        worker = fast(client)

        @worker.handler("q")
        def fails(job: Job) -> None:
            deep(20)

        job_id = await client.enqueue("q", None, max_attempts=1)
        async with running(worker):
            await eventually(lambda: any(isinstance(c, Nack) for c in node.log))
        info = await client.get_job(job_id)
    assert info["state"] == "dead"
    error = info["error"]
    assert error.startswith("KeyError: 'missing'\n\nTraceback (most recent call last, ")
    assert "outer frame(s) omitted" in error
    assert "14 outer frame(s) omitted" in error  # user frames only: fails + 21 x deep = 22
    assert error.count('File "') <= 8
    assert "concurrent" not in error and "asyncio" not in error and "raftq/" not in error


def test_describe_error_is_bounded() -> None:
    try:
        raise RuntimeError("x" * 10_000)
    except RuntimeError as e:
        text = describe_error(e)
    assert len(text) <= 4_000 and text.endswith("(truncated)")
    assert describe_error(ValueError()) == "ValueError"


async def test_retry_schedules_the_next_attempt_after_delay_ms() -> None:
    async with local() as (node, client):
        worker = fast(client)
        seen: list[int] = []

        @worker.handler("q")
        async def later(job: Job) -> str:
            seen.append(job.attempt)
            if job.attempt == 1:
                raise Retry(delay_ms=60_000, message="not yet")
            return "done"

        handle = await client.enqueue_job("q", None)
        async with running(worker):
            await eventually(lambda: any(isinstance(c, Nack) for c in node.log))
            (nack,) = [c for c in node.log if isinstance(c, Nack)]
            assert (nack.retry_in_ms, nack.error) == (60_000, "not yet")
            info = await handle.status()
            assert info["state"] == "delayed"
            assert info["run_at_ms"] - nack.now_ms == 60_000
            node.advance(60_000)
            await node.tick()
            assert await handle.wait(5_000) == "done"
    assert seen == [1, 2]


async def test_timeout_cancels_the_handler_and_nacks() -> None:
    cancelled = asyncio.Event()
    async with local() as (node, client):
        worker = fast(client, job_timeout_ms=100)

        @worker.handler("q")
        async def hangs(job: Job) -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        job_id = await client.enqueue("q", None, max_attempts=1)
        async with running(worker):
            await asyncio.wait_for(cancelled.wait(), 5)
            await eventually(lambda: any(isinstance(c, Nack) for c in node.log))
        info = await client.get_job(job_id)
    assert info["error"] == "JobTimeout: the handler ran longer than 100 ms"
    assert not any(isinstance(c, Ack) for c in node.log)


async def test_lost_lease_cancels_the_handler_and_never_acks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="raftq.worker")
    started, cancelled = asyncio.Event(), asyncio.Event()
    async with local() as (node, client):
        worker = fast(client, concurrency=1, lease_ms=1_000, heartbeat_ms=100)

        @worker.handler("q")
        async def slow(job: Job) -> str:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "too late"

        job_id = await client.enqueue("q", None)
        async with running(worker):
            await asyncio.wait_for(started.wait(), 5)
            node.advance(5_000)  # cluster time passes the lease: another worker takes it
            await node.tick()
            (other,) = await client.claim("q", worker="other")
            await asyncio.wait_for(cancelled.wait(), 5)  # next heartbeat: 409, cancelled
            await eventually(lambda: "lease lost" in caplog.text)
            info = await client.get_job(job_id)
    assert (info["state"], info["worker"], info["token"]) == ("leased", "other", other.token)
    first_token = other.token - 1
    assert not [c for c in node.log if isinstance(c, Ack | Nack) and c.token == first_token]
    assert f"job {job_id} q#1 lease lost" in caplog.text


async def test_unstorable_result_is_nacked_with_the_reason() -> None:
    async with local() as (_, client):
        worker = fast(client)
        worker.add_handler("q", lambda job: object())
        job_id = await client.enqueue("q", None, max_attempts=1)
        async with running(worker):
            with pytest.raises(JobDead) as dead:
                await client.job(job_id).wait(5_000)
    assert (dead.value.error or "").startswith("ResultRefused: the handler's result was refused")


# -- claiming ---------------------------------------------------------------------------


async def test_claims_only_for_free_slots() -> None:
    release = asyncio.Event()
    async with local() as (node, client):
        worker = fast(client, concurrency=3)

        @worker.handler("q")
        async def blocked(job: Job) -> int:
            await release.wait()
            return job.id

        ids = await client.enqueue_many("q", [{"payload": i} for i in range(7)])
        async with running(worker):
            await eventually(lambda: worker.running == 3)
            await asyncio.sleep(0.3)  # long enough to claim more, if it wrongly did
            assert (await client.queue("q"))["depth"]["leased"] == 3
            release.set()
            for job_id in ids:
                assert await client.job(job_id).wait(5_000) == job_id
    claims = [c for c in node.log if isinstance(c, Claim)]
    assert all(c.max <= 3 for c in claims)
    assert claims[0].max == 3


async def test_several_queues_highest_priority_first_and_rotated_order() -> None:
    order: list[str] = []
    async with local() as (node, client):
        worker = fast(client, concurrency=1)

        async def record(job: Job) -> None:
            order.append(job.payload)

        for q in ("low", "high", "other"):
            worker.add_handler(q, record)
        for i in range(3):
            await client.enqueue("low", f"low{i}", priority=1)
        await client.enqueue("other", "other0", priority=1)
        await client.enqueue("high", "urgent", priority=9)
        async with running(worker):
            await eventually(lambda: len(order) == 5)
    # Priority across queues, then oldest first across queues (no queue waits behind later
    # jobs of another).
    assert order == ["urgent", "low0", "low1", "low2", "other0"]
    sent = [c.queues for c in node.log if isinstance(c, Claim)]
    assert sent[:3] == [
        ("low", "high", "other"),
        ("high", "other", "low"),
        ("other", "low", "high"),
    ]


async def test_fatal_claim_refusal_stops_the_worker() -> None:
    class Refusing:
        async def claim(self, queues: Any, **kw: Any) -> list[ClaimedJob]:
            raise Rejected("forbidden_queue", "no claims for you", 403)

    worker = Worker(client=Refusing())
    worker.add_handler("q", lambda job: None)
    with pytest.raises(Rejected, match="no claims"):
        await asyncio.wait_for(worker.run(), 5)


# -- stopping ---------------------------------------------------------------------------


async def test_graceful_stop_finishes_short_jobs_and_hands_back_long_ones() -> None:
    async with local() as (node, client):
        worker = fast(client, concurrency=2, grace_ms=300)

        @worker.handler("q")
        async def sleeper(job: Job) -> str:
            await asyncio.sleep(job.payload)
            return "finished"

        short = await client.enqueue("q", 0.1)
        long = await client.enqueue("q", 60)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: worker.running == 2)
        loop = asyncio.get_running_loop()
        began = loop.time()
        worker.stop()
        await asyncio.wait_for(task, 10)
        assert 0.3 <= loop.time() - began < 3
        assert (await client.get_job(short))["result"] == "finished"
        info = await client.get_job(long)
        assert (info["state"], info["attempts"]) == ("queued", 1)
        assert info["error"].startswith("WorkerStopped")
        (nack,) = [c for c in node.log if isinstance(c, Nack)]
        assert nack.retry_in_ms == 0


async def test_stop_now_skips_the_grace() -> None:
    async with local() as (_, client):
        worker = fast(client, grace_ms=60_000)
        worker.add_handler("q", _sleep_forever)
        job_id = await client.enqueue("q", None)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: worker.running == 1)
        worker.stop()
        await asyncio.sleep(0.2)
        assert not task.done()  # in its grace period
        worker.stop(now=True)
        await asyncio.wait_for(task, 5)
        assert (await client.get_job(job_id))["state"] == "queued"


async def _sleep_forever(job: Job) -> None:
    await asyncio.sleep(3600)


# -- settling through failures ----------------------------------------------------------


async def test_an_ack_whose_answer_was_lost_is_recognised_as_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client's retries are exhausted after the ack was applied: the worker's next ack is
    refused (409), and reading the job back shows it succeeded with this delivery's token."""
    caplog.set_level(logging.INFO, logger="raftq.worker")

    class LosesFirstAckAnswer:
        def __init__(self, client: Client) -> None:
            self.client = client
            self.acks = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.client, name)

        async def ack(self, job_id: int, token: int, result: Any = None) -> None:
            self.acks += 1
            await self.client.ack(job_id, token, result)
            if self.acks == 1:
                raise OutcomeUnknown("the answer was lost")

    async with local() as (_, client):
        source = LosesFirstAckAnswer(client)
        worker = fast(source)
        worker.add_handler("q", lambda job: "ok")
        handle = await client.enqueue_job("q", None)
        async with running(worker):
            assert await handle.wait(5_000) == "ok"
            await eventually(lambda: "succeeded in" in caplog.text)
    assert source.acks == 2
    assert "refused" not in caplog.text


async def test_job_logger_names_the_job(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with local() as (_, client):
        worker = fast(client)

        @worker.handler("q")
        async def logs(job: Job) -> None:
            job.logger.info("working on %s", job.payload)

        handle = await client.enqueue_job("q", "it")
        async with running(worker):
            await handle.wait(5_000)
    (record,) = [r for r in caplog.records if r.name == "raftq.worker.job"]
    assert record.getMessage() == f"job {handle.id} q#1: working on it"
    assert (record.job_id, record.queue, record.attempt) == (handle.id, "q", 1)


async def test_cancelling_run_stops_claiming_and_hands_jobs_back() -> None:
    async with local() as (node, client):
        worker = fast(client, grace_ms=200)
        worker.add_handler("q", _sleep_forever)
        job_id = await client.enqueue("q", None)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: worker.running == 1)
        task.cancel()
        await client.enqueue("q", "arrives during the grace period")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        claims_after_stop = len([c for c in node.log if isinstance(c, Claim)])
        assert (await client.get_job(job_id))["state"] == "queued"
        assert (await client.queue("q"))["depth"]["leased"] == 0
        # Stopped claiming: several long-poll periods (wait_ms=100) later, no claim came.
        # (How many claims the one in flight at the cancel makes depends on timing.)
        await asyncio.sleep(0.5)
        assert len([c for c in node.log if isinstance(c, Claim)]) == claims_after_stop


async def test_a_handler_ignoring_cancellation_does_not_hold_up_the_stop() -> None:
    async with local() as (_, client):
        worker = fast(client, grace_ms=100)

        ignored: list[int] = []

        @worker.handler("q")
        async def stubborn(job: Job) -> None:
            while True:
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    if len(ignored) == 2:  # let the event loop's own cleanup end it
                        raise
                    ignored.append(1)  # bad manners: swallows the worker's cancellations

        job_id = await client.enqueue("q", None)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: worker.running == 1)
        worker.stop()
        await asyncio.wait_for(task, 5)  # grace 0.1 s + 1 s to unwind, then settled anyway
        assert len(ignored) == 2  # it is still running, and the job was handed back
        info = await client.get_job(job_id)
        assert (info["state"], info["error"][:13]) == ("queued", "WorkerStopped")


# -- the worker stream ------------------------------------------------------------------

_STREAM_ROUND = re.compile(r"s[0-9a-f]{24}-[0-9]+(\.[0-9]+)?")  # raftq.server.stream's ids


async def _one_job(worker: Worker, client: Client) -> None:
    worker.add_handler("q", lambda job: job.payload)
    handle = await client.enqueue_job("q", 7)
    async with running(worker):
        assert await handle.wait(5_000) == 7


@pytest.mark.parametrize("stream", [True, False])
async def test_the_worker_streams_unless_told_not_to(stream: bool) -> None:
    async with local() as (node, client):
        await _one_job(fast(client, stream=stream), client)
    rids = [c.request_id or "" for c in node.log if isinstance(c, Claim | Ack)]
    claims = [r for r in rids if _STREAM_ROUND.fullmatch(r)]
    assert bool(claims) is stream, rids


async def test_a_node_without_the_stream_gets_http_claims(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An older node answers the upgrade with 404: the worker claims over HTTP."""
    caplog.set_level(logging.INFO, logger="raftq.worker")
    older = tuple(r for r in app_module.ROUTES if r.handler != "stream")
    monkeypatch.setattr(app_module, "ROUTES", older)
    async with local() as (node, client):
        with pytest.raises(StreamUnsupportedError):
            await client.stream("q", worker="w", credit=1)
        await _one_job(fast(client), client)
    assert "does not serve the worker stream; claiming over HTTP" in caplog.text
    claims = [c for c in node.log if isinstance(c, Claim)]
    assert claims and not any(_STREAM_ROUND.fullmatch(c.request_id or "") for c in claims)


async def test_a_released_dependant_sees_its_parents_results() -> None:
    async with local() as (node, client):
        await node.submit(EnableVersion(now_ms=node.now_ms(), version=3))
        worker = fast(client)
        seen: dict[str, Any] = {}

        @worker.handler("etl")
        async def run(job: Job) -> Any:
            if job.payload == "merge":
                seen["parents"], seen["states"] = job.parents, job.parent_states
                return "merged"
            return f"part {job.payload}"

        ids = await client.enqueue_many(
            "etl",
            [{"payload": "a"}, {"payload": "b"}, {"payload": "merge", "depends_on": ["@0", "@1"]}],
        )
        async with running(worker):
            await eventually(lambda: "parents" in seen)
    assert seen["parents"] == {ids[0]: "part a", ids[1]: "part b"}
    assert seen["states"] == {ids[0]: "succeeded", ids[1]: "succeeded"}
