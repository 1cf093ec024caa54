"""Coalescing of concurrent single operations into batch requests (enqueue, ack).

A ``Coalescer`` keeps at most ``max_inflight`` requests in flight. A call made while one of
those slots is free is sent on the next loop iteration, alone (the one-item request, so a
lone caller pays no extra latency); calls made while every slot is busy wait and leave
together in the next request, up to ``max_batch`` of them and ``max_bytes`` of payload.
Under load one HTTP request (and one pass through the server's parsing and forwarding)
carries many operations.

Each caller still gets its own outcome, only once the server confirmed it:
- a batch refused as a whole (``Rejected``: an enqueue batch is all-or-none, one bad job
  refuses it and nothing is applied) is resent item by item, so each caller gets the answer
  it would have had alone;
- any other failure (``OutcomeUnknown``, ``NoLeader``, ``TransportError``...) happens after
  the transport's own retries with the batch's one request id, and is raised in every caller
  of that batch, as it would have been for each alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from raftq.errors import Rejected, TransportError

__all__ = ["Coalescer", "ack_outcomes"]

T = TypeVar("T")
R = TypeVar("R")

# send_many(items) -> one outcome per item, in order: a value, or the Rejected of that item.
SendMany = Callable[[list[T]], Awaitable[Sequence[R | Rejected]]]
SendOne = Callable[[T], Awaitable[R]]


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        send_one: SendOne[T, R],
        send_many: SendMany[T, R],
        *,
        max_batch: int,
        max_inflight: int = 4,
        max_bytes: int | None = None,
        size: Callable[[T], int] | None = None,
    ) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        self._send_one = send_one
        self._send_many = send_many
        self._max_batch = max_batch
        # A batch holds at most ``max_bytes`` of its items' ``size`` (one item may be larger):
        # one request is one log entry, and a huge entry stalls the leader's tick thread.
        self._max_bytes = max_bytes
        self._size = size
        self._max_inflight = max_inflight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._inflight = 0
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, item: T) -> R:
        """Send ``item`` (alone or with others) and return its own outcome."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, fut))
        if not self._flush_scheduled and self._inflight < self._max_inflight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending and self._inflight < self._max_inflight:
            n = self._batch_len()
            batch, self._pending = self._pending[:n], self._pending[n:]
            batch = [(i, f) for i, f in batch if not f.done()]  # callers that gave up
            if not batch:
                continue
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _batch_len(self) -> int:
        n = min(len(self._pending), self._max_batch)
        if self._max_bytes is None or self._size is None:
            return n
        total = 0
        for i in range(n):
            total += self._size(self._pending[i][0])
            if total > self._max_bytes:
                return max(1, i)  # without the item that went over (alone if it is first)
        return n

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            if len(batch) == 1:
                await self._one(*batch[0])
            else:
                await self._many(batch)
        finally:
            self._inflight -= 1
            if self._pending and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def _one(self, item: T, fut: asyncio.Future[R]) -> None:
        try:
            value = await self._send_one(item)
        except BaseException as e:  # handed to the caller, whatever it is
            _fail(fut, e)
            if not isinstance(e, Exception):
                raise
        else:
            if not fut.done():
                fut.set_result(value)

    async def _many(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._send_many([item for item, _ in batch])
        except Rejected:
            # Refused as a whole, nothing applied: each alone gets its own answer.
            await asyncio.gather(*(self._one(item, fut) for item, fut in batch))
            return
        except BaseException as e:
            for _, fut in batch:
                _fail(fut, e)
            if not isinstance(e, Exception):
                raise
            return
        if len(outcomes) != len(batch):
            err = TransportError(f"{len(outcomes)} answers for {len(batch)} operations")
            for _, fut in batch:
                _fail(fut, err)
            return
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            if fut.done():
                continue
            if isinstance(outcome, Rejected):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)


def _fail(fut: asyncio.Future[R], e: BaseException) -> None:
    if not fut.done():
        fut.set_exception(e)


def ack_outcomes(answer: Mapping[str, Any]) -> list[Rejected | None]:
    """``POST /v1/ack``'s answer as ``ack_many`` returns it: per item ``None`` (completed) or
    the ``Rejected`` of that ack alone."""
    out: list[Rejected | None] = []
    for r in answer["results"]:
        err = r.get("error")
        if err is None:
            out.append(None)
        else:
            status = err.get("status", 400)
            out.append(Rejected(str(err["code"]), str(err["message"]), int(status)))
    return out
