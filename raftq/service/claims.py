"""The long-poll claim: the request policy around ``Claim`` rounds (HTTP and embedded).

The node (``raftq.raft``) only proposes rounds and wakes waiters (``ClaimWaiters``); how many
rounds a request runs, under which request ids, and what it answers when the wait ends is
decided here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from raftq.core import Claim, Claimed, Lease, Result
from raftq.errors import NoLeader, NotLeader

if TYPE_CHECKING:
    from raftq.raft.api import NodeAPI

__all__ = ["claim_rounds"]


async def claim_rounds(
    node: NodeAPI,
    first: Claim,
    wait_ms: int,
    timeout_ms: int,
    *,
    check: Callable[[Result], Claimed],
    wanted: Callable[[], bool] = lambda: True,
) -> Sequence[Lease]:
    """A long-poll claim (HTTP and embedded). ``check`` turns each round's result into
    ``Claimed`` or raises the caller's error; ``wanted()`` false (the client left) ends the
    wait without leasing anything.

    Without ``wait_ms`` (or off the leader, where the claim fails with ``NotLeader``), one
    round is proposed at once. With it, on the leader, no round is proposed while nothing is
    ready: the claim waits (``claim_when_ready``) and a round is proposed when work may be
    ready, behind an enqueue into one of its queues or after applied entries, and again
    after an empty round. Every answer, an empty one too, is the result of a round applied in
    the log during the request: if the wait ends before any round was applied, one last
    round is proposed then (a read of this node's state could be stale: a newer leader may
    have been elected meanwhile). Once a round was applied, leadership moving away ends the
    poll with an empty answer.

    Round ``n`` uses request id ``<id>`` then ``<id>.<n>``: each round is its own command, and
    a client retrying the whole request with the same id replays the same rounds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms / 1000
    rounds = 0

    def next_claim() -> Claim | None:
        nonlocal rounds
        if not wanted():
            return None
        n, rounds = rounds, rounds + 1
        rid = first.request_id if n == 0 or first.request_id is None else f"{first.request_id}.{n}"
        return replace(first, now_ms=node.now_ms(), request_id=rid)

    answered = False  # a round was applied: an empty answer is backed by the log
    if wait_ms <= 0 or not node.is_leader():
        rounds = 1
        result = check(await node.submit(first, timeout_ms))
        if result.jobs or wait_ms <= 0:
            return result.jobs
        answered = True
    while (remaining_ms := int((deadline - loop.time()) * 1000)) > 0:
        if not wanted():  # the client left, or the node drains: no more waiting
            break
        try:
            answer = await node.claim_when_ready(first.queues, remaining_ms, next_claim)
        except (NotLeader, NoLeader):
            break
        if answer is None:  # the wait ended, the client left, or leadership moved
            break
        result = check(answer)
        if result.jobs:
            return result.jobs
        answered = True
    if answered:
        return ()
    claim = next_claim()
    if claim is None:
        return ()
    return check(await node.submit(claim, timeout_ms)).jobs
