"""Forwarding to the leader between real servers, and cluster outcomes as 503s."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from raftq.core import Enqueue
from raftq.errors import NoLeader, NotLeader, OutcomeUnknown, Overloaded
from raftq.server import ServerSettings, create_app
from raftq.server.auth import Security
from tests.support.local_node import LocalNode, serve


async def test_follower_forwards_writes_to_the_leader(start):
    async with start(followers=2) as h:
        r = await h.post(
            "/v1/queues/q/jobs",
            {"payload": {"x": 1}},
            headers={"X-Request-Id": "fwd-1"},
            node="n2",
        )
        assert r.status == 201, r.body
        assert r.headers["X-Raftq-Leader"] == h.addresses["n1"]
        assert r.headers["X-Raftq-Node"] == "n1"  # served by the leader
        cmd = h.node.log[-1]
        assert isinstance(cmd, Enqueue)
        assert cmd.request_id == "fwd-1"  # the request id travels with the forward
        # Claim on the other follower, ack on the leader (issue 3 section 5, in miniature).
        r = await h.post("/v1/queues/q/claim", {"worker": "w"}, node="n3", fmt="msgpack")
        assert r.status == 200
        job = r.body["jobs"][0]
        assert job["payload"] == {"x": 1}
        r = await h.post("/v1/jobs/1/ack", {"token": job["token"]}, node="n1")
        assert r.status == 200
        # A stale-token ack is refused from any node.
        for nid in ("n1", "n2", "n3"):
            r = await h.post("/v1/jobs/1/ack", {"token": job["token"] - 1}, node=nid)
            assert r.status == 409
            assert r.body["error"]["code"] == "stale_token"


async def test_follower_forwards_errors_untouched(start, err):
    async with start(followers=1) as h:
        r = await h.post("/v1/queues/q/jobs", {"payload": 1, "priority": 99}, node="n2")
        assert r.status == 400
        assert "priority" in err(r)[1]
        r = await h.post("/v1/queues/q/jobs", raw=b"\xc1", fmt="msgpack", node="n2")
        assert r.status == 400
        assert r.headers["Content-Type"].startswith("application/msgpack")
        assert r.body["error"]["code"] == "malformed"


async def test_reads_are_local_on_followers(start):
    async with start(followers=1) as h:
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        h.nodes["n2"].leader = None  # a follower that lost the leader still reads locally
        assert (await h.get("/v1/jobs/1", node="n2")).status == 200
        assert (await h.get("/v1/queues", node="n2")).status == 200
        assert (await h.get("/v1/queues/q", node="n2")).status == 200
        assert (await h.get("/v1/cluster", node="n2")).body["leader"] is None


async def test_linearizable_read_goes_through_the_leader(start, err):
    async with start(followers=1) as h:
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        before = len(h.node.log)
        r = await h.get("/v1/jobs/1?consistency=linearizable", node="n2")
        assert r.status == 200
        assert r.headers["X-Raftq-Node"] == "n1"
        assert len(h.node.log) == before + 1  # the barrier (a tick) went through the log
        r = await h.get("/v1/jobs/1?consistency=linearizable", node="n1")
        assert r.status == 200
        h.nodes["n2"].leader = None
        r = await h.get("/v1/jobs/1?consistency=linearizable", node="n2")
        assert r.status == 503
        assert err(r)[0] == "no_leader"
        assert r.headers["Retry-After"] == "1"


async def test_forwarded_request_is_never_forwarded_again(start, err):
    """Without a secret, nodes relay with X-Raftq-Hop: a request carrying it is served where it
    lands or refused, never relayed again (with a secret, the signed marker does the same: see
    test_two_nodes_that_each_believe_the_other_leads_do_not_loop); an unsigned
    X-Raftq-Forwarded is a 401."""
    async with start(followers=1) as h:
        r = await h.post(
            "/v1/queues/q/jobs",
            {"payload": 1},
            headers={"X-Raftq-Hop": "n9"},
            node="n2",
        )
        assert r.status == 503
        assert err(r)[0] == "not_leader"
        assert r.headers["Retry-After"] == "1"
        assert r.headers["X-Raftq-Leader"] == h.addresses["n1"]
        r = await h.post(
            "/v1/queues/q/jobs",
            {"payload": 1},
            headers={"X-Raftq-Forwarded": "n9"},
            node="n2",
        )
        assert r.status == 401
        assert err(r)[0] == "unauthorized"
        assert h.node.log == []


@pytest.mark.parametrize("secret", [None, "cluster-secret-0123456789"])
async def test_two_nodes_that_each_believe_the_other_leads_do_not_loop(secret):
    """One hop at most, with the signed marker (a secret) and with the hop marker (none)."""
    a = LocalNode("a", leader="b")
    b = a.follower("b")
    b.leader = "a"
    sec = Security(secret=secret)
    async with (
        serve(create_app(a, security=sec)) as addr_a,
        serve(create_app(b, security=sec)) as addr_b,
    ):
        a.set_address("a", addr_a)
        a.set_address("b", addr_b)
        url = f"http://{addr_a}/v1/queues/q/jobs"
        async with aiohttp.ClientSession() as s, s.post(url, json={"payload": 1}) as r:
            assert r.status == 503
            body = await r.json()
            assert body["error"]["code"] == "not_leader"


async def test_submit_not_leader_after_the_check_forwards(start):
    async with start(followers=1) as h:
        # n1 believes it leads, but leadership moved to n2 just before submit.
        h.nodes["n1"].inject(NotLeader("n2"))
        h.nodes["n2"].leader = "n2"
        r = await h.post("/v1/queues/q/jobs", {"payload": 1}, node="n1")
        assert r.status == 201
        assert r.headers["X-Raftq-Node"] == "n2"


async def test_leader_unreachable_is_a_definite_503(start, err):
    async with start(followers=1) as h:
        h.node.set_address("n1", "127.0.0.1:1")  # nothing listens there
        r = await h.post("/v1/queues/q/jobs", {"payload": 1}, node="n2")
        assert r.status == 503
        assert err(r)[0] == "no_leader"
        assert r.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NoLeader("no leader"), "no_leader"),
        (NotLeader(None), "no_leader"),
        (Overloaded("full"), "overloaded"),
        (OutcomeUnknown("timed out"), "outcome_unknown"),
    ],
)
async def test_cluster_outcomes_are_503_with_retry_after(start, err, error, code):
    async with start(settings=ServerSettings(leader_wait_ms=0)) as h:
        h.node.inject(error)
        r = await h.post("/v1/queues/q/jobs", {"payload": 1})
        assert r.status == 503
        assert err(r)[0] == code
        assert r.headers["Retry-After"] == "1"


async def test_no_leader_known_on_a_follower(start, err):
    async with start(followers=1, settings=ServerSettings(leader_wait_ms=300)) as h:
        h.nodes["n2"].leader = None
        t0 = time.monotonic()
        r = await h.post("/v1/queues/q/jobs", {"payload": 1}, node="n2")
        assert r.status == 503
        assert err(r)[0] == "no_leader"
        assert r.headers["Retry-After"] == "1"
        assert "X-Raftq-Leader" not in r.headers
        assert 0.25 <= time.monotonic() - t0 < 3  # waited leader_wait_ms for an election


async def test_a_write_during_an_election_waits_for_the_new_leader(start):
    async with start(followers=1) as h:
        h.nodes["n2"].leader = None

        async def elect() -> None:
            await asyncio.sleep(0.3)
            h.nodes["n2"].leader = "n1"

        election = asyncio.create_task(elect())
        r = await h.post("/v1/queues/q/jobs", {"payload": 1}, node="n2")
        await election
        assert r.status == 201
        assert r.headers["X-Raftq-Node"] == "n1"


async def test_a_definite_no_leader_from_submit_is_retried(start):
    async with start() as h:
        h.node.inject(NoLeader("entry discarded by a new leader"))
        r = await h.post("/v1/queues/q/jobs", {"payload": 1})
        assert r.status == 201
        assert h.node.machine.queue_stats("q").depth["queued"] == 1
