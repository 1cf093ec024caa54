"""The operations ``raftq.Node`` gained to offer the client's full surface
(``raftq.client.protocol.Operations``): ``ack_many`` and ``cluster_of``, on a single node and
forwarded from a follower of a three-node cluster mounted on aiohttp apps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from raftq import Node
from raftq.errors import Rejected, TransportError
from tests.embed.conftest import make_config, mounted_nodes


@asynccontextmanager
async def single(tmp_path: Path) -> AsyncIterator[Node]:
    node = Node(make_config(tmp_path, 1), "n1")
    async with node:
        await node.wait_for_leader(10_000)
        yield node


async def test_ack_many_answers_each_ack_and_validates_all_first(tmp_path: Path) -> None:
    async with single(tmp_path) as node:
        await node.enqueue_many("q", [{"payload": i} for i in range(3)])
        a, b, c = await node.claim("q", worker="w", max=3)
        with pytest.raises(Rejected) as bad:  # one malformed item: nothing is acked
            await node.ack_many([(a.id, a.token, None), (b.id, "x", None)])  # type: ignore[list-item]
        assert (bad.value.reason, bad.value.status) == ("invalid", 400)
        assert "acks[1].token" in str(bad.value)
        assert (await node.get_job(a.id))["state"] == "leased"
        with pytest.raises(Rejected, match=r"acks: must hold 1\.\.\d+ items, got 0"):
            await node.ack_many([])

        outcomes = await node.ack_many(
            [(a.id, a.token, {"r": 1}), (b.id, b.token + 100, None), (c.id, c.token, None)]
        )
        assert outcomes[0] is None and outcomes[2] is None
        stale = outcomes[1]
        assert isinstance(stale, Rejected)
        assert (stale.reason, stale.status) == ("stale_token", 409)  # that ack alone
        assert (await node.get_job(a.id))["result"] == {"r": 1}
        assert (await node.get_job(b.id))["state"] == "leased"
        assert (await node.get_job(c.id))["state"] == "succeeded"


async def test_cluster_of_self_answers_locally_and_unknown_ids_are_refused(
    tmp_path: Path,
) -> None:
    async with single(tmp_path) as node:
        mine = await node.cluster()
        by_id = await node.cluster_of("n1")
        by_address = await node.cluster_of(node.config.node("n1").api)
        for view in (by_id, by_address):
            assert view["self"]["id"] == "n1" and view["leader"] == mine["leader"] == "n1"
        with pytest.raises(TransportError, match="no node 'n9' in the cluster"):
            await node.cluster_of("n9")


async def test_follower_forwards_ack_many_and_asks_other_nodes(tmp_path: Path) -> None:
    config = make_config(tmp_path, 3)
    async with AsyncExitStack() as stack:
        nodes = await mounted_nodes(stack, config)
        leader_id = await nodes["n1"].wait_for_leader(15_000)
        follower = next(n for n in nodes.values() if n.node_id != leader_id)
        await follower.wait_for_leader(15_000)

        await follower.enqueue_many("q", [{"payload": i} for i in range(2)])
        a, b = await follower.claim("q", worker="w", max=2)
        outcomes = await follower.ack_many([(a.id, a.token, "done"), (b.id, b.token + 7, None)])
        assert outcomes[0] is None
        assert isinstance(outcomes[1], Rejected) and outcomes[1].reason == "stale_token"
        info = await follower.get_job(a.id, linearizable=True)
        assert (info["state"], info["result"]) == ("succeeded", "done")

        by_id = await follower.cluster_of(leader_id)  # over HTTP, under the mount prefix
        assert by_id["self"]["id"] == leader_id and by_id["self"]["role"] == "leader"
        by_address = await follower.cluster_of(config.node(leader_id).api)
        assert by_address["self"]["id"] == leader_id
        assert (await follower.cluster_of(follower.node_id))["self"]["id"] == follower.node_id
