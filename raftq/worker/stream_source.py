"""``StreamSource``: a worker's ``JobSource`` over the worker stream (``Client.stream``).

The worker's claim loop stays as it is: a claim of ``max`` jobs becomes credit. The credit
granted is topped up to what the claims waiting now ask for (free slots plus prefetch, as the
worker counts them), so the leader leases ahead exactly what the worker would have claimed,
and pushes jobs as soon as their leases are committed; a claim returns the jobs pushed so far
(waiting up to ``wait_ms`` for the first). Credit a claim did not use stays granted: the next
claim asks for that much less. Acks, nacks and heartbeats go over the stream.

When the stream ends for good (its reconnects ran out of retry budget), the claim that sees
it raises the cluster error as an HTTP claim would (the worker backs off and claims again),
and the next claim opens a new stream. When the worker stops (``stop_claiming``) the stream
is closed, so nothing more is leased for it: the operations on their way are answered first,
the jobs pushed and not handed out are handed back at once (``hand_back``: queued again, the
attempt not counted), and the acks and nacks of the jobs still running go over HTTP. Jobs
leased for the stream and not pushed when it closed the server hands back itself; a jobs
frame it wrote in the instant the stream closed is lost with the connection, and its jobs
come back when their leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from raftq.client import Client
from raftq.client.stream import JobStream
from raftq.client.types import ClaimedJob, LeaseExtended
from raftq.errors import ClusterError, TransportError
from raftq.worker.source import hand_back

__all__ = ["StreamSource"]

logger = logging.getLogger(__name__)

_NOT_HANDED_OUT = "WorkerStopped: the worker stopped before the job was handed out"


class StreamSource:
    """The operations a worker uses (``JobSource``), over one stream of ``client``.

    Args:
        client: the worker's client (reads, and the stream's session, token and retries).
        queues: the queues the stream subscribes to.
        worker: the worker's name.
        lease_ms: the lease of the jobs leased for it.
    """

    def __init__(
        self, client: Client, queues: Sequence[str], *, worker: str, lease_ms: int
    ) -> None:
        self._client = client
        self._queues = list(queues)
        self._worker = worker
        self._lease_ms = lease_ms
        self._stream: JobStream | None = None
        self._buffer: deque[ClaimedJob] = deque()
        self._demand = 0  # jobs asked for by the claims waiting now
        self._taking = asyncio.Lock()  # one claim at a time takes from the stream
        self._stopped = False  # no more claims: the stream is closed, the rest is HTTP
        self._client_timeout_s = 10.0

    async def open(self) -> StreamSource:
        """Open the stream (``StreamUnsupportedError`` from a node without it, or the
        cluster's error when it cannot be opened)."""
        await self._open()
        return self

    async def _open(self) -> JobStream:
        if self._stream is None or self._stream.closed:
            if self._stream is not None:
                await self._stream.close()
            self._stream = await self._client.stream(
                self._queues, worker=self._worker, credit=0, lease_ms=self._lease_ms
            )
        return self._stream

    async def stop_claiming(self) -> None:
        """The worker stops: no more jobs leased for it. The stream is closed (``close``);
        acks, nacks and heartbeats of the jobs still running go over HTTP."""
        self._stopped = True
        await self.close()

    async def close(self) -> None:
        """Let the operations on their way be answered, hand back what was pushed and not
        handed out (``hand_back``, over HTTP), then close the stream."""
        self._stopped = True
        stream, self._stream = self._stream, None
        if stream is None:
            return
        await stream.settle(self._client_timeout_s)
        with contextlib.suppress(ClusterError, TransportError):
            self._buffer.extend(await stream.jobs(timeout_ms=0))
        left = list(self._buffer)
        self._buffer.clear()
        if left:
            await asyncio.gather(
                *(hand_back(self._client, j.id, j.token, _NOT_HANDED_OUT) for j in left),
                return_exceptions=True,
            )
        await stream.close()

    async def claim(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        max: int = 1,
        lease_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[ClaimedJob]:
        """Up to ``max`` of the jobs pushed (``queues``, ``worker`` and ``lease_ms`` are the
        stream's, fixed when it was opened), waiting up to ``wait_ms`` for one."""
        if self._stopped:
            return []
        self._demand += max
        try:
            stream = await self._open()
            missing = self._demand - stream.credit - len(self._buffer)
            if missing > 0:
                stream.add_credit(missing)
            async with self._taking:
                if not self._buffer:
                    self._buffer.extend(await stream.jobs(timeout_ms=wait_ms))
                return [self._buffer.popleft() for _ in range(min(max, len(self._buffer)))]
        finally:
            self._demand -= max

    async def heartbeat(
        self,
        job_id: int,
        token: int,
        *,
        lease_ms: int | None = None,
        progress: Any = None,
        checkpoint: Any = None,
    ) -> LeaseExtended:
        target = self._client if self._stopped else await self._open()
        return await target.heartbeat(
            job_id, token, lease_ms=lease_ms, progress=progress, checkpoint=checkpoint
        )

    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        if self._stopped:
            return await self._client.ack(job_id, token, result)
        await (await self._open()).ack(job_id, token, result)

    async def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        if self._stopped:
            return await self._client.nack(job_id, token, error=error, retry_in_ms=retry_in_ms)
        stream = await self._open()
        return await stream.nack(job_id, token, error=error, retry_in_ms=retry_in_ms)

    async def release(self, job_id: int, token: int) -> dict[str, Any]:
        # Over HTTP: rare (a worker stopping), and a stream to a node of an older raftq would
        # end at a frame it does not know, where the route answers no_route (``hand_back``).
        return await self._client.release(job_id, token)

    async def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]:
        return await self._client.get_job(job_id, linearizable=linearizable)
