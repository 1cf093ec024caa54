"""What a handler receives (``Job``), and how a failure is written into the job's error."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import traceback
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JOB_LOGGER", "Job", "JobLogger", "describe_error"]

JOB_LOGGER = "raftq.worker.job"
# Frames of the machinery that runs a handler (the worker, its thread pool, the event loop) say
# nothing about the failure: they are dropped from the recorded traceback.
_MACHINERY = (
    *(os.path.dirname(m.__file__ or "") + os.sep for m in (asyncio, concurrent.futures)),
    os.path.dirname(__file__) + os.sep,  # raftq.worker itself (runner, thread pool)
)
_MAX_FRAMES = 8
_MAX_ERROR_CHARS = 4_000


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
