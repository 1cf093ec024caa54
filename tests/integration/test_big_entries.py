"""Log entries bigger than 64 KiB reach every follower whole.

Bug fixed: PySyncObj splits an entry of at least ``appendEntriesBatchSizeBytes`` (64 KiB by
default) into chunks and marks the final chunk by comparing its end with the length of the
command instead of the pickled entry; when the pickling overhead crosses a 64 KiB boundary,
the follower unpickles a truncated entry and its tick fails ("failed _onTick", UnpicklingError),
dropping what it had read. Found by ``raftq bench --jobs-queued 1000000``: its 1000-job entries
are ~131 KB, a follower fell hundreds of entries behind and the term went from 1 to 21.
raftq now sends every entry whole (``appendEntriesBatchSizeBytes`` in ``RaftNode``).
"""

from __future__ import annotations

from raftq.client import SyncClient
from tests.integration.cluster import Cluster


def test_entries_across_64k_boundaries_replicate_without_errors(cluster: Cluster) -> None:
    leader = cluster.leader()
    with SyncClient([cluster.api[leader]]) as c:
        # One job per request, so one command per entry: command sizes sweep 131072 (2 x 64
        # KiB) from below in steps smaller than the pickling overhead, so some entries'
        # overhead crosses the boundary (the wire adds a few dozen bytes to the payload).
        for n in range(131072 - 400, 131072 + 40, 8):
            c.enqueue("big", "x" * n)
    cluster.wait_converged()
    for nid in cluster.ids:
        log = (cluster.root / f"{nid}.log").read_text(errors="replace")
        assert "failed _onTick" not in log, cluster.log_tail(nid)
        assert "UnpicklingError" not in log, cluster.log_tail(nid)
