"""Command handlers, part 3: admin commands (dead-letter requeue, purge, pause/resume,
configure). Some are linear in a queue's size: admin operations, not hot paths."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from raftq.core import deps
from raftq.core.commands import Configure, Pause, Purge, RequeueDead, Resume, SetLimits
from raftq.core.fair import Limiter, Limits
from raftq.core.job import Job, JobState
from raftq.core.limits import (
    MAX_BATCH_JOBS,
    MAX_DEDUP_WINDOW_MS,
    MAX_RATE_LIMIT,
    MAX_RATE_PERIOD_MS,
    MAX_RETENTION_MS,
    MAX_SLOTS,
)
from raftq.core.ops import (
    ID_MASK,
    advance_queue,
    in_range,
    invalid,
    live_key,
    queue_for,
    schedule,
)
from raftq.core.queue import QueueState
from raftq.core.results import (
    Configured,
    LimitsSet,
    Paused,
    Purged,
    Refusal,
    Requeued,
    Result,
    Resumed,
)
from raftq.core.tally import PURGED, REQUEUED

# From log version 4, a purge handles its jobs in id order (before: in the order of the
# queue's heap arrays, which a replica restored from a snapshot lays out differently, so its
# finished jobs could end up in another order than the other replicas').
_PURGE_IN_ID_ORDER = 4

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = ["configure", "leased_jobs", "pause_resume", "purge", "requeue_dead", "set_limits"]


def requeue_dead(m: Machine, cmd: RequeueDead) -> Result:
    if cmd.job_ids is not None and len(cmd.job_ids) > MAX_BATCH_JOBS:
        return invalid(f"requeue at most {MAX_BATCH_JOBS} ids at once")
    q = m.queues.get(cmd.queue)
    if q is None:
        return Requeued(0)
    advance_queue(m, q)  # leases that ran out of attempts are dead letters by now
    # Oldest first (ids grow with creation); given ids in the order given.
    chosen = sorted(q.dead) if cmd.job_ids is None else list(dict.fromkeys(cmd.job_ids))
    count = 0
    for job_id in chosen:
        if job_id not in q.dead:
            continue
        del q.dead[job_id]
        job = m.jobs[job_id]
        job.attempts = 0
        job.finished_ms = 0
        # The job takes its key back unless another job holds it live. (Presence in
        # ``q.keys`` is not liveness: an expired key may not have been collected yet.)
        if job.key is not None and live_key(m, q, job.key) is None:
            q.keys[job.key] = job.id
        schedule(m, q, job, 0)
        if job.id in m.flow.batch_of:
            deps.note(m, job, JobState.QUEUED)  # unfinished again: its batch counts it so
        count += 1
    q.tally.totals[REQUEUED] += count
    return Requeued(count)


def purge(m: Machine, cmd: Purge) -> Result:
    q = m.queues.get(cmd.queue)
    if q is None:
        return Purged(0)
    advance_queue(m, q)
    doomed: list[Job] = []
    for key in q.ready_keys():
        job = m.jobs.get(key & ID_MASK)
        if job is not None and job.state is JobState.QUEUED:
            doomed.append(job)
    for key in q.delayed:
        job = m.jobs.get(key & ID_MASK)
        if job is not None and job.state is JobState.DELAYED:
            doomed.append(job)
    doomed.extend(m.jobs[job_id] for job_id in q.dead)
    if m.enabled_version >= _PURGE_IN_ID_ORDER:
        # The heaps' array order is not part of the state: a replica restored from a snapshot
        # has the same keys in another layout. The effects below (dependants failed, batch
        # members counted, in the order they finish) must not depend on it.
        doomed.sort(key=_id)
    seen: dict[int, None] = {}
    for job in doomed:
        if job.id in seen:  # a stale entry of a job that is valid elsewhere in the heap
            continue
        seen[job.id] = None
        q.count_out(job)
        del m.jobs[job.id]
        m.fired.pop(job.id, None)
        q.group_of.pop(job.id, None)
        if job.key is not None and q.keys.get(job.key) == job.id:
            del q.keys[job.key]
        if m.flow.links or m.flow.batch_of or m.flow.dependants:
            _purged_flow(m, job)
    q.ready, q.delayed, q.dead = [], [], {}
    if q.lim is not None:  # the group index again, from the leases left (history kept)
        old = q.lim
        q.lim = Limiter(q, m, old.limits)
        q.lim.index([], leased_jobs(m, q), old)
    q.tally.totals[PURGED] += len(seen)
    return Purged(len(seen))


def _id(job: Job) -> int:
    return job.id


def _purged_flow(m: Machine, job: Job) -> None:
    """A purged job that was unfinished fails its dependants and counts as cancelled in its
    batch (a dead one already counted); then it leaves the tables (``deps.py``)."""
    if job.state is not JobState.DEAD and m.flow.watched(job.id):
        m.flow.events.append((job.id, JobState.CANCELLED, None, m.flow.batch_of.get(job.id)))
    deps.forget(m, job.id)


def pause_resume(m: Machine, cmd: Pause | Resume) -> Result:
    q = queue_for(m, cmd.queue)
    if isinstance(q, Refusal):
        return q
    if isinstance(cmd, Pause):
        q.paused = True
        return Paused(q.name)
    q.paused = False
    return Resumed(q.name)


def configure(m: Machine, cmd: Configure) -> Result:
    if not in_range(cmd.dedup_window_ms, 0, MAX_DEDUP_WINDOW_MS):
        return invalid(f"dedup_window_ms must be 0..{MAX_DEDUP_WINDOW_MS}")
    if not in_range(cmd.retention_ms, 0, MAX_RETENTION_MS):
        return invalid(f"retention_ms must be 0..{MAX_RETENTION_MS}")
    q = queue_for(m, cmd.queue)
    if isinstance(q, Refusal):
        return q
    # What expired under the old windows is gone before they change: a new window applies to
    # the keys still live, it never revives a forgotten one.
    advance_queue(m, q)
    if cmd.dedup_window_ms is not None:
        _forget_expired_dead_keys(m, q)
        q.dedup_window_ms = cmd.dedup_window_ms
    if cmd.retention_ms is not None:
        q.retention_ms = cmd.retention_ms
    advance_queue(m, q)
    return Configured(q.name, q.dedup_window_ms, q.retention_ms)


def _forget_expired_dead_keys(m: Machine, q: QueueState) -> None:
    """Drop the keys of dead letters whose window has passed. Other keys are dropped by
    ``expire_keys``; a dead letter's is judged from the job (``live_key``), so a wider window
    would revive it if it stayed. Linear in the dead letters: an admin operation."""
    until_ms = m.clock_ms - q.dedup_window_ms
    for job_id in q.dead:
        job = m.jobs[job_id]
        if job.key is not None and q.keys.get(job.key) == job_id and job.finished_ms <= until_ms:
            del q.keys[job.key]


def leased_jobs(m: Machine, q: QueueState) -> list[Job]:
    """The queue's LEASED jobs, in id order (from its lease heap: linear in the leases)."""
    found: dict[int, Job] = {}
    for key in q.leases:
        job = m.jobs.get(key & ID_MASK)
        if job is not None and job.state is JobState.LEASED:
            found[job.id] = job
    return [found[i] for i in sorted(found)]


