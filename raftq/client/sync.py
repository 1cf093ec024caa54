"""A blocking client for scripts: ``Client`` on a private event loop in a background thread."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from raftq.client.client import Client
from raftq.client.handle import JobHandle
from raftq.client.stream import JobStream
from raftq.client.types import ClaimedJob, LeaseExtended
from raftq.errors import Rejected

__all__ = ["SyncClient", "SyncJobHandle", "SyncJobStream"]

_T = TypeVar("_T")


class SyncClient:
    """The same operations as ``Client``, blocking. Thread-safe: calls from several threads
    run concurrently on the private loop. Use ``with SyncClient(...) as c:`` or ``close()``.

    Args: as ``Client``.
    """

    def __init__(
        self,
        nodes: Sequence[str] | str,
        *,
        timeout_ms: int = 10_000,
        retry_ms: int = 30_000,
        token: str | None = None,
        ssl: ssl.SSLContext | None = None,
        use_msgpack: bool = True,
    ) -> None:
        self._client = Client(
            nodes,
            timeout_ms=timeout_ms,
            retry_ms=retry_ms,
            token=token,
            ssl=ssl,
            use_msgpack=use_msgpack,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="raftq-sync-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise RuntimeError("SyncClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Close the connections and stop the background thread (idempotent)."""
        if self._closed:
            return
        try:
            self._run(self._client.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def leader(self) -> str | None:
        """The leader's base URL as last learned, if any."""
        return self._client.leader

    def enqueue(
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
        """See ``Client.enqueue``."""
        return self._run(
            self._client.enqueue(
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
        )

    def enqueue_job(
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
    ) -> SyncJobHandle:
        """See ``Client.enqueue_job``."""
        job_id = self.enqueue(
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
        return self.job(job_id)

    def job(self, job_id: int) -> SyncJobHandle:
        """See ``Client.job``."""
        return SyncJobHandle(self, self._client.job(job_id))

    def enqueue_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        """See ``Client.enqueue_many``."""
        return self._run(self._client.enqueue_many(queue, jobs))

    def claim(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        max: int = 1,
        lease_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[ClaimedJob]:
        """See ``Client.claim``."""
        return self._run(
            self._client.claim(queues, worker=worker, max=max, lease_ms=lease_ms, wait_ms=wait_ms)
        )

    def stream(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        credit: int,
        lease_ms: int | None = None,
    ) -> SyncJobStream:
        """See ``Client.stream``: the same stream, blocking (``with`` closes it)."""
        opened = self._run(
            self._client.stream(queues, worker=worker, credit=credit, lease_ms=lease_ms)
        )
        return SyncJobStream(self, opened)

    def heartbeat(
        self,
        job_id: int,
        token: int,
        *,
        lease_ms: int | None = None,
        progress: Any = None,
        checkpoint: Any = None,
    ) -> LeaseExtended:
        """See ``Client.heartbeat``."""
        beat = self._client.heartbeat
        return self._run(
            beat(job_id, token, lease_ms=lease_ms, progress=progress, checkpoint=checkpoint)
        )

    def ack(self, job_id: int, token: int, result: Any = None) -> None:
        """See ``Client.ack``."""
        self._run(self._client.ack(job_id, token, result))

    def ack_many(self, acks: Sequence[tuple[int, int, Any]]) -> list[Rejected | None]:
        """See ``Client.ack_many``."""
        return self._run(self._client.ack_many(acks))

    def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        """See ``Client.nack``."""
        return self._run(self._client.nack(job_id, token, error=error, retry_in_ms=retry_in_ms))

    def release(self, job_id: int, token: int) -> dict[str, Any]:
        """See ``Client.release``."""
        return self._run(self._client.release(job_id, token))

    def cancel(self, job_id: int) -> None:
        """See ``Client.cancel``."""
        self._run(self._client.cancel(job_id))

    def create_batch(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        queue: str | None = None,
        on_complete: Mapping[str, Any] | None = None,
        on_success: Mapping[str, Any] | None = None,
        on_death: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """See ``Client.create_batch``."""
        return self._run(
            self._client.create_batch(
                jobs,
                queue=queue,
                on_complete=on_complete,
                on_success=on_success,
                on_death=on_death,
            )
        )

    def batch(self, batch_id: int) -> dict[str, Any]:
        """See ``Client.batch``."""
        return self._run(self._client.batch(batch_id))

    def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]:
        """See ``Client.get_job``."""
        return self._run(self._client.get_job(job_id, linearizable=linearizable))

    def queues(self) -> list[dict[str, Any]]:
        """See ``Client.queues``."""
        return self._run(self._client.queues())

    def queue(self, name: str) -> dict[str, Any]:
        """See ``Client.queue``."""
        return self._run(self._client.queue(name))

    def pause(self, queue: str) -> None:
        """See ``Client.pause``."""
        self._run(self._client.pause(queue))

    def resume(self, queue: str) -> None:
        """See ``Client.resume``."""
        self._run(self._client.resume(queue))

    def purge(self, queue: str) -> int:
        """See ``Client.purge``."""
        return self._run(self._client.purge(queue))

    def dead(self, queue: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """See ``Client.dead``."""
        return self._run(self._client.dead(queue, limit=limit))

    def requeue_dead(self, queue: str, ids: Sequence[int] | None = None) -> int:
        """See ``Client.requeue_dead``."""
        return self._run(self._client.requeue_dead(queue, ids))

    def configure(
        self, queue: str, *, dedup_window_ms: int | None = None, retention_ms: int | None = None
    ) -> dict[str, Any]:
        """See ``Client.configure``."""
        return self._run(
            self._client.configure(
                queue, dedup_window_ms=dedup_window_ms, retention_ms=retention_ms
            )
        )

    def set_schedule(
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
        """See ``Client.set_schedule``."""
        return self._run(
            self._client.set_schedule(
                name,
                queue,
                payload,
                every_ms=every_ms,
                cron=cron,
                tz=tz,
                priority=priority,
                max_attempts=max_attempts,
                lease_ms=lease_ms,
                overlap=overlap,
                catchup_ms=catchup_ms,
                paused=paused,
            )
        )

    def schedule(self, name: str) -> dict[str, Any]:
        """See ``Client.schedule``."""
        return self._run(self._client.schedule(name))

    def schedules(self) -> list[dict[str, Any]]:
        """See ``Client.schedules``."""
        return self._run(self._client.schedules())

    def delete_schedule(self, name: str) -> None:
        """See ``Client.delete_schedule``."""
        self._run(self._client.delete_schedule(name))

    def trigger_schedule(self, name: str) -> dict[str, Any]:
        """See ``Client.trigger_schedule``."""
        return self._run(self._client.trigger_schedule(name))

    def pause_schedule(self, name: str) -> None:
        """See ``Client.pause_schedule``."""
        self._run(self._client.pause_schedule(name))

    def resume_schedule(self, name: str) -> None:
        """See ``Client.resume_schedule``."""
        self._run(self._client.resume_schedule(name))

    def limits(self, queue: str) -> dict[str, Any]:
        """See ``Client.limits``."""
        return self._run(self._client.limits(queue))

    def set_limits(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, int] | None = None,
        group_concurrency: int | None = None,
        group_rate: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """See ``Client.set_limits``."""
        return self._run(
            self._client.set_limits(
                queue,
                concurrency=concurrency,
                rate=rate,
                group_concurrency=group_concurrency,
                group_rate=group_rate,
            )
        )

    def transfer_leadership(self, to: str | None = None) -> dict[str, Any]:
        """See ``Client.transfer_leadership``."""
        return self._run(self._client.transfer_leadership(to))

    def enable_version(self, version: int | None = None) -> int:
        """See ``Client.enable_version``."""
        return self._run(self._client.enable_version(version))

    def drain(self, node: str) -> dict[str, Any]:
        """See ``Client.drain``."""
        return self._run(self._client.drain(node))

    def cluster(self) -> dict[str, Any]:
        """See ``Client.cluster``."""
        return self._run(self._client.cluster())

    def members(self) -> list[dict[str, Any]]:
        """See ``Client.members``."""
        return self._run(self._client.members())

    def add_member(self, node_id: str, api: str, raft: str) -> list[dict[str, Any]]:
        """See ``Client.add_member``."""
        return self._run(self._client.add_member(node_id, api, raft))

    def remove_member(self, member: str) -> list[dict[str, Any]]:
        """See ``Client.remove_member``."""
        return self._run(self._client.remove_member(member))

    def backup(self, *, wait_ms: int = 120_000) -> bytes:
        """See ``Client.backup``."""
        return self._run(self._client.backup(wait_ms=wait_ms))

    def cluster_of(self, node: str) -> dict[str, Any]:
        """See ``Client.cluster_of``."""
        return self._run(self._client.cluster_of(node))


class SyncJobHandle:
    """``raftq.client.JobHandle``, blocking; from ``SyncClient.enqueue_job`` / ``job``."""

    def __init__(self, client: SyncClient, handle: JobHandle) -> None:
        self._client = client
        self._handle = handle
        self.id = handle.id

    def __repr__(self) -> str:
        return f"SyncJobHandle(id={self.id})"

    def status(self, *, linearizable: bool = False) -> dict[str, Any]:
        """See ``JobHandle.status``."""
        return self._client._run(self._handle.status(linearizable=linearizable))

    def cancel(self) -> None:
        """See ``JobHandle.cancel``."""
        self._client._run(self._handle.cancel())

    def wait(self, timeout_ms: int | None = None) -> Any:
        """See ``JobHandle.wait``."""
        return self._client._run(self._handle.wait(timeout_ms))

    def progress(self, *, interval_ms: int | None = None) -> Iterator[Any]:
        """See ``JobHandle.progress``: ``for p in handle.progress(): ...``."""
        updates = self._handle.progress(interval_ms=interval_ms)
        end = object()

        async def step() -> Any:
            return await anext(updates, end)

        try:
            while (value := self._client._run(step())) is not end:
                yield value
        finally:
            self._client._run(updates.aclose())


class SyncJobStream:
    """``raftq.client.stream.JobStream``, blocking; from ``SyncClient.stream``."""

    def __init__(self, client: SyncClient, stream: JobStream) -> None:
        self._client = client
        self._stream = stream

    def __enter__(self) -> SyncJobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def jobs(self, timeout_ms: int | None = None) -> list[ClaimedJob]:
        """See ``JobStream.jobs``."""
        return self._client._run(self._stream.jobs(timeout_ms))

    def add_credit(self, n: int) -> None:
        """See ``JobStream.add_credit``."""

        async def add() -> None:
            self._stream.add_credit(n)

        self._client._run(add())

    def ack(self, job_id: int, token: int, result: Any = None) -> None:
        """See ``JobStream.ack``."""
        self._client._run(self._stream.ack(job_id, token, result))

    def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        """See ``JobStream.nack``."""
        return self._client._run(
            self._stream.nack(job_id, token, error=error, retry_in_ms=retry_in_ms)
        )

    def release(self, job_id: int, token: int) -> dict[str, Any]:
        """See ``JobStream.release``."""
        return self._client._run(self._stream.release(job_id, token))

    def heartbeat(
        self,
        job_id: int,
        token: int,
        *,
        lease_ms: int | None = None,
        progress: Any = None,
        checkpoint: Any = None,
    ) -> LeaseExtended:
        """See ``JobStream.heartbeat``."""
        beat = self._stream.heartbeat
        return self._client._run(
            beat(job_id, token, lease_ms=lease_ms, progress=progress, checkpoint=checkpoint)
        )

    def close(self) -> None:
        """See ``JobStream.close``."""
        self._client._run(self._stream.close())
