"""A drain ends the worker streams on the drained node with a ``draining`` error frame (the
leader's own streams, and the ones a follower relays), and the stream of a ``Client`` goes on
(on another node when the leader was drained). Three real ``RaftNode``s on the in-memory
network, each behind its own API server with a ``Drain`` mounted as ``raftq serve`` does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web

from raftq.client import Client
from raftq.server.drain import DRAIN_KEY, Drain
from tests.conftest import serve_raft_nodes

SUB = {"op": "subscribe", "queues": ["q"], "worker": "w", "credit": 5}


def _mount_drain(_label: str, app: web.Application) -> None:
    app[DRAIN_KEY] = Drain(lambda: None)  # the process "stops": its server stays for the test


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.BINARY, msg
    frame: dict[str, Any] = msgpack.unpackb(msg.data)
    return frame


@pytest.mark.parametrize("drained", ["n1", "n2"])  # the leader, a follower relaying
async def test_a_drain_ends_the_streams_with_draining(tmp_path: Path, drained: str) -> None:
    async with (
        serve_raft_nodes(tmp_path, followers=2, prepare=_mount_drain) as (nodes, addresses),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://{addresses[drained]}/v1/stream") as ws,
        Client([addresses[drained], *[addresses[n] for n in nodes if n != drained]]) as client,
    ):
        url = f"http://{addresses[drained]}"
        # The raw stream takes the first job and has no credit left: the second can only go
        # to the client's stream.
        await ws.send_bytes(msgpack.packb({**SUB, "credit": 1}))
        job_id = await client.enqueue("q", b"one")
        first = await _frame(ws)
        assert first["op"] == "jobs" and [j["id"] for j in first["jobs"]] == [job_id], first
        async with await client.stream("q", worker="w2", credit=5) as stream:
            # The client's stream is on the leader (n1) whichever node it was given first.
            assert stream.node == f"http://{addresses['n1']}"
            async with session.post(f"{url}/v1/node/drain") as resp:
                assert resp.status == 200, await resp.text()
            frame = await _frame(ws)
            assert frame["op"] == "error" and frame["error"]["reason"] == "draining", frame
            closing = await ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            # the client's stream goes on: on another node when the leader was drained, and
            # untouched when a follower was (it never went through it)
            second = await client.enqueue("q", b"two")
            jobs = await stream.jobs(timeout_ms=10_000)
            assert [j.id for j in jobs] == [second]
            if drained == "n1":
                assert stream.connections >= 2 and stream.node != url
            else:
                assert stream.connections == 1
            await stream.ack(jobs[0].id, jobs[0].token)
            await asyncio.sleep(0)
