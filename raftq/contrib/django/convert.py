"""What a Django task becomes in raftq and back: priorities, times, states and errors.

Plain functions without Django (so they are tested alone); ``backend`` and ``worker`` use them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from raftq.errors import RaftqError

__all__ = [
    "STATUS_OF_STATE",
    "JobError",
    "error_text",
    "from_ms",
    "parse_error",
    "raftq_priority",
    "to_ms",
]

DJANGO_MIN_PRIORITY = -100
DJANGO_MAX_PRIORITY = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_TRACEBACK = "Traceback (most recent call last)"
_MAX_TRACEBACK_CHARS = 16_000

# A job's state (``GET /v1/jobs/{id}``) -> the ``TaskResultStatus`` of its Django task.
STATUS_OF_STATE = {
    "queued": "READY",
    "delayed": "READY",
    "waiting": "READY",
    "leased": "RUNNING",
    "succeeded": "SUCCESSFUL",
    "dead": "FAILED",
    "cancelled": "FAILED",
}


class JobError(RaftqError):
    """A Django task's job failed outside the task's function (a timeout, a worker stopped or
    lost its lease, a task path that does not import...): the ``exception_class`` of such a
    ``TaskError``, whose ``traceback`` holds the error raftq recorded."""


_JOB_ERROR_PATH = f"{JobError.__module__}.{JobError.__qualname__}"


def raftq_priority(priority: int) -> int:
    """Django's priority (-100..100, higher first) as raftq's (0..9, higher first): 201
    values in ten bands of 20 or 21, in order: -100..-80 -> 0, -79..-60 -> 1, ..., -19..0 -> 4,
    1..20 -> 5, ..., 81..100 -> 9. Django's default, 0, is 4."""
    if not DJANGO_MIN_PRIORITY <= priority <= DJANGO_MAX_PRIORITY:
        raise ValueError(f"priority must be in -100..100, got {priority!r}")
    return (priority - DJANGO_MIN_PRIORITY) * 10 // 201


def to_ms(when: datetime) -> int:
    """An aware datetime as integer ms since the epoch (raftq's ``run_at_ms``), 0 at least."""
    if when.tzinfo is None:
        raise ValueError("run_after must be an aware datetime")
    return max(0, (when - _EPOCH) // _MS)


def from_ms(ms: int) -> datetime:
    """Integer ms since the epoch as an aware UTC datetime."""
    return _EPOCH + ms * _MS


def error_text(exception_class_path: str, traceback: str) -> str:
    """The job error the worker records for a task that raised: the exception's class path on
    the first line, then its traceback (as Django's ``TaskError`` holds them; long ones keep
    their beginning and end)."""
    if len(traceback) > _MAX_TRACEBACK_CHARS:
        half = _MAX_TRACEBACK_CHARS // 2
        traceback = f"{traceback[:half]}\n... (truncated)\n{traceback[-half:]}"
    return f"{exception_class_path}\n{traceback}"


def parse_error(text: str) -> tuple[str, str]:
    """``(exception_class_path, traceback)`` of a job's error: as ``error_text`` wrote it, or
    ``JobError``'s path and the whole text for an error raftq recorded itself."""
    first, _, rest = text.partition("\n")
    if _PATH.fullmatch(first) and rest.startswith(_TRACEBACK):
        return first, rest
    return _JOB_ERROR_PATH, text
