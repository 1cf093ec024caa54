"""The client's coalescing of concurrent enqueues and acks (``raftq.client.batch``): fewer
requests, each call still its own outcome, at most once on retries."""

from __future__ import annotations

import asyncio

import pytest

from raftq.client import Client, SyncClient
from raftq.client.batch import Coalescer
from raftq.core import Ack, Enqueue
from raftq.errors import OutcomeUnknown, Rejected
from tests.support.memory_cluster import ON_BOTH


def requests_to(c, suffix: str) -> list[str | None]:
    return [rid for method, path, rid in c.faults["n1"].seen if path.endswith(suffix)]


async def test_concurrent_enqueues_share_requests_and_get_their_own_ids(start):
    async with start(followers=0) as c, Client(c.csv()) as client:
        ids = await asyncio.gather(*(client.enqueue("q", {"i": i}) for i in range(200)))
        assert sorted(ids) == list(range(1, 201))
        assert len(requests_to(c, "/jobs")) < 200
        assert c.leader.machine.queue_stats("q").depth["queued"] == 200
        # Each caller got the id of its own job.
        for i, job_id in enumerate(ids):
            assert (await client.get_job(job_id))["payload"] == {"i": i}
        # A call alone is sent alone, in the one-job form.
        before = len(requests_to(c, "/jobs"))
        await client.enqueue("q", "alone")
        assert len(requests_to(c, "/jobs")) == before + 1
        assert len(c.leader.log[-1].jobs) == 1


