"""Where a worker gets its jobs: anything with the lease operations of ``raftq.client.Client``.

``Client`` (over HTTP, any node) and ``raftq.Node`` (an embedded node: no HTTP hop on the
leader) both satisfy ``JobSource``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from raftq.client.types import ClaimedJob, LeaseExtended

__all__ = ["JobSource"]


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

    async def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]: ...
