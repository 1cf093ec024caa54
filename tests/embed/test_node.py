"""raftq.Node in-process: the client's operations as coroutines on the local raft node (no
HTTP server even exists in the single-node tests), refusals mapped as the API maps them, and
forwarding from a follower to the leader of a three-node cluster mounted on aiohttp apps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from raftq import Node, Worker
from raftq.core import Ack, Acked, Reason, Refusal
from raftq.errors import NoLeader, Rejected
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.server import ServerSettings
from raftq.worker import Job
from tests.embed.conftest import make_config, mounted_nodes


@asynccontextmanager
async def single(tmp_path: Path, **kw: object) -> AsyncIterator[Node]:
    node = Node(make_config(tmp_path, 1), "n1", **kw)  # type: ignore[arg-type]
    async with node:
        await node.wait_for_leader(10_000)
        yield node


async def rejected(coro: object) -> Rejected:
    with pytest.raises(Rejected) as e:
        await coro  # type: ignore[misc]
    return e.value


async def test_operations_run_on_the_local_raft_node(tmp_path: Path) -> None:
    async with single(tmp_path) as node:
        assert node.is_leader and node.leader_id == "n1"
        first = await node.enqueue("q", {"n": 1}, priority=5, key="k")
        assert await node.enqueue("q", "ignored", key="k") == first  # idempotency key
        more = await node.enqueue_many("q", [{"payload": b"\x00"}, {"payload": 3}])
        assert more == [first + 1, first + 2]
        (job,) = await node.claim(["q", "other"], worker="w")
        assert (job.id, job.payload, job.priority, job.attempt) == (first, {"n": 1}, 5, 1)
        extended = await node.heartbeat(job.id, job.token, lease_ms=60_000, progress={"p": 1})
        assert extended.lease_expires_ms >= job.lease_expires_ms
        assert not extended.cancel_requested
        await node.ack(job.id, job.token, {"ok": True})
        info = await node.get_job(first, linearizable=True)
        assert (info["state"], info["result"]) == ("succeeded", {"ok": True})
        assert info["progress"] == {"p": 1}  # a finished job keeps its last progress
        a, b = await node.claim("q", worker="w", max=5)
        assert a.payload == b"\x00"
        await node.heartbeat(a.id, a.token, checkpoint=b"\x01")
        answer = await node.nack(a.id, a.token, error="boom", retry_in_ms=0)
        assert (await node.get_job(a.id))["checkpoint"] == b"\x01"  # for the next attempt
        assert answer == {"id": a.id, "state": "queued", "run_at_ms": answer["run_at_ms"]}
        await node.cancel(b.id)
        assert (await node.get_job(b.id))["state"] == "cancelled"
        await node.pause("q")
        assert (await node.queue("q"))["paused"] is True
        assert await node.claim("q", worker="w") == []
        await node.resume("q")
        (again,) = await node.claim("q", worker="w")
        await node.nack(again.id, again.token, error="dead now", retry_in_ms=0)
        await node.nack(*(await _reclaim(node, "q")), error="x", retry_in_ms=0)
        await node.nack(*(await _reclaim(node, "q")), error="x", retry_in_ms=0)
        await node.nack(*(await _reclaim(node, "q")), error="last", retry_in_ms=0)
        (letter,) = await node.dead("q")
        assert (letter["id"], letter["error"]) == (a.id, "last")
        assert await node.requeue_dead("q", [a.id]) == 1
        assert await node.purge("q") == 1
        assert [q["queue"] for q in await node.queues()] == ["q"]
        view = await node.cluster()
        assert view["self"]["role"] == "leader" and view["leader"] == "n1"


async def _reclaim(node: Node, queue: str) -> tuple[int, int]:
    (job,) = await node.claim(queue, worker="w")
    return job.id, job.token


async def test_refusals_have_the_api_reason_and_status(tmp_path: Path) -> None:
    async with single(tmp_path, settings=ServerSettings(max_payload_bytes=64)) as node:
        job_id = await node.enqueue("q", None)
        (job,) = await node.claim("q", worker="w")
        stale = await rejected(node.ack(job_id, job.token + 1))
        assert (stale.reason, stale.status) == ("stale_token", 409)
        missing = await rejected(node.get_job(999_999))
        assert (missing.reason, missing.status) == ("not_found", 404)
        bad = await rejected(node.enqueue("q", 1, priority=10))
        assert (bad.reason, bad.status, str(bad)) == (
            "invalid",
            400,
            "priority: must be in 0..9, got 10",
        )
        both = await rejected(node.enqueue("q", 1, delay_ms=1, run_at_ms=1))
        assert both.reason == "invalid"
        name = await rejected(node.enqueue("no spaces", 1))
        assert (name.reason, name.status) == ("invalid", 400)
        large = await rejected(node.enqueue("q", "x" * 100))
        assert (large.reason, large.status) == ("payload_too_large", 413)
        atomic = await rejected(node.enqueue_many("q", [{"payload": 1}, {"payload": 2, "oops": 1}]))
        assert "jobs[1]" in str(atomic)
        assert (await node.queue("q"))["depth"]["queued"] == 0  # all or none
        result = await rejected(node.ack(job.id, job.token, result="y" * 100))
        assert result.status == 413
        finished_job = await node.enqueue("q", None)
        await node.cancel(finished_job)
        finished = await rejected(node.cancel(finished_job))
        assert (finished.reason, finished.status) == ("finished", 409)


async def test_claim_long_polls_until_work_arrives(tmp_path: Path) -> None:
    async with single(tmp_path) as node:
        loop = asyncio.get_running_loop()
        began = loop.time()
        claim = asyncio.create_task(node.claim("later", worker="w", wait_ms=5_000))
        await asyncio.sleep(0.3)
        assert not claim.done()
        job_id = await node.enqueue("later", "now")
        (job,) = await asyncio.wait_for(claim, 2)
        assert job.id == job_id and loop.time() - began < 2


async def test_submit_many_on_the_raft_node_answers_each_command(tmp_path: Path) -> None:
    """``RaftNode.submit_many`` (the batched ack's path) through real PySyncObj: one outcome
    per command in order, and per-item request ids replayed with the first outcomes."""
    async with single(tmp_path) as node:
        raft = node.raft
        await node.enqueue_many("q", [{"payload": i} for i in range(3)])
        jobs = await node.claim("q", worker="w", max=3)
        now = raft.now_ms()
        acks = [
            Ack(now_ms=now, request_id=f"b.{i}", job_id=j.id, token=j.token + (i == 1), result=None)
            for i, j in enumerate(jobs)
        ]
        first = await raft.submit_many(acks, 5_000)
        assert first[0] == Acked(jobs[0].id) and first[2] == Acked(jobs[2].id)
        assert isinstance(first[1], Refusal) and first[1].reason is Reason.STALE_TOKEN
        assert await raft.submit_many(acks, 5_000) == first  # a retry: the first outcomes
        assert (await node.get_job(jobs[0].id))["state"] == "succeeded"
        assert (await node.get_job(jobs[1].id))["state"] == "leased"
        # Without the request ids, the same acks are new operations on finished jobs.
        again = await raft.submit_many([replace(a, request_id=None) for a in acks], 5_000)
        reasons = [r.reason if isinstance(r, Refusal) else r for r in again]
        assert reasons == [Reason.FINISHED, Reason.STALE_TOKEN, Reason.FINISHED]


async def test_a_worker_runs_jobs_through_the_embedded_node(tmp_path: Path) -> None:
    async with single(tmp_path) as node:
        worker = Worker(client=node, wait_ms=200)

        @worker.handler("emails")
        async def send(job: Job) -> str:
            return f"sent to {job.payload}"

        task = asyncio.create_task(worker.run())
        handle = await node.enqueue_job("emails", "ada")
        assert await handle.wait(5_000) == "sent to ada"
        worker.stop()
        await asyncio.wait_for(task, 5)


async def test_not_started_and_bad_prefix(tmp_path: Path) -> None:
    node = Node(make_config(tmp_path, 1), "n1")
    with pytest.raises(NoLeader):
        await node.enqueue("q", 1)
    with pytest.raises(ValueError, match="prefix"):
        node.mount(web.Application(), prefix="raftq/")
    config = make_config(tmp_path / "two", 2)
    with pytest.raises(ValueError, match="engine is for node 'n2', not 'n1'"):
        Node(config, "n1", engine=new_pysyncobj_engine(config, "n2"))


@pytest.mark.parametrize("network", ["tcp", "memory"])
async def test_followers_forward_to_the_leader(tmp_path: Path, network: str) -> None:
    """Over PySyncObj's TCP transport, and over the in-memory one (Raft without sockets)."""
    config = make_config(tmp_path, 3)
    async with AsyncExitStack() as stack:
        nodes = await mounted_nodes(stack, config, network=network)
        leader_id = await nodes["n1"].wait_for_leader(15_000)
        follower = next(n for n in nodes.values() if n.node_id != leader_id)
        assert not follower.is_leader

        job_id = await follower.enqueue("q", {"via": "follower"}, priority=2)
        ids = await follower.enqueue_many("q", [{"payload": i} for i in range(2)])
        (job,) = await follower.claim(["q"], worker="w", max=1)
        assert (job.id, job.payload) == (job_id, {"via": "follower"})
        await follower.heartbeat(job.id, job.token)
        stale = await rejected(follower.ack(job.id, job.token + 100))
        assert (stale.reason, stale.status) == ("stale_token", 409)  # as over HTTP
        await follower.ack(job.id, job.token, [1, 2])
        info = await follower.get_job(job_id, linearizable=True)
        assert (info["state"], info["result"]) == ("succeeded", [1, 2])
        a, b = await follower.claim("q", worker="w", max=2)
        assert [a.id, b.id] == ids
        nacked = await follower.nack(a.id, a.token, error="e", retry_in_ms=0)
        assert nacked["state"] == "queued"
        await follower.cancel(b.id)
        waiting = asyncio.create_task(follower.claim("fresh", worker="w", wait_ms=5_000))
        await asyncio.sleep(0.3)
        fresh = await nodes[leader_id].enqueue("fresh", "x")
        (got,) = await asyncio.wait_for(waiting, 3)
        assert got.id == fresh
        assert await follower.purge("q") == 1