def _valid_ready_keys(m: Machine, q: QueueState) -> list[int]:
    out: list[int] = []
    for key in q.ready_keys():
        job = m.jobs.get(key & ID_MASK)
        if job is not None and job.state is JobState.QUEUED and key == ready_key_of(job):
            out.append(key)
    return out


def ready_key_of(job: Job) -> int:
    return ((9 - job.priority) << 96) | (job.ready_at_ms << 48) | job.id


def _check_limits(cmd: SetLimits) -> str | None:
    for name, value in (
        ("concurrency", cmd.concurrency),
        ("group_concurrency", cmd.group_concurrency),
    ):
        if not in_range(value, 1, MAX_SLOTS):
            return f"{name} must be 1..{MAX_SLOTS}"
    for prefix, limit, period in (
        ("rate", cmd.rate_limit, cmd.rate_period_ms),
        ("group_rate", cmd.group_rate_limit, cmd.group_rate_period_ms),
    ):
        if (limit is None) != (period is None):
            return f"{prefix} needs both limit and period_ms"
        if not in_range(limit, 1, MAX_RATE_LIMIT):
            return f"{prefix} limit must be 1..{MAX_RATE_LIMIT}"
        if not in_range(period, 1, MAX_RATE_PERIOD_MS):
            return f"{prefix} period_ms must be 1..{MAX_RATE_PERIOD_MS}"
    return None


def set_limits(m: Machine, cmd: SetLimits) -> Result:
    problem = _check_limits(cmd)
    if problem is not None:
        return invalid(problem)
    q = queue_for(m, cmd.queue)
    if isinstance(q, Refusal):
        return q
    advance_queue(m, q)
    limits = Limits(
        concurrency=cmd.concurrency,
        rate_limit=cmd.rate_limit,
        rate_period_ms=cmd.rate_period_ms,
        group_concurrency=cmd.group_concurrency,
        group_rate_limit=cmd.group_rate_limit,
        group_rate_period_ms=cmd.group_rate_period_ms,
    )
    ready = _valid_ready_keys(m, q)
    old = q.lim
    q.lim = None
    if limits.any():
        q.ready = []
        lim = Limiter(q, m, limits)
        lim.index(ready, leased_jobs(m, q), old)
        q.lim = lim
    else:
        heapq.heapify(ready)
        q.ready = ready
    return LimitsSet(q.name, *limits.fields())
