"""The full surface of raftq's operations, as one protocol.

``Operations`` lists every operation a producer, a worker or an administrator uses, with its
signature. Three classes offer it, with the same names, parameters, kinds and defaults:

- ``raftq.client.Client``: over HTTP, as coroutines;
- ``raftq.Node`` (``raftq.node.embedded``): an embedded node, as coroutines;
- ``raftq.client.SyncClient``: over HTTP, blocking (the same names, not coroutines).

``tests/client/test_surface.py`` holds all three to it, so an operation added to one is added
to the others. The semantics and errors of each operation are documented on ``Client``.
Lifecycle (construction, ``close``/``start``/``stop``, context managers) is not part of it:
it differs by nature between a client and a node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from raftq.client.handle import JobHandle
from raftq.client.types import ClaimedJob, LeaseExtended
from raftq.errors import Rejected

__all__ = ["Operations"]


class Operations(Protocol):
    """Every operation, with ``raftq.client.Client``'s signatures (see the module docstring)."""

    # -- producing ------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int = 0,
        delay_ms: int | None = None,
        run_at_ms: int | None = None,
        key: str | None = None,
        max_attempts: int | None = None,
        lease_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[int] | None = None,
        on_dependency_failure: str | None = None,
    ) -> int:
        """Enqueue one job; its id."""
        ...

    async def enqueue_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        """Enqueue several jobs atomically; their ids in order."""
        ...

    async def enqueue_job(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int = 0,
        delay_ms: int | None = None,
        run_at_ms: int | None = None,
        key: str | None = None,
        max_attempts: int | None = None,
        lease_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[int] | None = None,
        on_dependency_failure: str | None = None,
    ) -> JobHandle:
        """``enqueue``, and a handle whose ``wait`` gives the job's result."""
        ...

    def job(self, job_id: int) -> JobHandle:
        """A handle on an existing job."""
        ...

    # -- working --------------------------------------------------------------------------

    async def claim(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        max: int = 1,
        lease_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[ClaimedJob]:
        """Lease up to ``max`` jobs, waiting up to ``wait_ms`` for one."""
        ...

    async def heartbeat(
        self,
        job_id: int,
        token: int,
        *,
        lease_ms: int | None = None,
        progress: Any = None,
        checkpoint: Any = None,
    ) -> LeaseExtended:
        """Extend a lease, storing progress and checkpoint; its new end, and whether the job
        was cancelled."""
        ...

    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        """Complete a job."""
        ...

    async def ack_many(self, acks: Sequence[tuple[int, int, Any]]) -> list[Rejected | None]:
        """Complete several jobs; each ack's own outcome, in order."""
        ...

    async def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        """Fail this attempt (retried later, or dead when out of attempts)."""
        ...

    async def release(self, job_id: int, token: int) -> dict[str, Any]:
        """Give a leased job back unstarted (queued again, the attempt not counted)."""
        ...

    async def cancel(self, job_id: int) -> None:
        """Cancel a job that is not finished."""
        ...

    # -- reading --------------------------------------------------------------------------

    async def create_batch(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        queue: str | None = None,
        on_complete: Mapping[str, Any] | None = None,
        on_success: Mapping[str, Any] | None = None,
        on_death: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create jobs as one batch with callbacks: ``{"batch", "ids"}``."""
        ...

    async def batch(self, batch_id: int) -> dict[str, Any]:
        """A batch's ids, counts by state and callbacks fired."""
        ...

    async def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]:
        """A job's state."""
        ...

    async def queues(self) -> list[dict[str, Any]]:
        """Every queue's stats."""
        ...

    async def queue(self, name: str) -> dict[str, Any]:
        """One queue's stats."""
        ...

    async def dead(self, queue: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Dead letters of ``queue``, oldest first."""
        ...

    async def cluster(self) -> dict[str, Any]:
        """The cluster as the answering node sees it."""
        ...

    async def cluster_of(self, node: str) -> dict[str, Any]:
        """The cluster as one given node (id, ``host:port`` or URL) sees it."""
        ...

    # -- admin ----------------------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        """Stop handing out jobs of ``queue``."""
        ...

    async def resume(self, queue: str) -> None:
        """Undo ``pause``."""
        ...

    async def purge(self, queue: str) -> int:
        """Delete the queued, delayed and dead jobs of ``queue``; how many."""
        ...

    async def requeue_dead(self, queue: str, ids: Sequence[int] | None = None) -> int:
        """Move dead letters back to queued; how many."""
        ...

    async def configure(
        self, queue: str, *, dedup_window_ms: int | None = None, retention_ms: int | None = None
    ) -> dict[str, Any]:
        """Set ``queue``'s dedup window and retention; the values applied."""
        ...

    # -- schedules ------------------------------------------------------------------------

    async def set_schedule(
        self,
        name: str,
        queue: str,
        payload: Any,
        *,
        every_ms: int | None = None,
        cron: str | None = None,
        tz: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        lease_ms: int | None = None,
        overlap: str | None = None,
        catchup_ms: int | None = None,
        paused: bool | None = None,
    ) -> dict[str, Any]:
        """Create or replace a schedule; the schedule as applied."""
        ...

    async def schedule(self, name: str) -> dict[str, Any]:
        """One schedule, with its last and next fire."""
        ...

    async def schedules(self) -> list[dict[str, Any]]:
        """Every schedule, by name."""
        ...

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule (its jobs stay)."""
        ...

    async def trigger_schedule(self, name: str) -> dict[str, Any]:
        """Enqueue a schedule's job now: ``{name, id, fire_ms}``."""
        ...

    async def pause_schedule(self, name: str) -> None:
        """Stop firing a schedule."""
        ...

    async def resume_schedule(self, name: str) -> None:
        """Fire a schedule again from its next slot."""
        ...

    async def limits(self, queue: str) -> dict[str, Any]:
        """``queue``'s limits and their use."""
        ...

    async def set_limits(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, int] | None = None,
        group_concurrency: int | None = None,
        group_rate: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Replace ``queue``'s limits; the limits applied."""
        ...


if TYPE_CHECKING:  # mypy holds Client to the protocol's types too (not only its signatures)
    from raftq.client.client import Client

    def _client_offers_every_operation(client: Client) -> Operations:
        return client
