"""Jobs, their states, and the integer heap keys that order them.

Heap entries are single ints, not tuples: one int object per queued job instead of a tuple and
three ints keeps 1M queued jobs within the memory budget. An entry is valid only while it equals
the key recomputed from its job (lazy deletion): a cancelled or re-scheduled job leaves a stale
entry that is skipped when it reaches the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "FINISHED_STATES",
    "BatchInfo",
    "Job",
    "JobFlow",
    "JobInfo",
    "JobState",
    "delayed_key",
    "lease_key",
    "ready_key",
    "split_delayed_key",
    "split_lease_key",
]

_B48 = (1 << 48) - 1


class JobState(StrEnum):
    QUEUED = "queued"  # ready: in its queue's ready heap
    DELAYED = "delayed"  # waiting for run_at_ms: in the delayed heap
    LEASED = "leased"  # claimed: token and lease_expires_ms are set, in the lease heap
    SUCCEEDED = "succeeded"  # acked; collected after retention
    DEAD = "dead"  # out of attempts; kept until requeued or purged
    CANCELLED = "cancelled"  # collected after retention
    WAITING = "waiting"  # until its dependencies finished (deps.py): in no heap


FINISHED_STATES = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)


def ready_key(priority: int, ready_at_ms: int, job_id: int) -> int:
    """Min-heap key: higher priority first, then earlier ready time, then lower id (FIFO)."""
    return ((9 - priority) << 96) | (ready_at_ms << 48) | job_id


def delayed_key(run_at_ms: int, job_id: int) -> int:
    return (run_at_ms << 48) | job_id


def split_delayed_key(key: int) -> tuple[int, int]:
    return key >> 48, key & _B48


def lease_key(expires_ms: int, token: int, job_id: int) -> int:
    return (expires_ms << 96) | (token << 48) | job_id


def split_lease_key(key: int) -> tuple[int, int, int]:
    return key >> 96, (key >> 48) & _B48, key & _B48


class Job:
    """One job. Mutable, owned by the machine; the edges see ``JobInfo`` copies.

    Invariants: ``token`` is the token of the latest lease (0 before the first claim);
    ``lease_expires_ms`` is meaningful only in state LEASED; ``ready_at_ms`` is when the job
    became (or becomes) claimable: its heap position in QUEUED, its due time in DELAYED.

    Memory (a million of these at 1M queued): 16 slots make a 160-byte object where 19 made a
    192-byte one. What only a claimed or finished job has lives in two tuples that stay
    ``None`` for a job never claimed nor finished: ``_run`` = (worker, claim_lease_ms,
    claimed_ms) of the latest claim, ``_outcome`` = (result, error), which a long job extends
    to (result, error, progress, checkpoint, cancel_requested) rather than taking a 17th slot
    (a 176-byte object) that most jobs would leave empty. The properties read and write them
    as the separate fields they are everywhere else (results, snapshot records).
    """

    __slots__ = (
        "_outcome",
        "_run",
        "attempts",
        "created_ms",
        "finished_ms",
        "id",
        "key",
        "lease_expires_ms",
        "lease_ms",
        "max_attempts",
        "payload",
        "priority",
        "queue",
        "ready_at_ms",
        "state",
        "token",
    )

    def __init__(
        self,
        *,
        id: int,
        queue: str,
        payload: bytes,
        priority: int,
        state: JobState,
        max_attempts: int,
        lease_ms: int,
        ready_at_ms: int,
        created_ms: int,
        key: str | None,
    ) -> None:
        self.id = id
        self.queue = queue
        self.payload = payload
        self.priority = priority
        self.state = state
        self.attempts = 0
        self.max_attempts = max_attempts
        self.lease_ms = lease_ms
        self.ready_at_ms = ready_at_ms
        self.created_ms = created_ms
        self.key = key
        self.token = 0
        self.lease_expires_ms = 0
        self._run: tuple[str | None, int, int] | None = None
        self._outcome: tuple[Any, ...] | None = None  # see the class docstring
        self.finished_ms = 0

    # -- the latest claim ---------------------------------------------------------------------

    def set_run(self, worker: str | None, claim_lease_ms: int, claimed_ms: int) -> None:
        """Record a claim (or restore one): all three fields change together."""
        if worker is None and claim_lease_ms == 0 and claimed_ms == 0:
            self._run = None
        else:
            self._run = (worker, claim_lease_ms, claimed_ms)

    @property
    def worker(self) -> str | None:
        """The worker of the latest claim (``None`` before the first)."""
        run = self._run
        return None if run is None else run[0]

    @property
    def claim_lease_ms(self) -> int:
        """Length of the current lease as claimed (the claim's lease_ms, else the job's): what
        a heartbeat without lease_ms extends by. Meaningful in state LEASED."""
        run = self._run
        return 0 if run is None else run[1]

    @property
    def claimed_ms(self) -> int:
        """Cluster time of the latest claim (0 before the first): the start of a run, for the
        run-time histogram."""
        run = self._run
        return 0 if run is None else run[2]

    # -- what the latest attempt left -----------------------------------------------------------

    def set_outcome(self, result: bytes | None, error: str | None) -> None:
        outcome = self._outcome
        if outcome is None or len(outcome) == 2:
            self._outcome = None if result is None and error is None else (result, error)
        else:
            self._store(result, error, outcome[2], outcome[3], outcome[4])

    def restore_outcome(self, result: bytes | None, error: str | None, long: Any) -> None:
        """Set from a snapshot's job record (on a job made without ``__init__``): ``long`` is
        ``[progress, checkpoint, cancel_requested]`` or ``None``."""
        if long is None:
            self._store(result, error, None, None, False)
        else:
            progress, checkpoint, cancel = long
            self._store(result, error, progress, checkpoint, cancel is True)

    def _store(
        self,
        result: bytes | None,
        error: str | None,
        progress: bytes | None,
        checkpoint: bytes | None,
        cancel: bool,
    ) -> None:
        if progress is None and checkpoint is None and not cancel:
            self._outcome = None if result is None and error is None else (result, error)
        else:
            self._outcome = (result, error, progress, checkpoint, cancel)

    @property
    def result(self) -> bytes | None:
        outcome = self._outcome
        return None if outcome is None else outcome[0]

    @result.setter
    def result(self, value: bytes | None) -> None:
        self.set_outcome(value, self.error)

    @property
    def error(self) -> str | None:
        outcome = self._outcome
        return None if outcome is None else outcome[1]

    @error.setter
    def error(self, value: str | None) -> None:
        self.set_outcome(self.result, value)

    # -- long jobs: what the heartbeats of a lease carried, and a cancel's request ---------------

    def set_long(self, progress: bytes | None, checkpoint: bytes | None, cancel: bool) -> None:
        """Set all three (or restore them)."""
        self._store(self.result, self.error, progress, checkpoint, cancel)

    def new_attempt(self) -> None:
        """A claim: the progress of the previous attempt goes, its checkpoint stays."""
        o = self._outcome
        if o is not None and len(o) > 2:
            self._store(o[0], o[1], None, o[3], False)

    def drop_checkpoint(self) -> None:
        """The job finished: only the last progress is kept (for display)."""
        o = self._outcome
        if o is not None and len(o) > 2:
            self._store(o[0], o[1], o[2], None, False)

    @property
    def progress(self) -> bytes | None:
        """The latest progress a heartbeat of the current (or, once finished, the last) attempt
        carried; reset by each claim."""
        o = self._outcome
        value: bytes | None = None if o is None or len(o) == 2 else o[2]
        return value

    @property
    def checkpoint(self) -> bytes | None:
        """The latest checkpoint a heartbeat carried, over every attempt; handed to the next
        claim, dropped when the job finishes."""
        o = self._outcome
        value: bytes | None = None if o is None or len(o) == 2 else o[3]
        return value

    @property
    def cancel_requested(self) -> bool:
        """The job was cancelled while a lease of it was live (and log version 3 enabled): a
        heartbeat with that lease's token is answered ``cancel_requested``."""
        o = self._outcome
        return o is not None and len(o) > 2 and o[4] is True

    def info(self, group: str | None = None) -> JobInfo:
        return JobInfo(
            id=self.id,
            queue=self.queue,
            state=self.state,
            priority=self.priority,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            payload=self.payload,
            result=self.result,
            error=self.error,
            run_at_ms=self.ready_at_ms,
            created_ms=self.created_ms,
            key=self.key,
            lease_ms=self.lease_ms,
            token=self.token,
            worker=self.worker if self.state is JobState.LEASED else None,
            lease_expires_ms=self.lease_expires_ms if self.state is JobState.LEASED else None,
            finished_ms=self.finished_ms if self.state in FINISHED_STATES else None,
            group=group,
            progress=self.progress,
            checkpoint=self.checkpoint,
            cancel_requested=self.cancel_requested,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """A read-only copy of a job, safe to hand to another thread."""

    id: int
    queue: str
    state: JobState
    priority: int
    attempts: int
    max_attempts: int
    payload: bytes
    result: bytes | None
    error: str | None
    run_at_ms: int
    created_ms: int
    key: str | None
    lease_ms: int
    token: int
    worker: str | None
    lease_expires_ms: int | None
    finished_ms: int | None
    schedule: str | None = None  # the schedule whose fire made this job
    fire_ms: int | None = None  # the slot (or trigger time) of that fire
    group: str | None = None
    progress: bytes | None = None  # the latest a heartbeat carried (long jobs)
    checkpoint: bytes | None = None  # the latest a heartbeat carried; until the job finishes
    cancel_requested: bool = False  # cancelled while leased: its worker is asked to stop


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFlow:
    """A job's dependencies (``outcomes``: (id, state, result) of those finished so far) and
    its batch."""

    depends_on: tuple[int, ...]
    outcomes: tuple[tuple[int, str, bytes | None], ...]
    on_dependency_failure: str
    batch: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchInfo:
    """A batch: its members, how many are in each state, and the callbacks fired."""

    id: int
    jobs: tuple[int, ...]
    counts: dict[str, int]
    fired: tuple[str, ...]
