"""The client against real servers: the whole API, leader discovery, retries, typed errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from raftq.client import ClaimedJob, Client, SyncClient
from raftq.client.transport import parse_nodes
from raftq.core import Enqueue
from raftq.errors import NoLeader, OutcomeUnknown, Rejected, TransportError
from raftq.server import ServerSettings
from tests.support.memory_cluster import ON_BOTH


def enqueues(node) -> list[Enqueue]:
    return [c for c in node.log if isinstance(c, Enqueue)]


@pytest.mark.parametrize("use_msgpack", [True, False])
async def test_whole_api(start, use_msgpack):
    async with start() as c, Client(c.csv(), use_msgpack=use_msgpack) as client:
        blob = b"\x00\x01binary"
        job_id = await client.enqueue("q", {"n": 1, "blob": blob}, priority=5, key="k1")
        assert job_id == 1
        assert await client.enqueue("q", "dup", key="k1") == 1
        ids = await client.enqueue_many("q", [{"payload": i, "max_attempts": 1} for i in range(3)])
        assert ids == [2, 3, 4]
        delayed = await client.enqueue("q", "later", delay_ms=60_000)
        assert (await client.get_job(delayed))["state"] == "delayed"
        (job,) = await client.claim("q", worker="w", max=1)
        assert isinstance(job, ClaimedJob)
        assert job.id == 1
        assert job.payload == {"n": 1, "blob": blob}
        assert job.priority == 5
        assert job.attempt == 1
        extended = await client.heartbeat(job.id, job.token, lease_ms=60_000)
        assert extended.lease_expires_ms >= job.lease_expires_ms
        assert not extended.cancel_requested
        await client.ack(job.id, job.token, result=[1, "two", b"3"])
        info = await client.get_job(job.id, linearizable=True)
        assert info["state"] == "succeeded"
        assert info["result"] == [1, "two", b"3"]
        jobs = await client.claim(["q", "other"], worker="w", max=10, lease_ms=5_000)
        assert [j.id for j in jobs] == [2, 3, 4]
        outcome = await client.nack(jobs[0].id, jobs[0].token, error="boom", retry_in_ms=10)
        assert outcome["state"] == "dead"
        await client.cancel(jobs[1].id)
        assert (await client.get_job(jobs[1].id))["state"] == "cancelled"
        dead = await client.dead("q")
        assert [d["id"] for d in dead] == [2]
        assert dead[0]["error"] == "boom"
        assert await client.requeue_dead("q", [2]) == 1
        assert await client.requeue_dead("q") == 0
        await client.pause("q")
        assert (await client.queue("q"))["paused"] is True
        assert await client.claim("q", worker="w") == []
        await client.resume("q")
        assert [q["queue"] for q in await client.queues()] == ["q"]
        assert await client.purge("q") == 2  # the requeued one and the delayed one
        view = await client.cluster()
        assert view["leader"] == "n1"
        assert (await client.cluster_of("n2"))["self"]["id"] == "n2"
        assert (await client.cluster_of(c.addresses["n3"]))["self"]["id"] == "n3"
        assert (await client.cluster_of(f"http://{c.addresses['n3']}"))["self"]["id"] == "n3"


@ON_BOTH
async def test_learns_the_leader_and_goes_there(start):
    async with start() as c, Client(c.csv("n2", "n3")) as client:
        assert client.leader is None
        await client.enqueue("q", 1)
        assert client.leader == f"http://{c.addresses['n1']}"
        before = len(c.faults["n2"].seen) + len(c.faults["n3"].seen)
        for i in range(5):
            await client.enqueue("q", i)
        assert len(c.faults["n2"].seen) + len(c.faults["n3"].seen) == before
        assert len(c.faults["n1"].seen) >= 6


@ON_BOTH
async def test_dead_nodes_are_skipped(start):
    async with start(followers=0) as c, Client(f"127.0.0.1:1,{c.csv()}") as client:
        t0 = time.monotonic()
        assert await client.enqueue("q", 1) == 1
        assert time.monotonic() - t0 < 2


async def test_lost_answer_is_retried_with_the_same_request_id(start):
    """A server that applies the enqueue and then drops the connection: no double enqueue."""
    async with start(followers=0) as c, Client(c.csv()) as client:
        c.faults["n1"].drop_after_handling["/jobs"] = 1
        job_id = await client.enqueue("q", "once")
        assert job_id == 1
        sent = [e.request_id for e in enqueues(c.leader)]
        assert len(sent) == 2  # the first try was applied, the retry was answered from memory
        assert sent[0] == sent[1] and sent[0] is not None
        assert c.leader.machine.queue_stats("q").depth["queued"] == 1


async def test_timeout_is_retried_with_the_same_request_id(start):
    async with start(followers=0) as c, Client(c.csv(), timeout_ms=300) as client:
        c.faults["n1"].delay_after_handling["/jobs"] = (1, 1.0)
        assert await client.enqueue("q", "once") == 1
        rids = [rid for _, path, rid in c.faults["n1"].seen if path.endswith("/jobs")]
        assert len(rids) == 2  # timed out once, then retried
        assert rids[0] == rids[1]
        assert c.leader.machine.queue_stats("q").depth["queued"] == 1


async def test_outcome_unknown_is_retried_and_applied_once(start):
    async with start(followers=0) as c, Client(c.csv()) as client:
        c.leader.inject(OutcomeUnknown("leader changed"), after_apply=True)
        assert await client.enqueue("q", "once") == 1
        assert c.leader.machine.queue_stats("q").depth["queued"] == 1
        # An ack whose answer is lost is retried and answered from memory, not refused.
        (job,) = await client.claim("q", worker="w")
        c.faults["n1"].drop_after_handling["/ack"] = 1
        await client.ack(job.id, job.token)
        assert (await client.get_job(job.id))["state"] == "succeeded"


async def test_no_leader_for_a_while_then_success(start):
    async with start() as c, Client(c.csv()) as client:
        for nid in ("n2", "n3"):
            c.nodes[nid].leader = None
        c.leader.inject(NoLeader("election"))
        c.leader.inject(NoLeader("election"))
        assert await client.enqueue("q", 1) == 1


async def test_budget_spent_raises_typed_errors(start):
    async with Client("127.0.0.1:1,127.0.0.1:2", retry_ms=300) as client:
        t0 = time.monotonic()
        with pytest.raises(TransportError):
            await client.enqueue("q", 1)
        assert time.monotonic() - t0 < 3
    async with start(followers=1, settings=ServerSettings(leader_wait_ms=100)) as c:
        c.nodes["n2"].leader = None
        async with Client(c.csv("n2"), retry_ms=300) as client:
            with pytest.raises(NoLeader):
                await client.enqueue("q", 1)
        for _ in range(100):
            c.leader.inject(OutcomeUnknown("slow disk"))
        async with Client(c.csv("n1"), retry_ms=300) as client:
            with pytest.raises(OutcomeUnknown):
                await client.enqueue("q", 1)


@ON_BOTH
async def test_refusals_raise_rejected(start):
    async with start(followers=0) as c, Client(c.csv()) as client:
        with pytest.raises(Rejected) as e:
            await client.get_job(42)
        assert (e.value.reason, e.value.status) == ("not_found", 404)
        with pytest.raises(Rejected) as e:
            await client.enqueue("bad name", 1)
        assert (e.value.reason, e.value.status) == ("invalid", 400)
        with pytest.raises(Rejected) as e:
            await client.enqueue("q", 1, priority=12)
        assert "priority" in str(e.value)
        await client.enqueue("q", 1)
        (job,) = await client.claim("q", worker="w")
        with pytest.raises(Rejected) as e:
            await client.ack(job.id, job.token + 1)
        assert (e.value.reason, e.value.status) == ("stale_token", 409)
        with pytest.raises(Rejected) as e:
            await client.queue("nope")
        assert e.value.status == 404
        # No retries for refusals: one request each.
        acks = [p for m, p, _ in c.faults["n1"].seen if p.endswith("/ack")]
        assert len(acks) == 1


@ON_BOTH
async def test_long_poll_claim(start):
    async with start() as c, Client(c.csv("n2")) as client:
        waiting = asyncio.create_task(client.claim("q", worker="w", wait_ms=10_000))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await client.enqueue("q", "wake")
        (job,) = await waiting
        assert job.payload == "wake"
        t0 = time.monotonic()
        assert await client.claim("q", worker="w", wait_ms=300) == []
        assert 0.25 < time.monotonic() - t0 < 3


@ON_BOTH
async def test_sync_client(start):
    async with start() as c:

        def script() -> list[object]:
            with SyncClient(c.csv(), use_msgpack=False) as sc:
                job_id = sc.enqueue("q", {"x": b"\x00"})
                (job,) = sc.claim("q", worker="w")
                sc.heartbeat(job.id, job.token)
                sc.ack(job.id, job.token, "done")
                return [job_id, job.payload, sc.get_job(job_id)["result"], sc.queue("q")["queue"]]

        assert await asyncio.to_thread(script) == [1, {"x": b"\x00"}, "done", "q"]


def test_sync_client_close_is_idempotent_and_final():
    sc = SyncClient("127.0.0.1:1", retry_ms=0)
    sc.close()
    sc.close()
    with pytest.raises(RuntimeError):
        sc.queues()


def test_parse_nodes():
    assert parse_nodes("a:1, b:2,", tls=False) == ["http://a:1", "http://b:2"]
    assert parse_nodes(["http://a:1/", "https://b:2/raftq"], tls=False) == [
        "http://a:1",
        "https://b:2/raftq",
    ]
    assert parse_nodes("a:1", tls=True) == ["https://a:1"]
    assert parse_nodes("a:1,a:1", tls=False) == ["http://a:1"]
    for bad in ("", " , ", "ftp://a:1", "a:notaport", "http://a:1/?x=1"):
        with pytest.raises(ValueError):
            parse_nodes(bad, tls=False)


def test_client_arguments_are_checked():
    with pytest.raises(ValueError):
        Client("a:1", retry_ms=10**9)
    with pytest.raises(ValueError):
        Client("a:1", timeout_ms=0)
