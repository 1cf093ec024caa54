"""The worker stream (``GET /v1/stream``) on real 3-node clusters: every job delivered once and
acked, from the leader and relayed by a follower; a client given a follower streams from the
leader; a token limited to queue ``a.*`` neither subscribes to ``b`` nor receives its jobs;
bad frames end the stream with an error frame; the leader killed mid-stream: the stream
reconnects, no acknowledged job is lost, and the jobs leased to the dead connection come back
once their leases expire."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from raftq.client import Client
from raftq.errors import AuthError, Rejected
from raftq.worker import Job, Worker
from tests.integration.cluster import Cluster, http_json, tokens_toml

TOKENS = {  # name: (role, token, queue patterns)
    "admin": ("admin", "tok-admin-stream-0123456789", '["*"]'),
    "worker-a": ("worker", "tok-worker-a-stream-0123456789", '["a.*"]'),
}
ADMIN = TOKENS["admin"][1]
WORKER_A = TOKENS["worker-a"][1]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.generate(tmp_path_factory.mktemp("stream"), extra=tokens_toml(TOKENS))
    c.headers = {"Authorization": f"Bearer {ADMIN}"}
    with c:
        c.wait_ready()
        yield c


def _enqueue(c: Cluster, nid: str, queue: str, n: int, **extra: Any) -> list[int]:
    jobs = [{"payload": {"i": i}, **extra} for i in range(n)]
    url = c.url(nid, f"/v1/queues/{queue}/jobs")
    status, body = http_json(url, {"jobs": jobs}, headers=c.headers)
    assert status == 201, body
    return list(body["ids"])


async def _drain(client: Client, queue: str, expected: int, credit: int) -> list[int]:
    """Stream ``queue`` until ``expected`` jobs came; ack each; the ids in delivery order."""
    seen: list[int] = []
    async with await client.stream(queue, worker="w", credit=credit) as s:
        while len(seen) < expected:
            jobs = await s.jobs(timeout_ms=10_000)
            assert jobs, f"no job within 10 s after {len(seen)}"
            assert s.credit >= 0
            await asyncio.gather(*(s.ack(j.id, j.token, {"done": j.id}) for j in jobs))
            seen += [j.id for j in jobs]
            s.add_credit(len(jobs))
        assert await s.jobs(timeout_ms=300) == []  # nothing more: nothing twice
    return seen


async def _relayed_drain(c: Cluster, nid: str, queue: str, expected: int, credit: int) -> list[int]:
    """``_drain`` with the stream's frames written by hand on a connection to ``nid`` (a
    follower relays them to the leader, as for a client that cannot reach the leader)."""
    seen: list[int] = []
    answered = 0
    url = f"ws://{c.api[nid]}/v1/stream"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Authorization": f"Bearer {WORKER_A}"}) as ws,
    ):
        await ws.send_bytes(msgpack.packb({**SUB, "queues": [queue], "credit": credit}))
        while len(seen) < expected or answered < len(seen):
            msg = await ws.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.BINARY, (msg, len(seen), answered)
            frame = msgpack.unpackb(msg.data)
            if frame["op"] == "reply":
                assert frame["ok"], frame
                answered += 1
                continue
            assert frame["op"] == "jobs", frame
            for j in frame["jobs"]:
                seen.append(j["id"])
                ack = {"op": "ack", "seq": len(seen), "id": j["id"], "token": j["token"]}
                await ws.send_bytes(msgpack.packb({**ack, "result": {"done": j["id"]}}))
            await ws.send_bytes(msgpack.packb({"op": "credit", "n": len(frame["jobs"])}))
    return seen


@pytest.mark.parametrize("via", ["leader", "follower"])
async def test_every_job_delivered_once_and_acked(secured: Cluster, via: str) -> None:
    leader = secured.leader()
    queue = f"a.{via}"
    ids = _enqueue(secured, leader, queue, 60)
    if via == "leader":
        async with Client(secured.api[leader], token=WORKER_A) as client:
            seen = await _drain(client, queue, 60, credit=7)
    else:
        seen = await _relayed_drain(secured, secured.followers()[0], queue, 60, credit=7)
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 60
    async with Client(secured.api[leader], token=ADMIN) as admin:
        stats = await admin.queue(queue)
        assert stats["totals"]["succeeded"] == 60, stats
        job = await admin.get_job(ids[0])
        assert job["state"] == "succeeded" and job["result"] == {"done": ids[0]}


async def test_a_client_streams_from_the_leader_not_through_a_follower(secured: Cluster) -> None:
    """A client that has not learned the leader yet (its first call is the stream), given a
    follower first, or only a follower: its stream goes to the leader, not relayed by the
    follower (each frame one hop more each way, and the follower's CPU)."""
    leader, follower = secured.leader(), secured.followers()[0]
    (job_id,) = _enqueue(secured, leader, "a.direct", 1)
    for nodes in ([secured.api[follower], secured.api[leader]], [secured.api[follower]]):
        async with Client(nodes, token=WORKER_A) as client:
            assert client.leader is None
            async with await client.stream("a.direct", worker="w", credit=0) as s:
                assert s.node == f"http://{secured.api[leader]}", (nodes, s.node)
    async with Client(secured.api[follower], token=WORKER_A) as client:
        assert await _drain(client, "a.direct", 1, credit=1) == [job_id]


async def test_a_token_streams_only_its_queues(secured: Cluster) -> None:
    leader = secured.leader()
    b_ids = _enqueue(secured, leader, "b", 3)
    for nid in (leader, secured.followers()[0]):
        async with Client(secured.api[nid], token=WORKER_A, retry_ms=0) as client:
            s = await client.stream(["a.x", "b"], worker="w", credit=10)
            with pytest.raises(AuthError, match="may not use queue 'b'"):
                await s.jobs(timeout_ms=5000)
            await s.close()
    async with Client(secured.api[leader], token=ADMIN) as admin:
        for job_id in b_ids:
            assert (await admin.get_job(job_id))["state"] == "queued"
        # a's jobs do go to the same token, and b's stay queued
        a_ids = _enqueue(secured, leader, "a.only", 2)
    async with Client(secured.api[leader], token=WORKER_A) as client:
        assert sorted(await _drain(client, "a.only", 2, credit=5)) == sorted(a_ids)
    async with Client(secured.api[leader], token=ADMIN) as admin:
        assert {(await admin.get_job(i))["state"] for i in b_ids} == {"queued"}


async def _raw(c: Cluster, nid: str, frames: list[Any]) -> dict[str, Any]:
    """Send ``frames`` (bytes as they are, str as text, else packed) and return the first
    frame the server sends back; the server closes after it."""
    url = f"ws://{c.api[nid]}/v1/stream"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Authorization": f"Bearer {WORKER_A}"}) as ws,
    ):
        for f in frames:
            if isinstance(f, str):
                await ws.send_str(f)
            else:
                await ws.send_bytes(f if isinstance(f, bytes) else msgpack.packb(f))
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        frame: dict[str, Any] = msgpack.unpackb(msg.data)
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
        return frame


