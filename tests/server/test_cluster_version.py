"""``POST /v1/cluster/version`` asks the replicated membership, not the config's nodes: three
real ``RaftNode``s on the in-memory network, each behind its own API server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from raftq.core.codec import LOG_VERSION
from tests.conftest import serve_raft_nodes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def test_enabling_a_version_asks_the_members_not_a_removed_node_of_the_config(
    tmp_path: Path,
) -> None:
    """Issue 19: a node removed from the cluster (still in everyone's TOML, now stopped) made
    the leader refuse `raftq upgrade enable` with "node n3 did not answer"."""
    gone: set[str] = set()

    def prepare(label: str, app: web.Application) -> None:
        @web.middleware
        async def stopped(request: web.Request, handler: Handler) -> web.StreamResponse:
            if label in gone:  # this node's process has stopped
                raise web.HTTPServiceUnavailable()
            return await handler(request)

        app.middlewares.append(stopped)

    async with serve_raft_nodes(tmp_path, followers=2, prepare=prepare) as (nodes, addresses):
        leader, removed = nodes["n1"], nodes["n3"]
        raft = removed.config.node(removed.node_id).raft
        await leader.change_member("remove", raft)
        assert raft not in {m.raft for m in leader.status().members}
        gone.add("n3")
        async with aiohttp.ClientSession() as session:
            url = f"http://{addresses['n1']}/v1/cluster/version"
            async with session.post(url, json={"version": LOG_VERSION}) as resp:
                body = await resp.json()
                assert resp.status == 200, body
        assert body["enabled_version"] == LOG_VERSION
