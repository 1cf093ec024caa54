"""Membership changes on the leader: one voter added or removed at a time, refused (``Rejected``
409) when another change is in flight or when the change would leave no quorum.

The quorum rule (etcd's "strict reconfig check"): after the change, the voters that are
connected and hold the log up to the commit index must still be a majority of the new set of
voters. So adding a blank voter to a cluster with a node down, or removing one of the two
remaining live voters of three, is refused instead of stopping every write until a node comes
back. The leader itself is always counted; a node still catching up is not.

Removing the leader: ``RaftNode.change_member`` hands leadership over first
(``RaftNode.transfer_leadership``) and answers ``NotLeader``, so the caller (the HTTP edge
forwards) asks the new leader, which removes the old one.

A leader just elected knows none of its followers' match indexes (PySyncObj zeroes them on
election) and PySyncObj refuses changes until its election entry is applied: judged at once,
the change asked of the new leader right after that handover was refused (409 ``no_quorum``)
although every voter was there. So a change first waits, at most ``settle_s``, for the
leader's view to settle (``LogEngine.leader_settled``); a quorum really missing is still
refused, only that much later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from raftq.errors import ClusterError, NoLeader, NotLeader, OutcomeUnknown, Rejected
from raftq.raft.engine import LogEngine

__all__ = ["MemberChanges"]

_Outcome = ClusterError | Rejected | None


class MemberChanges:
    """The membership operations of one node's engine (loop thread)."""

    def __init__(
        self,
        engine: LogEngine,
        self_raft: str,
        leader_id: Callable[[], str | None],
        settle_s: float = 2.0,
    ):
        self._engine = engine
        self._self_raft = self_raft
        self._leader_id = leader_id
        self._settle_s = settle_s  # how long a new leader's view may take to settle

    def check_leader(self) -> None:
        """``NotLeader``/``NoLeader`` unless this node leads."""
        if not self._engine.is_leader():
            leader = self._leader_id()
            if leader is None:
                raise NoLeader("no leader known")
            raise NotLeader(leader)

    def check(self, kind: str, raft: str) -> None:
        """Raise what refuses the change ``kind`` of ``raft`` on this leader, if anything."""
        engine = self._engine
        self.check_leader()
        voters = set(engine.members())
        if kind == "add" and raft in voters:
            raise Rejected("already_member", f"{raft} is already a voter", 409)
        if kind == "remove" and raft not in voters:
            raise Rejected("not_member", f"{raft} is not a voter of this cluster", 404)
        if engine.change_in_flight():
            raise Rejected(
                "change_in_flight",
                "another membership change is in flight (proposed, not yet committed): "
                "wait for it, then retry",
                409,
            )
        after = voters | {raft} if kind == "add" else voters - {raft}
        ready = sorted(v for v in after if engine.voter_ready(v))
        if len(ready) * 2 <= len(after):
            verb = "adding" if kind == "add" else "removing"
            raise Rejected(
                "no_quorum",
                f"{verb} {raft} would leave {len(after)} voters of which only {len(ready)} "
                f"are connected and caught up ({', '.join(ready) or 'none'}); a majority "
                f"needs {len(after) // 2 + 1}: bring the missing voters back first",
                409,
            )

    async def change(
        self,
        kind: str,
        raft: str,
        timeout_ms: int,
        *,
        node_id: str | None = None,
        api: str | None = None,
    ) -> None:
        """Check, then propose the change and wait until it is committed (``OutcomeUnknown``
        after ``timeout_ms``). The leader removes only others: ``RaftNode.change_member``
        hands leadership over first when it is the one leaving."""
        await self.settled(timeout_ms)
        self.check(kind, raft)
        fut = self._future()
        self._engine.change_member(kind, raft, self._resolver(fut), node_id=node_id, api=api)
        await self._wait(fut, timeout_ms, f"the change ({kind} {raft})")

    async def settled(self, timeout_ms: int) -> None:
        """On a leader, wait (at most ``settle_s``, within ``timeout_ms``) until its view of
        the followers is current (module docstring); ``NotLeader``/``NoLeader`` elsewhere."""
        self.check_leader()
        deadline = time.monotonic() + min(self._settle_s, timeout_ms / 1000)
        while not self._engine.leader_settled() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            self.check_leader()

    def _future(self) -> asyncio.Future[_Outcome]:
        return asyncio.get_running_loop().create_future()

    @staticmethod
    def _resolver(fut: asyncio.Future[_Outcome]) -> Callable[[_Outcome], None]:
        loop = fut.get_loop()

        def settle(outcome: _Outcome) -> None:  # loop thread
            if not fut.done():
                fut.set_result(outcome)

        def resolve(outcome: _Outcome) -> None:  # engine thread
            loop.call_soon_threadsafe(settle, outcome)

        return resolve

    @staticmethod
    async def _wait(fut: asyncio.Future[_Outcome], timeout_ms: int, what: str) -> None:
        try:
            outcome = await asyncio.wait_for(asyncio.shield(fut), timeout_ms / 1000)
        except TimeoutError:
            raise OutcomeUnknown(f"{what} was not committed in {timeout_ms} ms") from None
        if outcome is not None:
            raise outcome