SUB = {"op": "subscribe", "queues": ["a.raw"], "worker": "w", "credit": 1}


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (['{"op": "subscribe"}'], "msgpack maps in binary"),
        ([b"\xc1"], "not valid msgpack"),
        ([[1, 2]], "expected a map"),
        ([{"op": "ack", "seq": 1, "id": 1, "token": 1}], "first frame must be"),
        ([{**SUB, "credit": -1}], "frame.credit"),
        ([{**SUB, "queues": "a.raw"}], "frame.queues"),
        ([{**SUB, "extra": 1}], "frame.extra"),
        ([SUB, {"op": "credit", "n": "5"}], "frame.n"),
        ([SUB, {"op": "dance"}], "frame.op"),
        ([SUB, {"op": "ack", "seq": 1, "id": 0, "token": 1}], "frame.id"),
        ([SUB, {"op": "nack", "id": 5, "token": 1}], "frame.seq"),
        ([SUB, {"op": "heartbeat", "seq": 1, "id": 5, "token": 1, "lease_ms": 0}], "lease_ms"),
        ([SUB, {"op": "ack", "seq": 1, "id": 5, "token": 1, "request_id": "a b"}], "request_id"),
        ([SUB, SUB], "already subscribed"),
        ([SUB, {"op": "acks", "seq": 1, "acks": []}], "frame.acks"),
        ([SUB, {"op": "acks", "seq": 1, "acks": [{"id": 1}]}], "acks[0].token"),
    ],
)
async def test_bad_frames_end_the_stream_with_an_error_frame(
    secured: Cluster, frames: list[Any], message: str
) -> None:
    frame = await _raw(secured, secured.leader(), frames)
    assert frame["op"] == "error" and frame["error"]["reason"] == "invalid", frame
    assert message in frame["error"]["message"], frame


