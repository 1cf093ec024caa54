"""Three real raft nodes in this process over the in-memory transport
(raftq/raft/pysyncobj/memory_transport.py): replication and a partitioned leader."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftq.core import Enqueue, Enqueued, NewJob
from raftq.errors import NoLeader, NotLeader, OutcomeUnknown
from raftq.raft.node import RaftNode
from tests.support.memory_cluster import memory_cluster, until


async def _enqueue(node: RaftNode, payload: bytes, timeout_ms: int | None = None) -> int:
    result = await node.submit(
        Enqueue(now_ms=node.now_ms(), queue="q", jobs=(NewJob(payload=payload),)), timeout_ms
    )
    assert isinstance(result, Enqueued)
    return result.ids[0]


def _has_job(node: RaftNode, job_id: int, payload: bytes) -> bool:
    with node.read() as m:
        job = m.jobs.get(job_id)
        return job is not None and job.payload == payload


def _payloads(node: RaftNode) -> set[bytes]:
    with node.read() as m:
        return {job.payload for job in m.jobs.values()}


async def test_an_enqueue_on_the_leader_is_applied_on_every_node(tmp_path: Path) -> None:
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        job_id = await _enqueue(leader, b"one")
        await until(lambda: all(_has_job(n, job_id, b"one") for n in cluster.nodes.values()))
        status = leader.status()
        assert status.role == "leader"
        assert all(peer.reachable for peer in status.nodes)


async def test_a_partitioned_leader_is_replaced_and_its_proposals_fail(tmp_path: Path) -> None:
    async with memory_cluster(tmp_path) as cluster:
        old = await cluster.leader()
        acked = await _enqueue(old, b"acked")

        cluster.partition(old.node_id)
        others = [i for i in cluster.nodes if i != old.node_id]
        new = await cluster.leader(others)
        assert new.node_id != old.node_id
        assert new.status().term > old.status().term
        # The enqueue acknowledged before the partition survives on the new majority: once the
        # new leader commits an entry of its term, everything before it is applied there too
        # (it may have been elected before it learned that the acked entry was committed).
        assert await _enqueue(new, b"after") > acked
        assert _has_job(new, acked, b"acked")

        # The old leader cannot commit: its proposal fails, definitely or as unknown.
        with pytest.raises((NotLeader, NoLeader, OutcomeUnknown)):
            await _enqueue(old, b"lost", timeout_ms=3_000)
        assert all(b"lost" not in _payloads(cluster.nodes[i]) for i in others)

        # Healed, it follows the new leader and catches up with the majority's state.
        cluster.heal(old.node_id)
        await until(lambda: old.leader_id() == new.node_id)
        await until(lambda: old.status().digest == new.status().digest)
        assert _has_job(old, acked, b"acked")
