"""Long-poll claims waiting for work, and the hand-off of new jobs to them.

A claim that found nothing ready waits here, on the node that runs it (the leader: writes are
forwarded there), until work may be ready; then the waiter's next claim round is submitted for
it and the waiter gets that round's result future:

- **after applied entries** that leave ready jobs in one of its queues (jobs that came due,
  were nacked or requeued, whose lease expired, a resumed queue): at most as many waiters as
  there are ready jobs, oldest waiter first, so one job does not make every waiter propose;
- **when an ``Enqueue`` of ready jobs is proposed** into one of its queues on this node: the
  waiter's claim is submitted right behind the enqueue, before group commit flushes, so both
  go in the same log entry and the job reaches a waiting worker after one commit instead of
  two (enqueue, then claim), at most one waiter per ready job.

Either way the round is an ordinary ``Claim`` applied at its own place in the log, after the
enqueue: linearizability does not depend on this module. If another claim took the job
first, or the queue is paused, the round returns nothing and the long-poll waits again.

Runs on the asyncio loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raftq.core import Claim, Command, Enqueue, Machine, NewJob, Result
from raftq.errors import ClusterError

if TYPE_CHECKING:
    pass

__all__ = ["ClaimWaiters", "NextClaim"]

# The waiter's next claim round, built when it is served (fresh now_ms and request id); None
# when it no longer wants one (its client left).
NextClaim = Callable[[], Claim | None]
Propose = Callable[[Command], "asyncio.Future[Result]"]


@dataclass(eq=False, slots=True)
class _Waiter:
    queues: tuple[str, ...]
    next_claim: NextClaim
    served: asyncio.Future[asyncio.Future[Result] | None]


class ClaimWaiters:
    def __init__(
        self, propose: Propose, read: Callable[[], AbstractContextManager[Machine]]
    ) -> None:
        # propose(command) hands a command to group commit now and returns its result future;
        # it raises a ClusterError when this node cannot propose (not the leader).
        self._propose = propose
        self._read = read
        self._waiters: list[_Waiter] = []

    def __bool__(self) -> bool:
        return bool(self._waiters)

    async def wait(
        self, queues: tuple[str, ...], timeout_ms: int, next_claim: NextClaim
    ) -> asyncio.Future[Result] | None:
        """Wait until work may be ready in ``queues``, then return the result future of the
        claim round submitted for this waiter; ``None`` after ``timeout_ms``, or if the
        round could not be proposed (leadership moved) or ``next_claim`` declined."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(queues, next_claim, loop.create_future())
        # Registered before the check: an entry applied after the check finds the waiter (the
        # tick thread schedules on_applied only while there are waiters).
        self._waiters.append(waiter)
        with self._read() as m:
            ready = _has_ready(m, queues)
        if ready:
            self._waiters.remove(waiter)
            self._serve(waiter)
            return waiter.served.result()  # _serve resolved it: nothing to wait for
        try:
            return await asyncio.wait_for(waiter.served, timeout_ms / 1000)
        except TimeoutError:
            return None  # wait_for cancelled `served`: the entry is dropped on the next pass

    def on_applied(self) -> None:
        """Entries were applied: serve at most as many waiters as there are ready jobs in
        their queues (oldest waiter first)."""
        if not self._waiters:
            return
        keep: list[_Waiter] = []
        budget: dict[str, int] = {}
        serve: list[_Waiter] = []
        with self._read() as m:
            for w in self._waiters:
                if w.served.done():
                    continue
                for name in w.queues:
                    if name not in budget:
                        budget[name] = _ready_count(m, name)
                    if budget[name] > 0:
                        budget[name] -= 1
                        serve.append(w)
                        break
                else:
                    keep.append(w)
        self._waiters = keep
        for w in serve:  # outside the state lock: proposing does not need it
            self._serve(w)

    def on_enqueue(self, command: Enqueue) -> None:
        """``command`` was just handed to group commit on this node: submit the claims of up
        to one waiter per ready job it creates, right behind it (the same log entry)."""
        ready = sum(1 for job in command.jobs if _ready_at_once(job, command.now_ms))
        if ready == 0 or not self._waiters:
            return
        keep: list[_Waiter] = []
        serve: list[_Waiter] = []
        for w in self._waiters:
            if w.served.done():
                continue
            if ready > 0 and command.queue in w.queues:
                ready -= 1
                serve.append(w)
            else:
                keep.append(w)
        self._waiters = keep
        for w in serve:
            self._serve(w)

    def close(self) -> None:
        """The node stops or drains: every waiter returns ``None`` (an empty answer); later
        waits are served as usual."""
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.served.done():
                w.served.set_result(None)

    def _serve(self, w: _Waiter) -> None:
        if w.served.done():
            return
        claim = w.next_claim()
        if claim is None:
            w.served.set_result(None)
            return
        try:
            w.served.set_result(self._propose(claim))
        except ClusterError:  # not the leader any more: an empty answer, the client polls again
            w.served.set_result(None)


def _ready_at_once(job: NewJob, now_ms: int) -> bool:
    if job.delay_ms:
        return False
    return job.run_at_ms is None or job.run_at_ms <= now_ms


def _ready_count(m: Machine, name: str) -> int:
    # Under limits, only what a claim could take now: a queue at its cap with a backlog must
    # not wake its waiters after every entry (each would propose an empty round, itself an
    # entry that wakes them again).
    return m.claimable(name)


def _has_ready(m: Machine, queues: tuple[str, ...]) -> bool:
    return any(_ready_count(m, name) > 0 for name in queues)
