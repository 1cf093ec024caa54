"""A drain ends the long-polls already waiting on the node at once (``Drain.start``,
``Api._claim_until_drained``): 503 ``draining``, and the client claims on another node, with
no job lost or leased twice. Three real ``RaftNode``s on the in-memory network, each behind its
own API server with a ``Drain`` mounted as ``raftq serve`` does."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from raftq.client import Client
from raftq.raft.node import RaftNode
from raftq.server.drain import DRAIN_KEY, Drain
from tests.conftest import serve_raft_nodes
from tests.support.memory_cluster import until

_WAIT_MS = 20_000  # the long-poll's own wait: a drain must end it long before


def _mount_drain(_label: str, app: web.Application) -> None:
    app[DRAIN_KEY] = Drain(lambda: None)  # the process "stops": its server stays for the test


def _polls(node: RaftNode) -> int:
    return len(node._waiters._waiters)  # long-polls waiting on this node


async def _drain_and_claim_elsewhere(
    nodes: dict[str, RaftNode], addresses: dict[str, str], drained: str, ask: list[str]
) -> None:
    leader = nodes["n1"]
    client = Client([addresses[n] for n in ask], retry_ms=10_000)
    url = f"http://{addresses[drained]}"
    try:
        async with aiohttp.ClientSession() as session:
            raw = asyncio.create_task(
                session.post(f"{url}/v1/queues/q/claim", json={"worker": "r", "wait_ms": _WAIT_MS})
            )
            poll = asyncio.create_task(client.claim("q", worker="w", wait_ms=_WAIT_MS))
            await until(lambda: _polls(leader) == 2, 10)  # both wait (on the leader)
            started = time.monotonic()
            async with session.post(f"{url}/v1/node/drain") as resp:
                assert resp.status == 200, await resp.text()
            async with await asyncio.wait_for(raw, 5) as resp:  # not at its own 20 s
                body = await resp.json()
                assert resp.status == 503 and body["error"]["code"] == "draining", body
            assert time.monotonic() - started < 5
        # The client went to another node: it gets the job enqueued now, leased once.
        job_id = await client.enqueue("q", b"job")
        jobs = await asyncio.wait_for(poll, 10)
        assert [j.id for j in jobs] == [job_id]
        new = next(n for n in nodes.values() if n.is_leader())
        await new.barrier()
        with new.read() as m:
            assert m.jobs[job_id].attempts == 1
    finally:
        await client.close()


async def test_a_drained_leader_ends_its_long_polls_and_the_client_claims_elsewhere(
    tmp_path: Path,
) -> None:
    async with serve_raft_nodes(tmp_path, followers=2, prepare=_mount_drain) as (
        nodes,
        addresses,
    ):
        await _drain_and_claim_elsewhere(nodes, addresses, "n1", ["n1", "n2", "n3"])


async def test_a_drained_follower_ends_the_long_polls_it_forwarded(tmp_path: Path) -> None:
    async with serve_raft_nodes(tmp_path, followers=2, prepare=_mount_drain) as (
        nodes,
        addresses,
    ):
        await _drain_and_claim_elsewhere(nodes, addresses, "n2", ["n2", "n3"])
