"""The interface the HTTP server and embedding code use to talk to a local raft node.

``raftq.raft.node.RaftNode`` implements it. Everything here is called from the asyncio loop
thread that started the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from raftq.core import Command, Machine, Result
from raftq.raft.waiters import NextClaim

__all__ = ["MemberStatus", "NodeAPI", "NodeStatus", "PeerStatus"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatus:
    id: str
    api: str  # "host:port" of its HTTP API
    raft: str  # "host:port" of its raft port
    reachable: bool  # self: True; others: connected at the raft level


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberStatus:
    """A node of the replicated membership as this node knows it. ``id`` and ``api`` come from
    the config: a member the config does not list shows its raft address as ``id`` and no
    ``api``."""

    id: str
    api: str | None
    raft: str
    voter: bool  # counted for elections and commit (False: a non-voter catching up)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    id: str
    role: str  # "leader" | "follower" | "candidate"
    leader: str | None  # node id
    term: int
    commit_index: int
    applied_index: int  # raft log index applied
    digest: str  # hex rolling digest of the applied entries
    clock_ms: int  # the machine's cluster clock
    ready: bool  # has a leader and has caught up with its commit index
    log_entries: int
    nodes: tuple[PeerStatus, ...]
    # The replicated membership (empty where the node has none, e.g. a test double).
    members: tuple[MemberStatus, ...] = ()
    # How the config's nodes differ from the replicated membership, if they do (at start).
    membership_mismatch: str | None = None
    cluster_id: str = ""  # fixed at bootstrap; "" where the node has none (a test double)


class NodeAPI(Protocol):
    node_id: str

    def now_ms(self) -> int:
        """This node's wall clock in integer ms: the ``now_ms`` to stamp on commands."""
        ...

    def cluster_time_ms(self) -> int | None:
        """Cluster time as this node estimates it (``None`` until it knows any): what nodes
        agree on even when one node's wall clock is off by hours (node-to-node signatures are
        timed with it)."""
        ...

    def is_leader(self) -> bool: ...

    def leader_id(self) -> str | None: ...

    def api_address(self, node_id: str) -> str | None:
        """``host:port`` of a node's HTTP API, from the config."""
        ...

    async def submit(self, command: Command, timeout_ms: int | None = None) -> Result:
        """Propose ``command`` (on the leader) and return its result once applied here.

        Concurrent submissions share log entries (group commit). Raises ``NotLeader`` (with
        the leader's id when known), ``NoLeader``, ``Overloaded`` (definite: not applied) or
        ``OutcomeUnknown`` (deadline passed or leadership lost while waiting).
        """
        ...

    async def submit_many(
        self, commands: Sequence[Command], timeout_ms: int | None = None
    ) -> list[Result]:
        """``submit`` of each command, in order, at once: one result each (its own outcome,
        a refusal included), the commands in as few log entries as group commit allows, one
        deadline for all. All or none are proposed (``NotLeader``, ``NoLeader``); if any
        fails at the cluster level, the first such failure in order is raised (the others
        may or may not have been applied: retry them all with the same request ids)."""
        ...

    async def barrier(self, timeout_ms: int | None = None) -> None:
        """Return once everything committed before the call is applied on this node (a Tick
        through the log, leader only): local reads after it are linearizable."""
        ...

    def read(self) -> AbstractContextManager[Machine]:
        """Hold the state lock and give the machine for a short local read. Never mutate it,
        never await while holding it."""
        ...

    async def claim_when_ready(
        self, queues: Sequence[str], timeout_ms: int, next_claim: NextClaim
    ) -> Result | None:
        """Wait until work may be ready in one of ``queues``, then submit the claim round
        ``next_claim()`` builds and return its result; ``None`` if ``timeout_ms`` passes first,
        ``next_claim`` returns ``None``, or the round cannot be proposed here (leadership
        moved). Woken by applied entries (nack, requeue, resume, lease expiry, delayed jobs
        coming due) and, on the leader, by the proposal of an enqueue of ready jobs into one of
        the queues: then the round is proposed right behind it, in the same log entry (see
        ``raftq.raft.waiters``). The round may return no job; the caller decides what next."""
        ...

    def end_claim_waits(self) -> None:
        """End every ``claim_when_ready`` waiting now: each returns ``None`` at once, no
        round proposed for it (a drain: the long-polls answer and their clients go
        elsewhere)."""
        ...

    def status(self) -> NodeStatus: ...

    async def change_member(
        self,
        kind: str,
        raft: str,
        timeout_ms: int | None = None,
        *,
        node_id: str | None = None,
        api: str | None = None,
    ) -> None:
        """Leader: add (``kind`` ``"add"``) or remove (``"remove"``) the voter at raft address
        ``raft`` (an added node's ``node_id`` and ``api`` are replicated with the change) and
        return once the change is committed (``raftq.raft.members``). Raises
        ``Rejected`` 409 (a change in flight, no quorum after it), ``NotLeader`` (also after
        handing leadership over when this leader is the one removed), ``NoLeader``,
        ``OutcomeUnknown``."""
        ...

    async def transfer_leadership(self, to: str | None) -> str:
        """Leader only: hand leadership to node ``to`` (``None``: a caught-up follower) and
        return the new leader's id once this node follows it. ``NotLeader`` (with the leader's
        id) on a follower; ``TransferRefused`` when no node could take over (the target is not
        caught up or not connected, or the election did not finish in time)."""
        ...
