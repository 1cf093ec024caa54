"""Command handlers, part 4: schedules (``PutSchedule``, ``DeleteSchedule``, ``Fire``,
``TriggerSchedule``, ``SetSchedulePaused``), all of log version 3.

The machine never computes a slot: the leader does (cron and time zones are edge code,
``raftq.service.slots``), and proposes ``Fire(name, slot_ms)``. What the machine decides is
the rule that makes a fire exactly-once: a slot is accepted only above the schedule's
``last_slot_ms``, and accepting it records it and enqueues its job in the same entry. A retry, a
second leader, or a leader that computed the same slot twice is refused (``stale_slot``).

Invariants (``check_schedules``): ``last_slot_ms <= clock_ms``; every entry of
``Machine.fired`` names a job that exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from raftq.core.commands import (
    DeleteSchedule,
    Enqueue,
    Fire,
    NewJob,
    PutSchedule,
    SetSchedulePaused,
    TriggerSchedule,
)
from raftq.core.errors import CodecError, CorruptStateError
from raftq.core.job import FINISHED_STATES
from raftq.core.limits import (
    MAX_DELAY_MS,
    MAX_LEASE_MS,
    MAX_MAX_ATTEMPTS,
    MAX_PAYLOAD_BYTES,
    MAX_SCHEDULE_TEXT_CHARS,
    MAX_SCHEDULES,
    valid_queue_name,
)
from raftq.core.ops import enqueue, in_range, invalid
from raftq.core.results import (
    Enqueued,
    Fired,
    Reason,
    Refusal,
    Result,
    ScheduleDeleted,
    SchedulePaused,
    SchedulePut,
)

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = [
    "OVERLAPS",
    "Schedule",
    "ScheduleInfo",
    "check_schedules",
    "delete_schedule",
    "fire",
    "fired_records",
    "put_schedule",
    "read_schedule_records",
    "schedule_records",
    "set_paused",
    "trigger",
]

OVERLAPS: Final = ("allow", "skip")


class Schedule:
    """One schedule. ``last_slot_ms``: the newest slot fired or skipped, or the cluster time
    the schedule was created or resumed at (slots at or before it never fire). ``last_fire_ms``
    / ``last_job_id``: the latest fire or trigger that made a job (0: none yet)."""

    __slots__ = (
        "catchup_ms",
        "created_ms",
        "cron",
        "every_ms",
        "fires",
        "last_fire_ms",
        "last_job_id",
        "last_slot_ms",
        "lease_ms",
        "max_attempts",
        "name",
        "overlap",
        "paused",
        "payload",
        "priority",
        "queue",
        "skipped",
        "tz",
    )

    def __init__(self, name: str, created_ms: int) -> None:
        self.name = name
        self.created_ms = created_ms
        self.queue = ""
        self.every_ms: int | None = None
        self.cron: str | None = None
        self.tz: str | None = None
        self.payload = b""
        self.priority = 0
        self.max_attempts: int | None = None
        self.lease_ms: int | None = None
        self.overlap = "allow"
        self.catchup_ms = 0
        self.paused = False
        self.last_slot_ms = created_ms
        self.last_fire_ms = 0
        self.last_job_id = 0
        self.fires = 0  # jobs made by slots (triggers not counted)
        self.skipped = 0  # slots recorded without a job (overlap = skip)

    def info(self) -> ScheduleInfo:
        return ScheduleInfo(**{k: getattr(self, k) for k in Schedule.__slots__})


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleInfo:
    """A read-only copy of a schedule (``Schedule``'s fields), safe to hand to another thread."""

    name: str
    created_ms: int
    queue: str
    every_ms: int | None
    cron: str | None
    tz: str | None
    payload: bytes
    priority: int
    max_attempts: int | None
    lease_ms: int | None
    overlap: str
    catchup_ms: int
    paused: bool
    last_slot_ms: int
    last_fire_ms: int
    last_job_id: int
    fires: int
    skipped: int


def _problem(cmd: PutSchedule) -> str | None:
    if not valid_queue_name(cmd.name):
        return f"schedule name must match [A-Za-z0-9_.:-]{{1,128}}: {cmd.name[:140]!r}"
    if not valid_queue_name(cmd.queue):
        return f"queue name must match [A-Za-z0-9_.:-]{{1,128}}: {cmd.queue[:140]!r}"
    if (cmd.every_ms is None) == (cmd.cron is None):
        return "give every_ms or cron, one of them"
    if not in_range(cmd.every_ms, 1, MAX_DELAY_MS):
        return f"every_ms must be 1..{MAX_DELAY_MS}"
    for what, text in (("cron", cmd.cron), ("tz", cmd.tz)):
        if text is not None and not 1 <= len(text) <= MAX_SCHEDULE_TEXT_CHARS:
            return f"{what} must be 1..{MAX_SCHEDULE_TEXT_CHARS} characters"
    if len(cmd.payload) > MAX_PAYLOAD_BYTES:
        return f"payload larger than {MAX_PAYLOAD_BYTES} bytes"
    if not 0 <= cmd.priority <= 9:
        return f"priority must be 0..9, got {cmd.priority}"
    if not in_range(cmd.max_attempts, 1, MAX_MAX_ATTEMPTS):
        return f"max_attempts must be 1..{MAX_MAX_ATTEMPTS}"
    if not in_range(cmd.lease_ms, 1, MAX_LEASE_MS):
        return f"lease_ms must be 1..{MAX_LEASE_MS}"
    if cmd.overlap not in OVERLAPS:
        return "overlap must be allow or skip"
    if not 0 <= cmd.catchup_ms <= MAX_DELAY_MS:
        return f"catchup_ms must be 0..{MAX_DELAY_MS}"
    return None


def put_schedule(m: Machine, cmd: PutSchedule) -> Result:
    problem = _problem(cmd)
    if problem is not None:
        return invalid(problem)
    s = m.schedules.get(cmd.name)
    created = s is None
    if s is None:
        if len(m.schedules) >= MAX_SCHEDULES:
            return Refusal(Reason.TOO_MANY_SCHEDULES, f"at most {MAX_SCHEDULES} schedules")
        s = m.schedules[cmd.name] = Schedule(cmd.name, m.clock_ms)
    elif s.paused and not cmd.paused:  # resumed by this put: as SetSchedulePaused does
        s.last_slot_ms = max(s.last_slot_ms, m.clock_ms)
    s.queue, s.every_ms, s.cron, s.tz = cmd.queue, cmd.every_ms, cmd.cron, cmd.tz
    s.payload, s.priority = cmd.payload, cmd.priority
    s.max_attempts, s.lease_ms = cmd.max_attempts, cmd.lease_ms
    s.overlap, s.catchup_ms, s.paused = cmd.overlap, cmd.catchup_ms, cmd.paused
    return SchedulePut(cmd.name, created)


def delete_schedule(m: Machine, cmd: DeleteSchedule) -> Result:
    if m.schedules.pop(cmd.name, None) is None:
        return _not_found(cmd.name)
    return ScheduleDeleted(cmd.name)


def set_paused(m: Machine, cmd: SetSchedulePaused) -> Result:
    s = m.schedules.get(cmd.name)
    if s is None:
        return _not_found(cmd.name)
    if s.paused and not cmd.paused:
        s.last_slot_ms = max(s.last_slot_ms, m.clock_ms)
    s.paused = cmd.paused
    return SchedulePaused(cmd.name, cmd.paused)


def fire(m: Machine, cmd: Fire) -> Result:
    s = m.schedules.get(cmd.name)
    if s is None:
        return _not_found(cmd.name)
    if s.paused:
        return Refusal(Reason.SCHEDULE_PAUSED, f"schedule {cmd.name} is paused")
    if cmd.slot_ms <= s.last_slot_ms:
        return Refusal(
            Reason.STALE_SLOT,
            f"slot {cmd.slot_ms} of schedule {cmd.name} is not after its last slot "
            f"{s.last_slot_ms}",
        )
    if cmd.slot_ms > m.clock_ms:
        return invalid(f"slot {cmd.slot_ms} is after cluster time {m.clock_ms}")
    if s.overlap == "skip" and _unfinished(m, s.last_job_id):
        s.last_slot_ms = cmd.slot_ms
        s.skipped += 1
        return Fired(s.name, cmd.slot_ms, 0)
    made = _enqueue_job(m, s, cmd.now_ms, cmd.slot_ms)
    if isinstance(made, Refusal):
        return made
    s.last_slot_ms = cmd.slot_ms
    s.fires += 1
    return made


def trigger(m: Machine, cmd: TriggerSchedule) -> Result:
    s = m.schedules.get(cmd.name)
    if s is None:
        return _not_found(cmd.name)
    return _enqueue_job(m, s, cmd.now_ms, m.clock_ms)


def _enqueue_job(m: Machine, s: Schedule, now_ms: int, fire_ms: int) -> Fired | Refusal:
    job = NewJob(
        payload=s.payload, priority=s.priority, max_attempts=s.max_attempts, lease_ms=s.lease_ms
    )
    result = enqueue(m, Enqueue(now_ms=now_ms, queue=s.queue, jobs=(job,)))
    if not isinstance(result, Enqueued):
        assert isinstance(result, Refusal)  # enqueue answers one or the other
        return result
    job_id = result.ids[0]
    m.fired[job_id] = (s.name, fire_ms)
    s.last_fire_ms, s.last_job_id = fire_ms, job_id
    return Fired(s.name, fire_ms, job_id)


def _unfinished(m: Machine, job_id: int) -> bool:
    job = m.jobs.get(job_id)
    return job is not None and job.state not in FINISHED_STATES


def _not_found(name: str) -> Refusal:
    return Refusal(Reason.NOT_FOUND, f"no schedule {name}")


def check_schedules(m: Machine) -> None:
    """Raise ``CorruptStateError`` on a broken schedule invariant (see the module docstring)."""
    for name, s in m.schedules.items():
        if s.name != name or s.last_slot_ms > m.clock_ms:
            raise CorruptStateError(f"schedule {name}: bad name or last slot after the clock")
    for job_id in m.fired:
        if job_id not in m.jobs:
            raise CorruptStateError(f"fired job {job_id} no longer exists")


# -- snapshot records (snapshot.py, version 6) ----------------------------------------------


def schedule_records(m: Machine) -> Iterator[list[Any]]:
    """One record per schedule: its fields in ``Schedule.__slots__`` order."""
    for s in m.schedules.values():
        yield [getattr(s, k) for k in Schedule.__slots__]


def fired_records(m: Machine) -> Iterator[list[Any]]:
    """One record per job a schedule made: ``[job id, schedule name, fire_ms]``."""
    for job_id, (name, fire_ms) in m.fired.items():
        yield [job_id, name, fire_ms]


def read_schedule_records(m: Machine, it: Iterator[Any], n_sched: int, n_fired: int) -> None:
    """Read back ``schedule_records`` then ``fired_records`` (after the jobs: a fired record
    must name a job); ``CodecError`` if malformed."""
    for _ in range(n_sched):
        record = next(it)
        if type(record) is not list or len(record) != len(Schedule.__slots__):
            raise CodecError("corrupt snapshot: bad schedule record")
        s = Schedule.__new__(Schedule)  # every slot set from the record
        for k, v in zip(Schedule.__slots__, record, strict=True):
            setattr(s, k, v)
        m.schedules[s.name] = s
    for _ in range(n_fired):
        job_id, name, fire_ms = next(it)
        if job_id not in m.jobs:
            raise CodecError(f"corrupt snapshot: fired job {job_id} is not a job")
        m.fired[job_id] = (name, fire_ms)
