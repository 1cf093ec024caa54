"""TEST ONLY: the raft-side positive control of the jepsen-style checker, as a wrapper.

``install-stale-snapshot`` (``raftq.server.testfaults`` lists the faults and their fence): every
snapshot a node loads after its first one is replaced by that first (older) one, so the node
installs a stale snapshot over a state that moved past it. The node assembly
(``raftq.node.process``) passes ``install_stale_snapshots`` to ``new_pysyncobj_engine`` only
when ``RAFTQ_TEST_FAULT`` names that fault; nothing else in the engine knows about it.

Relies on PySyncObj 0.3.17 private behaviour: none (it wraps ``Replica.install``, which our
snapshot loader ``SnapshotHooks.deserialize`` calls; ``tests/raft/test_pysyncobj_faults.py``).
"""

from __future__ import annotations

import logging

from raftq.core import Machine
from raftq.raft.pysyncobj.replica import Replica

__all__ = ["install_stale_snapshots"]

logger = logging.getLogger(__name__)


def install_stale_snapshots(replica: Replica) -> None:
    """Make ``replica`` install its first loaded snapshot's machine again at every later
    load (tick thread only)."""
    install = replica.install
    first: list[Machine] = []

    def install_stale(machine: Machine) -> None:
        if not first:
            first.append(machine)
            install(machine)
            return
        logger.error("TEST FAULT: installing the first snapshot's state again (stale)")
        install(first[0])

    replica.install = install_stale  # type: ignore[method-assign]
