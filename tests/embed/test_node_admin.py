"""raftq.Node's admin operations (issue 20: every admin route has an embedded method too):
``configure`` locally on the leader and forwarded from a follower, ``members``, membership
refusals as the API words them, and ``transfer_leadership`` forwarded from a follower."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from raftq.errors import Rejected
from tests.embed.conftest import make_config, mounted_nodes


async def test_admin_operations_locally_and_through_a_follower(tmp_path: Path) -> None:
    config = make_config(tmp_path, 3)
    async with AsyncExitStack() as stack:
        nodes = await mounted_nodes(stack, config, network="memory")
        leader_id = await nodes["n1"].wait_for_leader(15_000)
        leader = nodes[leader_id]
        follower = next(n for n in nodes.values() if n.node_id != leader_id)

        answer = await leader.configure("q", dedup_window_ms=60_000)
        assert answer == {"queue": "q", "dedup_window_ms": 60_000, "retention_ms": 3_600_000}
        answer = await follower.configure("q", retention_ms=7_000)  # forwarded
        assert answer == {"queue": "q", "dedup_window_ms": 60_000, "retention_ms": 7_000}
        stats = await leader.queue("q")
        assert (stats["dedup_window_ms"], stats["retention_ms"]) == (60_000, 7_000)
        with pytest.raises(Rejected) as e:
            await follower.configure("q", dedup_window_ms=-1)  # refused here, as over HTTP
        assert (e.value.reason, e.value.status) == ("invalid", 400)

        members = await follower.members()
        assert sorted(m["id"] for m in members) == ["n1", "n2", "n3"]
        with pytest.raises(Rejected) as e:
            await follower.remove_member("n9")
        assert (e.value.reason, e.value.status) == ("not_member", 404)
        taken = next(m for m in members if m["id"] == leader_id)
        with pytest.raises(Rejected) as e:
            await follower.add_member(leader_id, "127.0.0.1:1", "127.0.0.1:2")
        assert e.value.status == 400 and taken["raft"] in e.value.message

        moved = await follower.transfer_leadership(follower.node_id)  # forwarded to the leader
        assert (moved["leader"], moved["previous"]) == (follower.node_id, leader_id)
        assert await follower.wait_for_leader(15_000) == follower.node_id
