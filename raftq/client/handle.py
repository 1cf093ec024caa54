"""Job handles: wait for the outcome of a job a producer enqueued.

``JobHandle.wait`` polls ``GET /v1/jobs/{id}`` (``get_job``) with a growing interval: 50 ms,
then x1.5 per poll up to 1 s, until the job is finished or the timeout passes. Polls are local
reads of whichever node answers (the client goes to the leader once it knows it), so they
cost no log entry. A finished state is final, except that a dead letter may be requeued
later: ``wait`` reports the outcome it saw.

If the first poll answers 404 (a follower that has not applied the enqueue yet), the handle
asks once more through the leader (``linearizable``) before giving up.

``JobHandle.progress`` polls the same read at a steady interval and yields the job's progress
(what its worker reported with ``job.report_progress``) each time it changes, until the job
is finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

from raftq.errors import JobCancelled, JobDead, Rejected, WaitTimeout

__all__ = ["POLL_MAX_MS", "POLL_MIN_MS", "JobHandle", "JobReader", "Producer", "ProducesHandles"]

POLL_MIN_MS = 50
POLL_MAX_MS = 1_000
_GROWTH = 1.5
_FINISHED = ("succeeded", "dead", "cancelled")


class JobReader(Protocol):
    """What a handle needs: ``raftq.client.Client`` and ``raftq.Node`` both provide it."""

    async def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]: ...

    async def cancel(self, job_id: int) -> None: ...


class JobHandle:
    """One job, by id, on the client or embedded node that enqueued it.

    Get one from ``Client.enqueue_job(...)`` or ``Client.job(job_id)`` (``raftq.Node`` has
    the same two methods).

    Args:
        reader: where to read the job from.
        job_id: the job's id.
        poll_min_ms: the first polling interval of ``wait``.
        poll_max_ms: the largest polling interval of ``wait``.
    """

    def __init__(
        self,
        reader: JobReader,
        job_id: int,
        *,
        poll_min_ms: int = POLL_MIN_MS,
        poll_max_ms: int = POLL_MAX_MS,
    ) -> None:
        if not 1 <= poll_min_ms <= poll_max_ms:
            raise ValueError("need 1 <= poll_min_ms <= poll_max_ms")
        self._reader = reader
        self.id = int(job_id)
        self._poll_min_ms = poll_min_ms
        self._poll_max_ms = poll_max_ms

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id})"

    async def status(self, *, linearizable: bool = False) -> dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` shows it (``state``, ``attempts``, ``result``...)."""
        return await self._reader.get_job(self.id, linearizable=linearizable)

    async def cancel(self) -> None:
        """Cancel the job if it is not finished (``Rejected`` ``finished`` otherwise)."""
        await self._reader.cancel(self.id)

    async def wait(self, timeout_ms: int | None = None) -> Any:
        """Wait until the job is finished and return its result.

        Args:
            timeout_ms: give up after this long (``None``: wait as long as it takes).

        Returns:
            The value the handler returned (what the worker acked with; ``None`` if nothing).

        Raises:
            JobDead: the job used up its attempts; ``error`` is its last error.
            JobCancelled: the job was cancelled.
            WaitTimeout: ``timeout_ms`` passed first (also a ``TimeoutError``).
            Rejected: ``not_found`` if the job does not exist (or was already collected).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout_ms is None else loop.time() + timeout_ms / 1000
        delay_ms = float(self._poll_min_ms)
        job: dict[str, Any] | None = None
        while True:
            job = await self._read(seen=job is not None)
            state = job.get("state")
            if state == "succeeded":
                return job.get("result")
            if state == "dead":
                raise JobDead(job)
            if state == "cancelled":
                raise JobCancelled(job)
            sleep_s = delay_ms / 1000
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise WaitTimeout(self.id, timeout_ms or 0, job)
                sleep_s = min(sleep_s, remaining)
            await asyncio.sleep(sleep_s)
            delay_ms = min(delay_ms * _GROWTH, float(self._poll_max_ms))

    async def progress(self, *, interval_ms: int | None = None) -> AsyncGenerator[Any, None]:
        """Yield the job's progress each time it changes, until the job is finished.

        ``async for p in handle.progress(): ...`` reads the job every ``interval_ms`` (default:
        the handle's ``poll_max_ms``, 1 s). A value is yielded when it differs from the last
        one yielded; ``None`` (nothing reported yet, or a new attempt that has not reported)
        is not. Values reported between two reads are not seen: only the latest counts. The
        iteration ends once the job is finished (``wait`` then gives its outcome); a job
        that does not exist raises ``Rejected`` ``not_found``.
        """
        interval_s = (self._poll_max_ms if interval_ms is None else interval_ms) / 1000
        last: Any = None
        seen = False
        while True:
            job = await self._read(seen=seen)
            seen = True
            value = job.get("progress")
            if value is not None and value != last:
                last = value
                yield value
            if job.get("state") in _FINISHED:
                return
            await asyncio.sleep(interval_s)

    async def _read(self, *, seen: bool) -> dict[str, Any]:
        try:
            return await self._reader.get_job(self.id)
        except Rejected as e:
            if e.status != 404 or seen:
                raise
        # Not on this replica yet? The leader knows every acknowledged enqueue.
        return await self._reader.get_job(self.id, linearizable=True)


class Producer(JobReader, Protocol):
    """What ``ProducesHandles`` needs: a ``JobReader`` that can also ``enqueue``."""

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
    ) -> int: ...


class ProducesHandles:
    """``enqueue_job`` and ``job`` for a ``Producer`` (``raftq.client.Client`` and
    ``raftq.Node`` both inherit them)."""

    async def enqueue_job(
        self: Producer,
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
        """``enqueue`` and return a handle: ``await handle.wait(timeout_ms)`` gives the result
        (see ``raftq.client.handle``)."""
        job_id = await self.enqueue(
            queue,
            payload,
            priority=priority,
            delay_ms=delay_ms,
            run_at_ms=run_at_ms,
            key=key,
            max_attempts=max_attempts,
            lease_ms=lease_ms,
            group=group,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
        )
        return JobHandle(self, job_id)

    def job(self: JobReader, job_id: int) -> JobHandle:
        """A handle on an existing job (no request is made until it is used)."""
        return JobHandle(self, job_id)
