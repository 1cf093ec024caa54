"""TEST ONLY: the raft-side positive controls of the jepsen-style checker, as wrappers.

``install-stale-snapshot`` (``raftq.server.testfaults`` lists the faults and their fence): a
node that holds a state keeps it when the leader sends a newer snapshot, so its state is stale
while its log moves past it. The node assembly
(``raftq.node.process``) passes ``install_stale_snapshots`` to ``new_pysyncobj_engine`` only
when ``RAFTQ_TEST_FAULT`` names that fault; nothing else in the engine knows about it.

``wiped-node-votes``: the node before issue 19's wiped-voter rule. A new (or wiped) data dir
votes at once instead of holding its vote until it has caught up with a leader, and as leader
the node never lowers a follower's match index when that follower's log turns out shorter than
it acknowledged (a wiped follower still counts for the entries it lost). The assembly passes
``wiped_node_votes`` as a SyncObj hook (``new_pysyncobj_engine(syncobj_hooks=...)``) only under
that fault.

Relies on PySyncObj 0.3.17 private behaviour: none (they wrap ``Replica.install``, which our
snapshot loader ``SnapshotHooks.deserialize`` calls on the snapshot file, and the two rules of
our ``RaftqSyncObj``; ``tests/raft/test_pysyncobj_faults.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from raftq.core import Machine
from raftq.core.snapshot import write_snapshot
from raftq.raft.pysyncobj.replica import Replica
from raftq.raft.snapshot_file import open_verified, write_file

__all__ = ["install_stale_snapshots", "wiped_node_votes"]

logger = logging.getLogger(__name__)


def install_stale_snapshots(dump_path: str) -> Callable[[Replica], None]:
    """A replica hook: a snapshot received from the leader by a node that already holds a
    state is not installed; the node keeps its own (older) machine while its log moves to the
    snapshot's end, and that stale state is written over the snapshot file just received
    (``dump_path``, under its header, so its log position), as its next compaction would
    write it. Durable at once: a restart soon after would otherwise reload the leader's
    correct file and hide the fault from the checker. The first load of a node with no state
    (its own snapshot at start, or a new node's first install) is untouched (tick thread)."""

    def hook(replica: Replica) -> None:
        install = replica.install

        def install_stale(machine: Machine) -> None:
            kept = replica.machine
            if kept.applied == 0:
                install(machine)
                return
            logger.error("TEST FAULT: keeping this node's older state over the snapshot (stale)")
            info, f = open_verified(dump_path)
            f.close()
            write_file(dump_path, info.header, lambda w: write_snapshot(kept, w))
            install(kept)

        replica.install = install_stale  # type: ignore[method-assign]

    return hook


def wiped_node_votes(syncobj: Any) -> None:
    """Lift the wiped-voter rule of ``syncobj`` (a ``RaftqSyncObj``, just built): no vote hold
    for a new data dir, no lowered match index for a follower that lost entries."""
    if syncobj.raftq_vote_hold:
        logger.error("TEST FAULT: a new data dir votes before it has caught up")
    syncobj.raftq_vote_hold = False

    def keep_match_index(_node: Any, _message: dict[str, Any]) -> None:
        return None

    syncobj._forget_lost_entries = keep_match_index
