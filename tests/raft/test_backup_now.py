"""``RaftNode.backup`` on real raft nodes in this process (the in-memory transport): the leader
writes its state as of the call, after a barrier, with the compaction's forked writer but apart
from the compactions (issue 20 item 5: a backup was a copy of the last compaction, missing on a
young node and up to 5 minutes stale on an older one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftq.core import Enqueue, Enqueued, NewJob
from raftq.errors import NotLeader
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj.snapshot_hooks import load_machine
from tests.support.memory_cluster import memory_cluster


async def _enqueue(node: RaftNode, payload: bytes) -> int:
    result = await node.submit(
        Enqueue(now_ms=node.now_ms(), queue="q", jobs=(NewJob(payload=payload),))
    )
    assert isinstance(result, Enqueued)
    return result.ids[0]


async def test_the_leader_writes_its_state_as_of_now_and_a_follower_refuses(
    tmp_path: Path,
) -> None:
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        ids = [await _enqueue(leader, b"p%d" % i) for i in range(20)]
        applied = leader.status().applied_index
        data_dir = cluster.config.node_data_dir(leader.node_id)
        before = sorted(os.listdir(data_dir))
        assert "raft.dump" not in before  # no compaction yet: what the old backup copied

        info, f = await leader.backup()
        with f:
            machine = load_machine(info, f)
        # The barrier's Tick comes after every write acknowledged before the call.
        assert info.header.last[1] > applied
        assert sorted(machine.jobs) == ids
        assert {machine.jobs[i].payload for i in ids} == {b"p%d" % i for i in range(20)}
        # Nothing is left in the data dir, and the compaction state is untouched.
        assert sorted(os.listdir(data_dir)) == before

        follower = next(n for n in cluster.nodes.values() if n is not leader)
        with pytest.raises(NotLeader):
            await follower.backup()
