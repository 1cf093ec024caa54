"""The leader compares its replicas' digests at equal applied indexes.

Replicas that applied the same entries have the same rolling ``digest`` (raftq.core). Two that
differ at the same applied index diverged: one applied something the others did not. Issue 20
saw a leader whose digest differed from all four followers' for over a minute, and nothing
said so. Now every follower adds ``[applied index, digest]`` to the answer it sends for each
AppendEntries (``RaftqSyncObj``, ``raftq_digest``), and the leader looks the index up among the
digests it had after its own recent entries (``record``, called by ``Replica.apply``):

- a difference is logged at ERROR once per peer until that peer agrees again, naming both
  digests and the index, and counted (``raftq_raft_digest_mismatches_total``, one per episode);
  ``raftq_raft_digest_mismatch_peers`` is how many peers differ now;
- an index the leader no longer remembers (more than ``KEEP`` entries ago), or one with no
  machine entry (a no-op or membership entry: the digest is the one before it), is skipped.

Everything here runs on PySyncObj's tick thread (applies and messages both), so the index
and digest a follower reports belong together, and no lock is needed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

__all__ = ["KEEP", "DigestWatch"]

logger = logging.getLogger(__name__)

KEEP: Final = 4096  # digests remembered, one per applied entry (~0.5 MB)


class DigestWatch:
    """This node's recent digests by applied index, and the peers that differ from them.
    ``on_change(differing, new)`` is called with the number of peers differing now and whether
    a new episode began (for the metrics)."""

    def __init__(
        self,
        node_id: str,
        name: Callable[[str], str],
        on_change: Callable[[int, bool], None],
    ) -> None:
        self._node_id = node_id
        self._name = name
        self._on_change = on_change
        self._mine: OrderedDict[int, str] = OrderedDict()
        self._differing: set[str] = set()  # peers (raft addresses) differing now

    def record(self, index: int, digest: str) -> None:
        """This node applied the entry at ``index``; its digest is now ``digest``."""
        self._mine[index] = digest
        if len(self._mine) > KEEP:
            self._mine.popitem(last=False)

    def peer(self, raft: str, index: int, digest: str) -> None:
        """The peer at ``raft`` reported ``digest`` at its applied index ``index``."""
        mine = self._mine.get(index)
        if mine is None:
            return
        if mine == digest:
            if raft in self._differing:
                self._differing.discard(raft)
                logger.info(
                    "node %s: raft peer %s agrees again: digest %s at applied index %d",
                    self._node_id,
                    self._name(raft),
                    digest[:12],
                    index,
                )
                self._on_change(len(self._differing), False)
            return
        if raft in self._differing:
            return
        self._differing.add(raft)
        logger.error(
            "node %s: raft peer %s has digest %s at applied index %d, this node %s: the "
            "replicas diverged; run `raftq status` to see which node differs from the "
            "others, then stop that node, move its data dir aside and start it again "
            'empty so that it catches up from the leader (docs/operations.md, "Digests differ")',
            self._node_id,
            self._name(raft),
            digest[:12],
            index,
            mine[:12],
        )
        self._on_change(len(self._differing), True)
