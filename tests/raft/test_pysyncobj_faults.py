"""The raft-side test faults as wrappers (raftq/raft/pysyncobj/faults.py): a replica wrapped
with ``install-stale-snapshot`` installs its first loaded snapshot again at every later load
(an unwrapped one installs what it is given); a SyncObj wrapped with ``wiped-node-votes`` has
no wiped-voter rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftq.core import Machine
from raftq.core.snapshot import write_snapshot
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj.engine import PySyncObjEngine
from raftq.raft.pysyncobj.faults import install_stale_snapshots, wiped_node_votes
from raftq.raft.pysyncobj.replica import Replica
from raftq.raft.pysyncobj.snapshot_hooks import load_machine
from raftq.raft.snapshot_file import RaftHeader, open_verified, write_file
from tests.raft.test_snapshot_file import _machine
from tests.support.memory_cluster import memory_cluster, until


def _replica() -> Replica:
    def fatal(error: BaseException) -> None:
        raise AssertionError(f"unexpected fatal: {error!r}")

    return Replica(lambda: None, fatal)


def test_a_wrapped_replica_keeps_its_older_state_and_writes_it(tmp_path: Path) -> None:
    """Stale in memory and on disk at once: the snapshot file just received keeps its header
    (its log position) but holds the node's older state, as its next compaction would write
    it; a restart right after would otherwise reload the leader's file and the positive
    control would go unseen. A node with no state yet installs what it is given."""
    dump = tmp_path / "raft.dump"
    replica = _replica()
    install_stale_snapshots(str(dump))(replica)
    first, second = _machine(10), _machine(30)
    replica.install(first)  # no state yet: installed
    assert replica.machine is first
    header = RaftHeader(last=(b"\x00", 30, 2), prev=(b"\x00", 29, 2), cluster=("127.0.0.1:1",))
    write_file(str(dump), header, lambda w: write_snapshot(second, w))  # received
    replica.install(second)
    assert replica.machine is first  # stale: the newer snapshot was not installed
    info, f = open_verified(str(dump))
    with f:
        assert info.header == header
        assert load_machine(info, f).digest == first.digest != second.digest


def test_an_unwrapped_replica_installs_each_snapshot() -> None:
    replica = _replica()
    first, second = Machine(), Machine()
    replica.install(first)
    replica.install(second)
    assert replica.machine is second


async def test_wiped_node_votes_lifts_the_vote_hold_and_keeps_lost_entries_counted(
    tmp_path: Path,
) -> None:
    """``wiped-node-votes``: a wrapped SyncObj votes at once although its data dir is new, and
    as leader keeps a follower's match index when the follower's log turns out shorter than
    it acknowledged; an unwrapped leader lowers it."""
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        so = _syncobj(leader)
        follower = next(iter(so.otherNodes))
        await until(lambda: so._SyncObj__raftMatchIndex.get(follower, 0) > 1)
        lost = {"type": "next_node_idx", "success": False, "reset": True, "next_node_idx": 1}
        held = so._SyncObj__raftMatchIndex[follower]
        wiped_node_votes(so)
        so._forget_lost_entries(follower, lost)
        assert so._SyncObj__raftMatchIndex[follower] == held  # the lost entries still count
        other = _syncobj(next(n for i, n in cluster.nodes.items() if i != leader.node_id))
        other.raftq_vote_hold = True  # as a new data dir starts
        wiped_node_votes(other)
        assert not other.raftq_vote_hold
    async with memory_cluster(tmp_path / "control") as cluster:
        leader = await cluster.leader()
        so = _syncobj(leader)
        follower = next(iter(so.otherNodes))
        await until(lambda: so._SyncObj__raftMatchIndex.get(follower, 0) > 1)
        so._forget_lost_entries(follower, lost)
        assert so._SyncObj__raftMatchIndex[follower] == 0  # unwrapped: lowered


def _syncobj(node: RaftNode) -> Any:
    assert isinstance(node.engine, PySyncObjEngine) and node.engine.syncobj is not None
    return node.engine.syncobj
