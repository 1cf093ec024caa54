"""TEST ONLY: the raft-side positive controls of the jepsen-style checker, as wrappers.

``install-stale-snapshot`` (``raftq.server.testfaults`` lists the faults and their fence): every
snapshot a node loads after its first one is replaced by that first (older) one, so the node
installs a stale snapshot over a state that moved past it. The node assembly
(``raftq.node.process``) passes ``install_stale_snapshots`` to ``new_pysyncobj_engine`` only
when ``RAFTQ_TEST_FAULT`` names that fault; nothing else in the engine knows about it.

``wiped-node-votes``: the node before issue 19's wiped-voter rule. A new (or wiped) data dir
votes at once instead of holding its vote until it has caught up with a leader, and as leader
the node never lowers a follower's match index when that follower's log turns out shorter than
it acknowledged (a wiped follower still counts for the entries it lost). The assembly passes
``wiped_node_votes`` as a SyncObj hook (``new_pysyncobj_engine(syncobj_hooks=...)``) only under
that fault.

Relies on PySyncObj 0.3.17 private behaviour: ``SyncObjConsumer``'s ``_syncObj`` attribute (as
``replica.py`` does; ``tests/raft/test_pysyncobj_private.py``). Otherwise they wrap
``Replica.install``, which our snapshot loader ``SnapshotHooks.deserialize`` calls, and the two
rules of our ``RaftqSyncObj`` (``tests/raft/test_pysyncobj_faults.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from raftq.core import Machine
from raftq.raft.pysyncobj.replica import Replica

__all__ = ["install_stale_snapshots", "wiped_node_votes"]

logger = logging.getLogger(__name__)


def install_stale_snapshots(replica: Replica) -> None:
    """Make ``replica`` install its first loaded snapshot's machine again at every later
    load (tick thread only), and make that stale state durable: a snapshot is forced over the
    next entries applied on it, as the node's own compaction would write it sooner or later.
    Without that, a restart soon after the install would reload the leader's (correct)
    snapshot file and hide the fault from the checker."""
    install = replica.install
    on_applied = replica._on_applied
    first: list[Machine] = []
    force_for = 0  # entries still to apply with a forced compaction

    def install_stale(machine: Machine) -> None:
        nonlocal force_for
        if not first:
            first.append(machine)
            install(machine)
            return
        logger.error("TEST FAULT: installing the first snapshot's state again (stale)")
        install(first[0])
        force_for = FORCED_ENTRIES

    def applied() -> None:
        nonlocal force_for
        on_applied()
        if force_for > 0:
            force_for -= 1
            # PySyncObj drops a forced compaction that finds no entry applied since the last
            # snapshot, so it is asked again at each of the next few entries.
            replica._syncObj.forceLogCompaction()

    replica.install = install_stale  # type: ignore[method-assign]
    replica._on_applied = applied


FORCED_ENTRIES = 20


def wiped_node_votes(syncobj: Any) -> None:
    """Lift the wiped-voter rule of ``syncobj`` (a ``RaftqSyncObj``, just built): no vote hold
    for a new data dir, no lowered match index for a follower that lost entries."""
    if syncobj.raftq_vote_hold:
        logger.error("TEST FAULT: a new data dir votes before it has caught up")
    syncobj.raftq_vote_hold = False

    def keep_match_index(_node: Any, _message: dict[str, Any]) -> None:
        return None

    syncobj._forget_lost_entries = keep_match_index
