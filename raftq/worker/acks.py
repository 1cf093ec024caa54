"""``AckWaves``: a worker's acks leave in waves, so that one request carries many of them.

While acks of this worker are in flight, the acks of jobs that finish meanwhile wait, and
leave together once the last of those in flight is answered (or after ``max_wait_ms``); acks
made while none is in flight leave at once (with the others made in the same event-loop
iteration). The client coalesces acks called together into one ``POST /v1/ack``: without
waves, each batch of jobs that finished together costs its own request (and Raft entry) as
soon as the previous one has left; with them, the jobs that finish during one ack round trip
share the next request. An ack waits at most one round trip, or ``max_wait_ms`` if that one
is stuck (a leader change): the worker passes its heartbeat period, the margin a running job
has before its lease could run out too. The job's slot is already free meanwhile, so the wait
costs no throughput; the job stays leased to this delivery until its ack is answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from raftq.worker.source import JobSource

__all__ = ["AckWaves"]


class AckWaves:
    def __init__(self, source: JobSource, *, max_wait_ms: int) -> None:
        self._source = source
        self._max_wait_s = max_wait_ms / 1000
        self._inflight = 0  # acks sent and not answered
        self._open = False  # a wave is leaving in this loop iteration: join it
        self._idle = asyncio.Event()  # set: the next wave may leave
        self._timer: asyncio.TimerHandle | None = None  # lets a wave leave after max_wait_ms

    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        """``source.ack``, once this call's wave may leave."""
        loop = asyncio.get_running_loop()
        if self._inflight and not self._open:
            if self._timer is None:
                self._timer = loop.call_later(self._max_wait_s, self._release)
            await self._idle.wait()
        if not self._open:  # the first of a wave: the calls of this iteration come along
            self._open = True
            loop.call_soon(self._close)
        self._idle.clear()
        self._inflight += 1
        try:
            await self._source.ack(job_id, token, result)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._release()

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._idle.set()

    def _close(self) -> None:
        self._open = False
