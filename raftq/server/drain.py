"""Draining a node before a planned stop (``POST /v1/node/drain``, ``raftq node drain``).

A drained node stops taking claims (new ones are refused with a retryable 503 ``draining``, so
workers go to another node; long-polls already waiting end at once with the same answer), hands
leadership over if it has it (``transfer_leadership``: the next leader is a node that has every
entry, elected at once), then stops its process the way SIGTERM does: the API stops accepting
connections and waits for the requests in flight, the raft node stops, and the process exits 0.
Only ``raftq serve`` mounts one (``DRAIN_KEY``); an embedded node is stopped by its owner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from raftq.errors import TransferRefused
from raftq.raft.api import NodeAPI

__all__ = ["DRAIN_KEY", "Drain"]

logger = logging.getLogger(__name__)


class Drain:
    """One node's drain; ``stop()`` ends the process's serving (``raftq serve``'s stop event).

    ``transfer_timeout_s``: how long a leader keeps trying to hand leadership over. A transfer
    needs a follower that has the leader's last entry at that instant; under load new entries
    keep coming, so it is retried. If none caught up in time the node stops anyway: the
    cluster then elects a leader after an election timeout, as after any crash."""

    def __init__(self, stop: Callable[[], None], transfer_timeout_s: float = 10.0) -> None:
        self._stop = stop
        self._transfer_timeout_s = transfer_timeout_s
        self.draining = False
        # Set when the drain starts: long-polls forwarded from here to the leader end then
        # (``raftq.server.handlers``), as the ones waiting on this node (``end_claim_waits``).
        self.started = asyncio.Event()

    async def start(self, node: NodeAPI) -> str | None:
        """Stop taking claims, hand leadership over, then stop serving; returns the leader
        this node knows of once it is no longer the leader (``None``: unknown)."""
        if not self.draining:
            self.draining = True
            self.started.set()
            # Long-polls waiting here answer at once (503 ``draining``: their clients retry
            # on another node with the same request id): nothing was leased for them.
            node.end_claim_waits()
            logger.info("node %s: draining (no new claims)", node.node_id)
        deadline = time.monotonic() + self._transfer_timeout_s
        while node.is_leader():
            try:
                leader = await node.transfer_leadership(None)
                logger.info("node %s: leadership handed over to %s", node.node_id, leader)
                break
            except TransferRefused as e:
                if time.monotonic() > deadline:
                    logger.warning(
                        "node %s: stopping as leader, no follower caught up in %g s: %s",
                        node.node_id,
                        self._transfer_timeout_s,
                        e,
                    )
                    break
                await asyncio.sleep(0.02)
        # After this handler's answer: the graceful stop waits for requests in flight.
        asyncio.get_running_loop().call_soon(self._stop)
        return node.leader_id()


DRAIN_KEY: web.AppKey[Drain] = web.AppKey("raftq_drain", Drain)
