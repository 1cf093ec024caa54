"""Long-poll claims: woken by applied entries, never polling, bounded by wait_ms.

The tests marked ``ON_BOTH`` also run on real ``RaftNode``s (PySyncObj over the in-memory
transport), so the real group commit and claim waiters are under them; the others read the
``LocalNode``'s log or move its clock.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from raftq.core import Claim
from raftq.server import ServerSettings
from tests.support.memory_cluster import ON_BOTH


def claims(node) -> list[Claim]:
    return [c for c in node.log if isinstance(c, Claim)]


async def test_long_poll_wakes_on_enqueue(start):
    async with start() as h:
        t0 = time.monotonic()
        waiting = asyncio.create_task(
            h.post(
                "/v1/queues/q/claim",
                {"worker": "w", "wait_ms": 10_000},
                headers={"X-Request-Id": "lp"},
            )
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        assert claims(h.node) == []  # nothing ready on the leader: waiting, nothing proposed
        await h.post("/v1/queues/q/jobs", {"payload": "hello"})
        r = await waiting
        elapsed = time.monotonic() - t0
        assert r.status == 200
        assert [j["payload"] for j in r.body["jobs"]] == ["hello"]
        assert elapsed < 3
        assert [c.request_id for c in claims(h.node)] == ["lp"]  # one round, once work came


async def test_long_poll_times_out_empty(start):
    async with start() as h:
        t0 = time.monotonic()
        r = await h.post("/v1/queues/q/claim", {"worker": "w", "wait_ms": 400})
        elapsed = time.monotonic() - t0
        assert r.status == 200
        assert r.body == {"jobs": []}
        assert 0.35 <= elapsed < 3
        assert len(claims(h.node)) == 1  # the empty answer is a claim in the log, made at the end


@ON_BOTH
async def test_wait_ms_is_capped(start):
    async with start(settings=ServerSettings(max_wait_ms=200)) as h:
        t0 = time.monotonic()
        r = await h.post("/v1/queues/q/claim", {"worker": "w", "wait_ms": 3_600_000})
        assert r.body == {"jobs": []}
        assert time.monotonic() - t0 < 3


@ON_BOTH
async def test_long_poll_over_several_queues_and_through_a_follower(start):
    async with start(followers=1) as h:
        waiting = asyncio.create_task(
            h.post("/v1/claim", {"queues": ["a", "b"], "worker": "w", "wait_ms": 10_000}, node="n2")
        )
        await asyncio.sleep(0.2)
        await h.post("/v1/queues/other/jobs", {"payload": 0})  # not ours: keeps waiting
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await h.post("/v1/queues/b/jobs", {"payload": 2}, node="n2")
        r = await waiting
        assert [j["queue"] for j in r.body["jobs"]] == ["b"]


async def test_long_poll_wakes_on_lease_expiry(start):
    async with start() as h:
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        first = await h.post("/v1/queues/q/claim", {"worker": "w1", "lease_ms": 1000})
        assert len(first.body["jobs"]) == 1
        waiting = asyncio.create_task(
            h.post("/v1/queues/q/claim", {"worker": "w2", "wait_ms": 10_000})
        )
        await asyncio.sleep(0.2)
        assert not waiting.done()
        h.node.advance(5_000)
        await h.node.tick()  # the leader's periodic tick expires the lease
        r = await waiting
        (job,) = r.body["jobs"]
        assert job["attempt"] == 2
        assert job["token"] > first.body["jobs"][0]["token"]


@ON_BOTH
async def test_paused_queue_does_not_wake(start):
    async with start() as h:
        await h.post("/v1/queues/q/pause")
        waiting = asyncio.create_task(h.post("/v1/queues/q/claim", {"worker": "w", "wait_ms": 600}))
        await asyncio.sleep(0.1)
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        r = await waiting
        assert r.body == {"jobs": []}
        await h.post("/v1/queues/q/resume")
        r = await h.post("/v1/queues/q/claim", {"worker": "w", "wait_ms": 1000})
        assert len(r.body["jobs"]) == 1


async def test_client_gone_during_long_poll_leases_nothing(start):
    async with start() as h:
        timeout = aiohttp.ClientTimeout(total=0.3)
        try:
            async with h.session.post(
                h.url("/v1/queues/q/claim"),
                json={"worker": "w", "wait_ms": 10_000},
                timeout=timeout,
            ) as resp:
                await resp.read()
        except TimeoutError:
            pass
        await asyncio.sleep(0.1)
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        await asyncio.sleep(0.2)
        stats = h.node.machine.queue_stats("q")
        assert stats.depth["queued"] == 1
        assert stats.depth["leased"] == 0


@ON_BOTH
async def test_many_waiters_one_job(start):
    async with start() as h:
        waiting = [
            asyncio.create_task(h.post("/v1/queues/q/claim", {"worker": f"w{i}", "wait_ms": 800}))
            for i in range(10)
        ]
        await asyncio.sleep(0.2)
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        replies = await asyncio.gather(*waiting)
        got = [j for r in replies for j in r.body["jobs"]]
        assert len(got) == 1
        assert all(r.status == 200 for r in replies)
