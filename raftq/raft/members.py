"""Membership changes on the leader: one voter added or removed at a time, refused (``Rejected``
409) when another change is in flight or when the change would leave no quorum.

The quorum rule (etcd's "strict reconfig check"): after the change, the voters that are
connected and hold the log up to the commit index must still be a majority of the new set of
voters. So adding a blank voter to a cluster with a node down, or removing one of the two
remaining live voters of three, is refused instead of stopping every write until a node comes
back. The leader itself is always counted; a node still catching up is not.

Removing the leader: it hands leadership to the most caught-up voter first
(``transfer_leadership``) and answers ``NotLeader``, so the caller (the HTTP edge forwards)
asks the new leader, which removes the old one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from raftq.errors import ClusterError, NoLeader, NotLeader, OutcomeUnknown, Rejected
from raftq.raft.engine import LogEngine

__all__ = ["MemberChanges"]

_Outcome = ClusterError | Rejected | None
_SETTLE_S = 3.0  # how long a transfer's election may take before the leader asks again


class MemberChanges:
    """The membership operations of one node's engine (loop thread)."""

    def __init__(self, engine: LogEngine, self_raft: str, leader_id: Callable[[], str | None]):
        self._engine = engine
        self._self_raft = self_raft
        self._leader_id = leader_id

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
        after ``timeout_ms``). Removing this leader hands leadership over first and raises
        ``NotLeader`` naming the new leader (or ``NoLeader`` if none took over in time)."""
        self.check(kind, raft)
        if kind == "remove" and raft == self._self_raft:
            await self.hand_over(None, timeout_ms)
        fut = self._future()
        self._engine.change_member(kind, raft, self._resolver(fut), node_id=node_id, api=api)
        await self._wait(fut, timeout_ms, f"the change ({kind} {raft})")

    async def hand_over(self, to: str | None, timeout_ms: int) -> None:
        """Transfer leadership to ``to`` (``None``: the most caught-up voter), wait until
        another node leads, then raise ``NotLeader`` with it (the request goes there)."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            await self._ask_transfer(to, deadline)
            asked = time.monotonic()
            # The target starts an election at once; this node steps down when it hears of
            # it. A target whose log fell behind meanwhile loses that election and this node
            # may lead again: then it asks again.
            while True:
                leader = self._leader_id()
                if not self._engine.is_leader() and leader is not None:
                    raise NotLeader(leader, f"leadership handed over to {leader}")
                if time.monotonic() > deadline:
                    raise NoLeader("leadership was handed over but no new leader is known yet")
                if self._engine.is_leader() and time.monotonic() - asked > _SETTLE_S:
                    break
                await asyncio.sleep(0.02)

    async def _ask_transfer(self, to: str | None, deadline: float) -> None:
        while True:
            fut = self._future()
            self._engine.transfer_leadership(to, self._resolver(fut))
            remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
            try:
                await self._wait(fut, remaining_ms, "the leadership transfer")
                return
            except Rejected:
                # PySyncObj hands over only to a voter whose log ends where the leader's does:
                # under load that holds between two entries. Ask again until the deadline.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)

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