async def test_a_refused_job_fails_alone(start):
    """An enqueue batch is all-or-none: one bad job refuses it, so the client resends each
    job of that batch alone and only the bad one fails."""
    async with start(followers=0) as c, Client(c.csv()) as client:
        calls = [client.enqueue("q", i, priority=10 if i == 3 else 0) for i in range(10)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        bad = outcomes[3]
        assert isinstance(bad, Rejected) and bad.reason == "invalid"
        good = [o for i, o in enumerate(outcomes) if i != 3]
        assert all(isinstance(o, int) for o in good) and len(set(good)) == 9
        assert c.leader.machine.queue_stats("q").depth["queued"] == 9
        batches = [e for e in c.leader.log if isinstance(e, Enqueue) and len(e.jobs) > 1]
        assert batches == []  # the batch itself was refused before reaching the log


async def test_concurrent_acks_share_a_request_and_fail_alone(start):
    async with start(followers=0) as c, Client(c.csv()) as client:
        await client.enqueue_many("q", [{"payload": i} for i in range(20)])
        jobs = await client.claim("q", worker="w", max=20)
        assert len(jobs) == 20
        tokens = [j.token if k != 5 else j.token + 1000 for k, j in enumerate(jobs)]
        outcomes = await asyncio.gather(
            *(client.ack(j.id, t) for j, t in zip(jobs, tokens, strict=True)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[5], Rejected) and outcomes[5].reason == "stale_token"
        assert outcomes[5].status == 409
        assert [o for k, o in enumerate(outcomes) if k != 5] == [None] * 19
        assert requests_to(c, "/v1/ack")  # some acks went together
        assert c.leader.machine.queue_stats("q").depth["succeeded"] == 19
        assert c.leader.machine.queue_stats("q").depth["leased"] == 1


async def test_a_lost_batch_answer_is_retried_and_applied_once(start):
    """The batch ack's answer is lost after it applied: the retry carries the same request
    id, so every ack is answered from memory (succeeded), not refused as stale."""
    async with start(followers=0) as c, Client(c.csv()) as client:
        await client.enqueue_many("q", [{"payload": i} for i in range(5)])
        jobs = await client.claim("q", worker="w", max=5)
        c.faults["n1"].drop_after_handling["/v1/ack"] = 1
        outcomes = await client.ack_many([(j.id, j.token, None) for j in jobs])
        assert outcomes == [None] * 5
        rids = requests_to(c, "/v1/ack")
        assert len(rids) == 2 and rids[0] == rids[1] is not None
        # Both requests reached the log; each ack's second copy was answered from the
        # request-id memory (a second application would have been refused as stale).
        acks = [e.request_id for e in c.leader.log if isinstance(e, Ack)]
        assert sorted(acks) == sorted([f"{rids[0]}.{i}" for i in range(5)] * 2)
        assert c.leader.machine.queue_stats("q").depth["succeeded"] == 5


@ON_BOTH
async def test_coalesce_off_sends_one_request_per_call(start):
    async with start(followers=0) as c, Client(c.csv(), coalesce=False) as client:
        await asyncio.gather(*(client.enqueue("q", i) for i in range(20)))
        assert len(requests_to(c, "/jobs")) == 20
        jobs = await client.claim("q", worker="w", max=20)
        await asyncio.gather(*(client.ack(j.id, j.token) for j in jobs))
        assert requests_to(c, "/v1/ack") == []
        assert len(requests_to(c, "/ack")) == 20


async def test_coalescer_cluster_failure_reaches_every_caller_of_the_batch():
    sent: list[list[int]] = []

    async def one(item: int) -> int:
        sent.append([item])
        return item * 10

    async def many(items: list[int]) -> list[int | Rejected]:
        sent.append(items)
        raise OutcomeUnknown("no answer")

    co: Coalescer[int, int] = Coalescer(one, many, max_batch=100, max_inflight=1)
    outcomes = await asyncio.gather(*(co.call(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(o, OutcomeUnknown) for o in outcomes)
    assert sent == [[0, 1, 2, 3, 4]]
    assert await co.call(7) == 70  # a call alone is sent alone
    assert sent[-1] == [7]


def test_coalescer_and_client_arguments_are_checked():
    async def one(item: int) -> int:
        return item

    async def many(items: list[int]) -> list[int | Rejected]:
        return list(items)

    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(one, many, max_batch=0)
    with pytest.raises(ValueError, match="max_batch"):
        Client("127.0.0.1:1", max_batch=0)


@ON_BOTH
async def test_sync_client_ack_many(start):
    async with start(followers=0) as c, Client(c.csv()) as producer:
        await producer.enqueue_many("q", [{"payload": 1}, {"payload": 2}])

        def work() -> list[Rejected | None]:
            with SyncClient(c.csv()) as client:
                jobs = client.claim("q", worker="w", max=2)
                return client.ack_many([(jobs[0].id, jobs[0].token, "r"), (jobs[1].id, 0, None)])

        first, second = await asyncio.to_thread(work)
        assert first is None
        assert isinstance(second, Rejected) and second.reason == "stale_token"


async def test_coalescer_closes_a_batch_at_max_bytes():
    sent: list[list[bytes]] = []

    async def one(item: bytes) -> int:
        sent.append([item])
        return len(item)

    async def many(items: list[bytes]) -> list[int | Rejected]:
        sent.append(items)
        return [len(i) for i in items]

    co: Coalescer[bytes, int] = Coalescer(
        one, many, max_batch=100, max_inflight=1, max_bytes=250, size=len
    )
    outcomes = await asyncio.gather(*(co.call(bytes(100)) for _ in range(7)))
    assert outcomes == [100] * 7
    assert [len(b) for b in sent] == [2, 2, 2, 1]  # a third item would go over 250


async def test_large_payloads_are_split_across_requests(start):
    async with start(followers=0) as c, Client(c.csv()) as client:
        blob = b"x" * (100 * 1024)
        ids = await asyncio.gather(*(client.enqueue("q", blob) for _ in range(40)))
        assert len(set(ids)) == 40
        sizes = [len(e.jobs) for e in c.leader.log if isinstance(e, Enqueue)]
        assert sum(sizes) == 40 and max(sizes) == 5  # 512 KiB of payload per request at most
