"""``SyncClient.stream``: the worker stream, blocking, through a follower (the relay): jobs
pushed up to the credit, acked, heartbeated and nacked as with ``Client.stream``."""

from __future__ import annotations

import asyncio

import pytest

from raftq.client import Client, SyncClient
from raftq.errors import Rejected


async def test_the_blocking_stream(start) -> None:
    async with start(followers=1) as c:
        async with Client(c.csv("n1")) as client:
            ids = await client.enqueue_many("q", [{"payload": i} for i in range(3)])

        def work() -> None:
            with SyncClient(c.csv("n2")) as sync, sync.stream("q", worker="w", credit=2) as s:
                got = []
                while len(got) < 2:
                    got += s.jobs(timeout_ms=5000)
                assert s.jobs(timeout_ms=200) == []  # the credit is used up
                assert s.heartbeat(got[0].id, got[0].token, lease_ms=60_000).lease_expires_ms > 0
                s.ack(got[0].id, got[0].token, "done")
                assert s.nack(got[1].id, got[1].token, retry_in_ms=0)["state"] == "queued"
                with pytest.raises(Rejected) as refused:
                    s.ack(got[1].id, got[1].token)
                assert (refused.value.reason, refused.value.status) == ("stale_token", 409)
                s.add_credit(2)
                more = []
                while len(more) < 2:
                    more += s.jobs(timeout_ms=5000)
                assert sorted(j.id for j in [got[0], *more]) == sorted(ids)

        await asyncio.to_thread(work)
