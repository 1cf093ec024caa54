"""The leader compares its followers' digests at equal applied indexes
(raftq/raft/pysyncobj/digests.py): the rules, then real raft nodes in this process over the
in-memory transport, one follower's state made to differ.

Issue 20: a leader's digest differed from all four followers' at the same applied index for
over a minute, and nothing logged it or counted it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from raftq.core import Enqueue, Enqueued, NewJob
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj.digests import DigestWatch
from raftq.server.metrics import _stats_families
from tests.support.memory_cluster import memory_cluster, until

_DIGESTS = "raftq.raft.pysyncobj.digests"


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_peer_differing_at_a_known_index_is_reported_once_per_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=_DIGESTS)
    changes: list[tuple[int, bool]] = []
    watch = DigestWatch("n1", lambda raft: f"n2 ({raft})", lambda n, new: changes.append((n, new)))
    watch.record(10, "aa" * 16)
    watch.record(11, "bb" * 16)
    watch.peer("127.0.0.1:7102", 10, "aa" * 16)  # agrees
    watch.peer("127.0.0.1:7102", 12, "cc" * 16)  # an index this node has not applied: skipped
    assert (changes, _errors(caplog)) == ([], [])
    watch.peer("127.0.0.1:7102", 11, "cc" * 16)
    watch.peer("127.0.0.1:7102", 11, "cc" * 16)  # every heartbeat: still one line
    assert changes == [(1, True)]
    assert _errors(caplog) == [
        "node n1: raft peer n2 (127.0.0.1:7102) has digest cccccccccccc at applied index 11, "
        "this node bbbbbbbbbbbb: the replicas diverged; run `raftq status` to see which node "
        "differs from the others, then stop that node, move its data dir aside and start it "
        'again empty so that it catches up from the leader (docs/operations.md, "Digests differ")'
    ]
    watch.peer("127.0.0.1:7102", 10, "aa" * 16)
    assert changes == [(1, True), (0, False)]
    assert "agrees again" in caplog.records[-1].getMessage()


async def _enqueue(node: RaftNode, payload: bytes) -> None:
    result = await node.submit(
        Enqueue(now_ms=node.now_ms(), queue="q", jobs=(NewJob(payload=payload),))
    )
    assert isinstance(result, Enqueued)


async def test_the_leader_logs_and_counts_a_follower_whose_digest_differs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        await _enqueue(leader, b"same everywhere")
        # A healthy cluster: followers report their digests, none differs.
        await until(
            lambda: all(n.status().digest == leader.status().digest for n in cluster.nodes.values())
        )
        assert leader.stats.snapshot().digest_mismatches == 0
        follower = next(n for n in cluster.nodes.values() if n is not leader)
        # The follower's state goes wrong (as if it had applied something the others did not):
        # every later digest of it differs from the leader's.
        with follower.read() as m:
            m.digest = bytes(len(m.digest))
        await _enqueue(leader, b"after")
        await until(lambda: leader.stats.snapshot().digest_mismatch_peers == 1)
        await _enqueue(leader, b"and again")
        reading = leader.stats.snapshot()
        assert (reading.digest_mismatches, reading.digest_mismatch_peers) == (1, 1)
        metrics = {f.name: f.samples[0].value for f in _stats_families(leader.stats)}
    errors = _errors(caplog)
    raft = cluster.config.node(follower.node_id).raft
    assert len(errors) == 1
    assert errors[0].startswith(
        f"node {leader.node_id}: raft peer {follower.node_id} ({raft}) has digest "
    )
    assert metrics["raftq_raft_digest_mismatches"] == 1
    assert metrics["raftq_raft_digest_mismatch_peers"] == 1
