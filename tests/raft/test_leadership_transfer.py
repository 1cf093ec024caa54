"""Leadership transfer (``RaftNode.transfer_leadership``, PySyncObj's TimeoutNow) on three real
raft nodes in this process over the in-memory transport: it moves leadership to the node asked
for in one election, keeps every acknowledged entry, and refuses, with the leader unchanged, a
target that is not caught up."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from raftq.core import Enqueue, Enqueued, NewJob
from raftq.errors import NotLeader, TransferRefused
from raftq.raft.node import RaftNode
from tests.support.memory_cluster import memory_cluster, until


async def _enqueue(node: RaftNode, payload: bytes) -> int:
    result = await node.submit(
        Enqueue(now_ms=node.now_ms(), queue="q", jobs=(NewJob(payload=payload),))
    )
    assert isinstance(result, Enqueued)
    return result.ids[0]


async def test_leadership_moves_to_the_node_asked_for_in_one_term(tmp_path: Path) -> None:
    async with memory_cluster(tmp_path) as cluster:
        old = await cluster.leader()
        acked = await _enqueue(old, b"before")
        target = next(i for i in cluster.nodes if i != old.node_id)
        term = old.status().term
        # The target must have the leader's last entry: wait until it applied the enqueue.
        await until(
            lambda: cluster.nodes[target].status().applied_index >= old.status().applied_index
        )

        assert await old.transfer_leadership(target) == target

        new = await cluster.leader()
        assert new.node_id == target
        assert new.status().term == term + 1  # one election, won at once
        assert await _enqueue(new, b"after") > acked
        with new.read() as m:
            assert m.jobs[acked].payload == b"before"
        with pytest.raises(NotLeader) as e:
            await old.transfer_leadership(None)
        assert e.value.leader == target


async def test_a_target_cut_off_is_refused_and_the_leader_stays(tmp_path: Path) -> None:
    async with memory_cluster(tmp_path) as cluster:
        old = await cluster.leader()
        target = next(i for i in cluster.nodes if i != old.node_id)
        cluster.partition(target)
        await _enqueue(old, b"the target misses this one")
        term = old.status().term

        with pytest.raises(TransferRefused, match="not connected and fully caught up"):
            await old.transfer_leadership(target)

        assert old.is_leader() and old.status().term == term
        with pytest.raises(TransferRefused, match="not another node"):
            await old.transfer_leadership(old.node_id)


async def test_a_target_with_slow_ticks_still_takes_over(tmp_path: Path) -> None:
    """Issue 19 (a transfer under load: TimeoutNow sent, nobody took over within 10 s): the
    election hold restarts a follower's election timer after a full GC pass and after every
    tick longer than half the minimum election timeout. One pass ending right after TimeoutNow
    was read cancelled the immediate election it asks for, and the slow ticks that followed
    (PySyncObj ignores the old leader's heartbeats meanwhile) kept pushing the election away."""
    async with memory_cluster(tmp_path) as cluster:
        old = await cluster.leader()
        target = next(i for i in cluster.nodes if i != old.node_id)
        node = cluster.nodes[target]
        so = node.engine.syncobj  # type: ignore[attr-defined]  # PySyncObjEngine
        stall_s = cluster.config.raft.election_min_ms / 2000
        so.addOnTickCallback(lambda: time.sleep(stall_s * 1.2))  # tick thread: every tick slow
        transport = so._SyncObj__transport
        deliver = transport._onMessageReceived

        def received(peer: object, message: object) -> None:  # the target's tick thread
            deliver(peer, message)
            if isinstance(message, dict) and message.get("type") == "timeout_now":
                gc.collect()  # a full pass ends: the GC guard restarts every election timer

        transport._onMessageReceived = received
        term = old.status().term
        await _enqueue(old, b"before")

        assert await old.transfer_leadership(target) == target

        assert node.is_leader() and node.status().term == term + 1
