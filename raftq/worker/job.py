"""What a handler receives (``Job``), and how a failure is written into the job's error."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import traceback
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JOB_LOGGER", "UNSET", "Job", "JobLogger", "Reports", "describe_error"]

JOB_LOGGER = "raftq.worker.job"
# Frames of the machinery that runs a handler (the worker, its thread pool, the event loop) say
# nothing about the failure: they are dropped from the recorded traceback.
_MACHINERY = (
    *(os.path.dirname(m.__file__ or "") + os.sep for m in (asyncio, concurrent.futures)),
    os.path.dirname(__file__) + os.sep,  # raftq.worker itself (runner, thread pool)
)
_MAX_FRAMES = 8
_MAX_ERROR_CHARS = 4_000
UNSET: Any = object()  # nothing reported since the last heartbeat took the reports


class Reports:
    """What a handler reported since the last heartbeat, and whether the job was cancelled.

    Written by the handler (its thread, for a sync one), read by the heartbeat task on the
    event loop: a lock keeps a value reported while a heartbeat takes the others."""

    __slots__ = ("_checkpoint", "_lock", "_progress", "cancel_requested")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Any = UNSET
        self._checkpoint: Any = UNSET
        self.cancel_requested = False

    def report(self, progress: Any = UNSET, checkpoint: Any = UNSET) -> None:
        with self._lock:
            if progress is not UNSET:
                self._progress = progress
            if checkpoint is not UNSET:
                self._checkpoint = checkpoint

    def take(self) -> tuple[Any, Any]:
        """The pending (progress, checkpoint), each ``UNSET`` if none; they are no longer
        pending (``restore`` puts them back when the heartbeat did not get through)."""
        with self._lock:
            taken = self._progress, self._checkpoint
            self._progress = self._checkpoint = UNSET
            return taken

    def restore(self, progress: Any, checkpoint: Any) -> None:
        """Put back what ``take`` gave, unless something newer was reported since."""
        with self._lock:
            if self._progress is UNSET:
                self._progress = progress
            if self._checkpoint is UNSET:
                self._checkpoint = checkpoint

    @property
    def checkpoint_pending(self) -> bool:
        return self._checkpoint is not UNSET


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records start with ``job <id> <queue>#<attempt>:`` and carry
    ``job_id``, ``queue`` and ``attempt`` as record attributes (for structured handlers)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"job {extra['job_id']} {extra['queue']}#{extra['attempt']}: {msg}", kwargs


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """The job a handler is running.

    Attributes:
        id: the job id (unique in the cluster).
        queue: its queue.
        payload: the value given at enqueue (bytes stay bytes).
        attempt: 1 on the first delivery; a job can be delivered more than once (at-least-once),
            so handlers should be idempotent, or fence with ``token``.
        token: the fencing token of this delivery. Pass it to downstream systems (a database
            row's version check, a storage API's precondition...) and let them refuse a write
            whose token is lower than one they have seen: a worker whose lease expired (paused,
            partitioned) then cannot overwrite the work of the worker that took over. The
            worker's own ack is fenced the same way.
        priority: 0..9.
        lease_expires_ms: cluster time (ms since the epoch) when the lease ended as claimed;
            the worker heartbeats, so it moves forward while the handler runs.
        worker: the worker's name, as recorded on the job.
        logger: a ``logging.LoggerAdapter`` whose lines name this job.
        parents: for a job enqueued with ``depends_on`` (once released) or a batch callback,
            each parent's id -> its result; ``None`` for any other job.
        parent_states: each parent's id -> its final state (``succeeded``; ``dead`` or
            ``cancelled`` for a job that runs on failure, or an ``on_complete`` callback).
        checkpoint: the last checkpoint an earlier attempt saved (``save_checkpoint``), to
            resume from; ``None`` on a first attempt or when none was saved.
    """

    id: int
    queue: str
    payload: Any
    attempt: int
    token: int
    priority: int
    lease_expires_ms: int
    worker: str
    logger: JobLogger = field(repr=False)
    parents: dict[int, Any] | None = None
    parent_states: dict[int, str] | None = None
    checkpoint: Any = None
    reports: Reports = field(default_factory=Reports, repr=False, compare=False)

    def report_progress(self, value: Any) -> None:
        """Record the job's progress (any JSON value or bytes, up to 64 KiB encoded), shown
        by ``GET /v1/jobs/{id}``, ``raftq job`` and ``JobHandle.progress()``. Only the latest
        value counts: it rides on the worker's next heartbeat (no extra write). Thread-safe."""
        self.reports.report(progress=value)

    def save_checkpoint(self, value: Any) -> None:
        """Record where to resume (any JSON value or bytes, up to 64 KiB encoded): if this
        attempt fails or its lease expires, the next attempt gets it as ``job.checkpoint``.
        Only the latest value counts: it rides on the worker's next heartbeat, and one is sent
        before a nack so that it is not lost. Dropped once the job succeeds. Thread-safe."""
        self.reports.report(checkpoint=value)

    @property
    def cancel_requested(self) -> bool:
        """The job was cancelled while running. An ``async`` handler is cancelled at once; a
        sync one cannot be, so a long one should poll this and return. Either way the worker
        neither acks nor nacks the job."""
        return self.reports.cancel_requested


def describe_error(exc: BaseException) -> str:
    """The error recorded on a nack: ``Type: message``, then the innermost frames of the
    traceback (at most 8, without event-loop and thread-pool frames), at most 4,000 characters.
    """
    message = str(exc)
    head = f"{type(exc).__qualname__}: {message}" if message else type(exc).__qualname__
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_MACHINERY)
    ]
    if not frames:
        return head[:_MAX_ERROR_CHARS]
    shown = frames[-_MAX_FRAMES:]
    skipped = len(frames) - len(shown)
    title = "Traceback (most recent call last"
    title += f", {skipped} outer frame(s) omitted):" if skipped else "):"
    text = "\n".join([head, "", title, "".join(traceback.format_list(shown)).rstrip()])
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 16] + "\n... (truncated)"
    return text