async def test_a_refused_ack_is_a_reply_not_an_end(secured: Cluster) -> None:
    leader = secured.leader()
    (job_id,) = _enqueue(secured, leader, "a.refused", 1)
    async with (
        Client(secured.api[leader], token=WORKER_A) as client,
        await client.stream("a.refused", worker="w", credit=1) as s,
    ):
        (job,) = await s.jobs(timeout_ms=10_000)
        with pytest.raises(Rejected) as refused:
            await s.ack(job.id, job.token + 1)
        assert (refused.value.reason, refused.value.status) == ("stale_token", 409)
        assert (await s.heartbeat(job.id, job.token, lease_ms=60_000)).lease_expires_ms > 0
        answer = await s.nack(job.id, job.token, error="boom", retry_in_ms=0)
        assert answer["id"] == job_id and answer["state"] in ("queued", "delayed")
        assert await s.jobs(timeout_ms=300) == []  # queued again, but no credit left
        s.add_credit(1)
        (again,) = await s.jobs(timeout_ms=10_000)
        assert again.id == job_id and again.attempt == 2
        await s.ack(again.id, again.token)


@pytest.mark.parametrize("via", ["http", "stream"])
async def test_a_released_job_is_queued_again_in_its_place_with_its_attempt_back(
    secured: Cluster, via: str
) -> None:
    """``release`` (``POST /v1/jobs/{id}/release``, the stream's ``release`` frame): a job
    given back unstarted is first in line again, and the claim is not counted: with one
    attempt, it still runs. Its token is stale after; another queue's job is not the caller's
    to release."""
    leader, follower = secured.leader(), secured.followers()[0]
    queue = f"a.release-{via}"
    first, second = _enqueue(secured, leader, queue, 2, max_attempts=1)
    (other,) = _enqueue(secured, leader, "b", 1)
    async with Client(secured.api[follower], token=WORKER_A) as client:
        s = await client.stream(queue, worker="w", credit=1)
        try:
            (job,) = await s.jobs(timeout_ms=10_000)
            assert (job.id, job.attempt) == (first, 1)
            source = s if via == "stream" else client
            assert await source.release(job.id, job.token) == {"id": first, "state": "queued"}
            with pytest.raises(Rejected) as stale:
                await source.release(job.id, job.token)
            assert (stale.value.reason, stale.value.status) == ("stale_token", 409)
            with pytest.raises(AuthError):
                await source.release(other, 1)
            s.add_credit(2)
            got: list[Any] = []
            while len(got) < 2:
                got += await s.jobs(timeout_ms=10_000)
            assert [(j.id, j.attempt) for j in got] == [(first, 1), (second, 1)]
            for j in got:
                await s.ack(j.id, j.token)
        finally:
            await s.close()
    async with Client(secured.api[leader], token=ADMIN) as admin:
        assert (await admin.get_job(other))["state"] == "queued"


async def test_the_leader_killed_mid_stream(cluster: Cluster) -> None:
    leader = cluster.leader()
    ids = _enqueue(cluster, leader, "k", 40, lease_ms=1500)
    acked: set[int] = set()
    seen: list[int] = []
    nodes = ",".join(cluster.api[n] for n in cluster.ids)
    async with Client(nodes, retry_ms=20_000) as client:
        s = await client.stream("k", worker="w", credit=5)
        jobs = await s.jobs(timeout_ms=10_000)
        for j in jobs[:2]:
            await s.ack(j.id, j.token)
            acked.add(j.id)
        seen += [j.id for j in jobs]
        cluster.kill(leader)  # the other jobs of this first batch die with their stream
        s.add_credit(len(jobs))
        while len(acked) < len(ids):
            batch = await s.jobs(timeout_ms=15_000)
            assert batch, f"stuck after {len(acked)} acks"
            for j in batch:
                seen.append(j.id)
                await s.ack(j.id, j.token)
                acked.add(j.id)
            s.add_credit(len(batch))
        assert s.connections >= 2
        await s.close()
    assert acked == set(ids)
    lost = [i for i in jobs[2:] if seen.count(i.id) < 2]
    assert lost == [], "a job leased to the dead stream was not delivered again"
    new = cluster.leader(among=[n for n in cluster.ids if n != leader])
    async with Client(cluster.api[new]) as admin:
        stats = await admin.queue("k")
    assert stats["totals"]["succeeded"] == len(ids), stats


