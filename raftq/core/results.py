"""Results: what the machine answers, one per command, in command order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Acked",
    "BatchCreated",
    "Cancelled",
    "Claimed",
    "Configured",
    "Enqueued",
    "Extended",
    "Fired",
    "Lease",
    "LimitsSet",
    "Nacked",
    "Paused",
    "Purged",
    "Reason",
    "Refusal",
    "Released",
    "Requeued",
    "Result",
    "Resumed",
    "ScheduleDeleted",
    "SchedulePaused",
    "SchedulePut",
    "Ticked",
    "VersionEnabled",
    "all_new",
]


class Reason(StrEnum):
    """Why a command was refused. Stable strings: the HTTP layer maps them to statuses."""

    MALFORMED = "malformed"  # bytes that do not decode to a command (HTTP 400)
    UNSUPPORTED_VERSION = "unsupported_version"  # entry from a newer format (HTTP 400)
    INVALID = "invalid"  # a field out of range (HTTP 400)
    NOT_FOUND = "not_found"  # unknown job (HTTP 404)
    STALE_TOKEN = "stale_token"  # token is not the current lease's (HTTP 409)
    LEASE_EXPIRED = "lease_expired"  # the lease ended in cluster time (HTTP 409)
    FINISHED = "finished"  # the job is already succeeded, dead or cancelled (HTTP 409)
    TOO_MANY_QUEUES = "too_many_queues"  # queue count limit reached (HTTP 409)
    REQUEST_ID_REUSED = "request_id_reused"  # the id answered another command (HTTP 409)
    VERSION_NOT_ENABLED = "version_not_enabled"  # needs a log version not enabled (HTTP 409)
    STALE_SLOT = "stale_slot"  # a schedule slot not after its last one (HTTP 409)
    SCHEDULE_PAUSED = "schedule_paused"  # a fire of a paused schedule (HTTP 409)
    TOO_MANY_SCHEDULES = "too_many_schedules"  # schedule count limit reached (HTTP 409)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A command the machine refused, with the rule it broke. A result, never raised: the
    client-facing exception for it is ``raftq.errors.Rejected``."""

    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Enqueued:
    """``ids[i]`` answers ``jobs[i]``; ``existing[i]`` is true when a live key returned an
    already existing job instead of creating one."""

    ids: tuple[int, ...]
    existing: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Lease:
    """One claimed job. ``token`` is the fencing token: pass it to ack/nack/heartbeat and to
    any downstream system that must refuse writes from an expired lease holder."""

    id: int
    queue: str
    payload: bytes
    priority: int
    attempt: int
    token: int
    lease_expires_ms: int
    # A job released by its dependencies, or a batch callback: each parent's (id, final
    # state, result), in dependency order (``deps.py``). ``None`` for any other job.
    parents: tuple[tuple[int, str, bytes | None], ...] | None = None
    # The latest checkpoint an earlier attempt's heartbeats carried (``None``: none).
    checkpoint: bytes | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    jobs: tuple[Lease, ...]


@dataclass(frozen=True, slots=True)
class Extended:
    """A heartbeat's answer. ``cancel_requested``: the job was cancelled while this lease was
    live; nothing was extended and ``lease_expires_ms`` is the cancel's cluster time."""

    lease_expires_ms: int
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class Acked:
    job_id: int


@dataclass(frozen=True, slots=True)
class Nacked:
    """``state`` is ``delayed``/``queued`` (will retry at ``run_at_ms``) or ``dead``."""

    job_id: int
    state: str
    run_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Released:
    """``Release``'s answer: the job is queued again."""

    job_id: int


@dataclass(frozen=True, slots=True)
class Cancelled:
    job_id: int


@dataclass(frozen=True, slots=True)
class Requeued:
    count: int


@dataclass(frozen=True, slots=True)
class Purged:
    count: int


@dataclass(frozen=True, slots=True)
class Paused:
    queue: str


@dataclass(frozen=True, slots=True)
class Resumed:
    queue: str


@dataclass(frozen=True, slots=True)
class Configured:
    queue: str
    dedup_window_ms: int
    retention_ms: int


@dataclass(frozen=True, slots=True)
class LimitsSet:
    """The queue's limits after a ``SetLimits`` (``None``: no such limit)."""

    queue: str
    concurrency: int | None
    rate_limit: int | None
    rate_period_ms: int | None
    group_concurrency: int | None
    group_rate_limit: int | None
    group_rate_period_ms: int | None


@dataclass(frozen=True, slots=True)
class Ticked:
    clock_ms: int


@dataclass(frozen=True, slots=True)
class VersionEnabled:
    """The enabled log version after an ``EnableVersion`` (never below what it was)."""

    version: int


@dataclass(frozen=True, slots=True)
class SchedulePut:
    """``created``: the schedule is new (else it replaced one of the same name)."""

    name: str
    created: bool


@dataclass(frozen=True, slots=True)
class ScheduleDeleted:
    name: str


@dataclass(frozen=True, slots=True)
class Fired:
    """A fire (``Fire``) or a trigger (``TriggerSchedule``) of schedule ``name`` for
    ``fire_ms``; ``job_id`` is the job enqueued, 0 when the slot was skipped (overlap)."""

    name: str
    fire_ms: int
    job_id: int


@dataclass(frozen=True, slots=True)
class SchedulePaused:
    name: str
    paused: bool


@dataclass(frozen=True, slots=True)
class BatchCreated:
    """``CreateBatch``'s answer: the batch id and its jobs' ids (as ``Enqueued.ids``)."""

    batch: int
    ids: tuple[int, ...]


Result = (
    Refusal
    | Enqueued
    | Claimed
    | Extended
    | Acked
    | Nacked
    | Released
    | Cancelled
    | Requeued
    | Purged
    | Paused
    | Resumed
    | Configured
    | LimitsSet
    | Ticked
    | VersionEnabled
    | SchedulePut
    | ScheduleDeleted
    | Fired
    | SchedulePaused
    | BatchCreated
)


_ALL_NEW: dict[int, tuple[bool, ...]] = {}
_ALL_NEW_MAX = 64


def all_new(n: int) -> tuple[bool, ...]:
    """``(False,) * n`` (``Enqueued.existing`` when every job is new), one shared tuple per
    length: the request-id memory keeps every answer for ``REQUEST_WINDOW_MS``, and a 1000-job
    answer's flags are 8 KB when each has its own. Immutable and equal to a fresh tuple, so
    sharing changes no result."""
    t = _ALL_NEW.get(n)
    if t is None:
        t = (False,) * n
        if len(_ALL_NEW) < _ALL_NEW_MAX:  # bounded: batch lengths are chosen by clients
            _ALL_NEW[n] = t
    return t
