"""The raft-side test fault ``install-stale-snapshot`` as a wrapper
(raftq/raft/pysyncobj/faults.py): a replica wrapped with it installs its first loaded snapshot
again at every later load; an unwrapped one installs what it is given."""

from __future__ import annotations

from raftq.core import Machine
from raftq.raft.pysyncobj.faults import install_stale_snapshots
from raftq.raft.pysyncobj.replica import Replica


def _replica() -> Replica:
    def fatal(error: BaseException) -> None:
        raise AssertionError(f"unexpected fatal: {error!r}")

    return Replica(lambda: None, fatal)


def test_a_wrapped_replica_installs_the_first_snapshot_again() -> None:
    replica = _replica()
    install_stale_snapshots(replica)
    first, second = Machine(), Machine()
    replica.install(first)
    assert replica.machine is first
    replica.install(second)
    assert replica.machine is first  # stale: the second snapshot was replaced by the first


def test_an_unwrapped_replica_installs_each_snapshot() -> None:
    replica = _replica()
    first, second = Machine(), Machine()
    replica.install(first)
    replica.install(second)
    assert replica.machine is second
