"""Cluster events in the log: elections and peers lost or back, one INFO line each.

PySyncObj logs nothing when a leader is elected or a peer connection drops, so an operator
saw no line for the events that matter most (issue 20). ``ClusterEvents.observe`` is called
on PySyncObj's tick thread with what the node sees now (its role, the leader, the term, the
peers it is connected to) and logs only the changes:

- ``node n1: n2 (127.0.0.1:7102) is the leader, term 3`` (``this node is the leader, term 3``
  on the winner): once per leader and term, on every node that learns of it;
- ``node n1: no leader since term 3 (was n2): an election is due``: once when the leader this
  node knew is gone (it stopped, or this node lost it);
- ``node n1: raft peer n2 (127.0.0.1:7102) lost`` / ``... back``: once per change of the
  connection; the first connection after start is ``connected``.

A tick with nothing new logs nothing: the comparison is a few tuple and set compares.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

__all__ = ["ClusterEvents"]

logger = logging.getLogger(__name__)


class ClusterEvents:
    """What node ``node_id`` last reported; ``name`` turns a raft address into ``"id (addr)"``."""

    def __init__(self, node_id: str, self_raft: str, name: Callable[[str], str]) -> None:
        self._node_id = node_id
        self._self_raft = self_raft
        self._name = name
        self._leader: tuple[str, int] | None = None  # (raft address, term) last reported
        self._connected: set[str] = set()
        self._seen: set[str] = set()  # peers connected at least once

    def observe(self, leader: str | None, term: int, connected: Iterable[str]) -> None:
        """Tick thread: the leader's raft address (``None``: none known), the current term and
        the raft addresses of the peers connected now."""
        self._observe_leader(leader, term)
        self._observe_peers(set(connected))

    def _observe_leader(self, leader: str | None, term: int) -> None:
        if leader is None:
            if self._leader is not None:
                was, since = self._leader
                self._leader = None
                logger.info(
                    "node %s: no leader since term %d (was %s): an election is due",
                    self._node_id,
                    since,
                    "this node" if was == self._self_raft else self._name(was),
                )
            return
        if self._leader == (leader, term):
            return
        # A new leader, or the same one at a higher term (it won another election).
        self._leader = (leader, term)
        if leader == self._self_raft:
            logger.info("node %s: this node is the leader, term %d", self._node_id, term)
        else:
            logger.info(
                "node %s: %s is the leader, term %d", self._node_id, self._name(leader), term
            )

    def _observe_peers(self, connected: set[str]) -> None:
        if connected == self._connected:
            return
        for peer in sorted(self._connected - connected):
            logger.info("node %s: raft peer %s lost", self._node_id, self._name(peer))
        for peer in sorted(connected - self._connected):
            back = peer in self._seen
            self._seen.add(peer)
            logger.info(
                "node %s: raft peer %s %s",
                self._node_id,
                self._name(peer),
                "back" if back else "connected",
            )
        self._connected = connected
