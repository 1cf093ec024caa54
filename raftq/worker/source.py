"""Where a worker gets its jobs: anything with the lease operations of ``raftq.client.Client``.

``Client`` (over HTTP, any node) and ``raftq.Node`` (an embedded node: no HTTP hop on the
leader) both satisfy ``JobSource``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from raftq.client.types import ClaimedJob, LeaseExtended
from raftq.errors import Rejected

__all__ = ["JobSource", "hand_back"]


class JobSource(Protocol):
    """The operations a worker uses, with ``Client``'s signatures and errors."""

    async def claim(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        max: int = 1,
        lease_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[ClaimedJob]: ...

    async def heartbeat(
        self,
        job_id: int,
        token: int,
        *,
        lease_ms: int | None = None,
        progress: Any = None,
        checkpoint: Any = None,
    ) -> LeaseExtended: ...

    async def ack(self, job_id: int, token: int, result: Any = None) -> None: ...

    async def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]: ...

    async def release(self, job_id: int, token: int) -> dict[str, Any]: ...

    async def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]: ...


# Why a cluster cannot release: log version 4 not enabled yet, or the node asked runs a release
# without the route (a rolling upgrade under way).
_CANNOT_RELEASE = ("version_not_enabled", "no_route")


async def hand_back(source: JobSource, job_id: int, token: int, error: str) -> dict[str, Any]:
    """Give back a job this worker claimed and will not start: released (queued again in its
    place, the claim's attempt not counted). A cluster that cannot release yet
    (``version_not_enabled``: log version 4 not enabled; ``no_route``: the node runs an older
    raftq) gets a nack with ``error`` for immediate redelivery instead, which counts the
    attempt. The answer of the call that did it."""
    try:
        return await source.release(job_id, token)
    except Rejected as e:
        if e.reason not in _CANNOT_RELEASE:
            raise
    return await source.nack(job_id, token, error=error, retry_in_ms=0)