async def test_acks_made_together_each_get_their_own_outcome(secured: Cluster) -> None:
    """Concurrent acks leave in one ``acks`` frame (POST /v1/ack's operation): a stale token
    refuses its own ack only."""
    leader = secured.leader()
    ids = _enqueue(secured, leader, "a.acks", 3)
    async with (
        Client(secured.api[leader], token=WORKER_A) as client,
        await client.stream("a.acks", worker="w", credit=3) as s,
    ):
        jobs: list[Any] = []
        while len(jobs) < 3:
            jobs += await s.jobs(timeout_ms=10_000)
        tokens = [j.token for j in jobs[:2]] + [jobs[2].token + 1]
        outcomes = await asyncio.gather(
            *(s.ack(j.id, t) for j, t in zip(jobs, tokens, strict=True)), return_exceptions=True
        )
        assert outcomes[:2] == [None, None]
        assert isinstance(outcomes[2], Rejected) and outcomes[2].reason == "stale_token"
    async with Client(secured.api[leader], token=ADMIN) as admin:
        states = [(await admin.get_job(j.id))["state"] for j in jobs]
    assert sorted(j.id for j in jobs) == sorted(ids)
    assert states == ["succeeded", "succeeded", "leased"]


async def test_a_worker_on_the_stream_outlives_the_leader(cluster: Cluster) -> None:
    """``raftq.Worker`` (the stream by default) while the leader is killed -9: it reconnects
    and every job succeeds (a job whose lease died with the stream runs again after it).
    The worker's ``lease_ms`` is the lease it claims with: jobs the dead leader committed to
    the stream but never pushed come back that long after their claim (the default, 30 s,
    outlasts this test's wait; so did it with prefetch, once in a CI run)."""
    leader = cluster.leader()
    ids = _enqueue(cluster, leader, "w", 40)
    ran: list[int] = []
    nodes = ",".join(cluster.api[n] for n in cluster.ids)
    async with Client(nodes, retry_ms=20_000) as client:
        worker = Worker(client=client, concurrency=4, wait_ms=500, retry_in_ms=0, lease_ms=1500)

        @worker.handler("w")
        async def handle(job: Job) -> int:
            ran.append(job.payload["i"])
            await asyncio.sleep(0.02)
            return int(job.payload["i"])

        task = asyncio.create_task(worker.run())
        try:
            while len(ran) < 10:
                await asyncio.sleep(0.01)
            cluster.kill(leader)
            new = cluster.leader(among=[n for n in cluster.ids if n != leader])
            async with Client(cluster.api[new]) as reader:
                for _ in range(300):
                    stats = await reader.queue("w")
                    if stats["totals"]["succeeded"] == len(ids):
                        break
                    await asyncio.sleep(0.05)
                assert stats["totals"]["succeeded"] == len(ids), stats
                results = {(await reader.get_job(i))["result"] for i in ids}
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)
    assert results == set(range(40)) and set(ran) == set(range(40))


@pytest.fixture
def slow_elections(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose leader keeps leading through a pause of its followers of a second
    (elections of 2-4 s; with the default 400-1400 ms it steps down, and a nack to hand a job
    back finds another leader)."""
    c = Cluster.generate(tmp_path, extra_raft="election_min_ms = 2000\nelection_max_ms = 4000")
    with c:
        c.wait_ready()
        yield c


async def test_jobs_leased_for_a_stream_after_it_closed_are_handed_back(
    slow_elections: Cluster,
) -> None:
    """Bug fixed: a claim round proposed for a stream commits even if the stream closes
    first (its proposal cannot be taken back), and its jobs stayed leased to a worker that
    would never see them, for the whole lease (here 60 s; the guide promises that a worker
    stopping cleanly leaves nothing leased). The leader now hands such jobs back at once,
    released: queued again with the claim's attempt undone (the jobs have one attempt each:
    handed back with a nack, as first fixed, they went to the dead letters unrun). Real
    faults: both followers SIGSTOPped so that the round cannot commit before the close."""
    cluster = slow_elections
    leader = cluster.leader()
    followers = [n for n in cluster.ids if n != leader]
    ids = _enqueue(cluster, leader, "strand", 5, max_attempts=1)
    async with Client(cluster.api[leader]) as client:
        for nid in followers:
            cluster.kill(nid, signal.SIGSTOP)
        try:
            stream = await client.stream("strand", worker="w", credit=5, lease_ms=60_000)
            await asyncio.sleep(0.3)  # the round is proposed; it cannot commit
            await stream.close()
            await asyncio.sleep(0.3)  # the leader sees the close
        finally:
            for nid in followers:
                cluster.kill(nid, signal.SIGCONT)
        states: dict[int, Any] = {}
        for _ in range(200):
            jobs = [await client.get_job(i, linearizable=True) for i in ids]
            states = {j["id"]: (j["state"], j["attempts"]) for j in jobs}
            if all(s != "leased" for s, _ in states.values()):
                break
            await asyncio.sleep(0.05)
        assert set(states.values()) == {("queued", 0)}, states
