"""Command handlers: domain rules and state transitions. Called only by ``Machine``.

Every handler validates first and mutates after, so a refusal leaves the state untouched.
Time is ``m.clock_ms`` (the max ``now_ms`` seen); a lease is live while
``clock_ms < lease_expires_ms``.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from raftq.core.backoff import backoff_ms
from raftq.core.commands import (
    Ack,
    Cancel,
    Claim,
    Configure,
    Enqueue,
    Heartbeat,
    Nack,
    NewJob,
    Pause,
    Purge,
    RequeueDead,
    Resume,
)
from raftq.core.job import FINISHED_STATES, Job, JobState
from raftq.core.limits import (
    DEFAULT_LEASE_MS,
    DEFAULT_MAX_ATTEMPTS,
    MAX_BATCH_JOBS,
    MAX_CLAIM,
    MAX_DEDUP_WINDOW_MS,
    MAX_DELAY_MS,
    MAX_ERROR_CHARS,
    MAX_FINISHED_PER_QUEUE,
    MAX_KEY_CHARS,
    MAX_LEASE_MS,
    MAX_MAX_ATTEMPTS,
    MAX_PAYLOAD_BYTES,
    MAX_QUEUES,
    MAX_RETENTION_MS,
    MAX_TIME_MS,
    MAX_WORKER_CHARS,
    valid_queue_name,
)
from raftq.core.queue import QueueState
from raftq.core.results import (
    Acked,
    Cancelled,
    Claimed,
    Configured,
    Enqueued,
    Extended,
    Lease,
    Nacked,
    Paused,
    Purged,
    Reason,
    Rejected,
    Requeued,
    Result,
    Resumed,
)

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = [
    "ack",
    "advance_queue",
    "cancel",
    "claim",
    "configure",
    "enqueue",
    "heartbeat",
    "nack",
    "pause_resume",
    "purge",
    "requeue_dead",
]

_B48 = (1 << 48) - 1
MAX_CLAIM_QUEUES = 64


def _invalid(message: str) -> Rejected:
    return Rejected(Reason.INVALID, message)


def _in_range(value: int | None, lo: int, hi: int) -> bool:
    return value is None or lo <= value <= hi


def _queue(m: Machine, name: str) -> QueueState | Rejected:
    """The queue ``name``, created on first use."""
    q = m.queues.get(name)
    if q is not None:
        return q
    if not valid_queue_name(name):
        return _invalid(f"queue name must match [A-Za-z0-9_.:-]{{1,128}}: {name[:140]!r}")
    if len(m.queues) >= MAX_QUEUES:
        return Rejected(Reason.TOO_MANY_QUEUES, f"at most {MAX_QUEUES} queues")
    q = m.queues[name] = QueueState(name)
    return q


def _move(q: QueueState, job: Job, state: JobState) -> None:
    q.count_out(job)
    job.state = state
    q.count_in(job)


def _finish(m: Machine, q: QueueState, job: Job, state: JobState) -> None:
    """Move a job into a finished state and start its key's dedup window."""
    _move(q, job, state)
    job.finished_ms = m.clock_ms
    job.lease_expires_ms = 0
    if state is JobState.DEAD:
        q.dead[job.id] = None
    else:
        q.finished.append(job.id)
    if job.key is not None and q.keys.get(job.key) == job.id:
        q.key_expiry.append((m.clock_ms + q.dedup_window_ms, job.key, job.id))


def _schedule(m: Machine, q: QueueState, job: Job, delay_ms: int) -> None:
    """Make ``job`` claimable after ``delay_ms`` (ready at once when 0)."""
    job.ready_at_ms = m.clock_ms + delay_ms
    job.lease_expires_ms = 0
    if delay_ms > 0:
        _move(q, job, JobState.DELAYED)
        q.push_delayed(job)
    else:
        _move(q, job, JobState.QUEUED)
        q.push_ready(job)


def advance_queue(m: Machine, q: QueueState) -> None:
    """Bring ``q`` up to cluster time: due delayed jobs become ready, expired leases return
    the job (or dead-letter it when out of attempts), old results and keys are collected."""
    clock, jobs = m.clock_ms, m.jobs
    while (job := q.pop_due_delayed(jobs, clock)) is not None:
        _move(q, job, JobState.QUEUED)
        q.push_ready(job)
    while (job := q.pop_expired_lease(jobs, clock)) is not None:
        if job.attempts >= job.max_attempts:
            job.error = f"lease expired after attempt {job.attempts} (worker {job.worker})"
            _finish(m, q, job, JobState.DEAD)
            job.lease_expires_ms = job.finished_ms  # ended by expiry, see _lease_refusal
        else:
            # Ready from the moment the lease ended, so it keeps its place among peers.
            job.ready_at_ms = job.lease_expires_ms
            _move(q, job, JobState.QUEUED)
            q.push_ready(job)
    while q.finished:
        old = jobs[q.finished[0]]
        if len(q.finished) <= MAX_FINISHED_PER_QUEUE and old.finished_ms + q.retention_ms > clock:
            break
        q.finished.popleft()
        q.count_out(old)
        del jobs[old.id]
    _expire_keys(m, q)
    q.compact(jobs)


def _expire_keys(m: Machine, q: QueueState) -> None:
    clock = m.clock_ms
    while q.key_expiry and q.key_expiry[0][0] <= clock:
        _, key, job_id = q.key_expiry.popleft()
        if q.keys.get(key) != job_id:
            continue
        job = m.jobs.get(job_id)
        if job is None or (
            job.state in FINISHED_STATES and job.finished_ms + q.dedup_window_ms <= clock
        ):
            del q.keys[key]
        elif job.state in FINISHED_STATES:  # the window was widened after it finished
            q.key_expiry.append((job.finished_ms + q.dedup_window_ms, key, job_id))


def _validate_new_job(nj: NewJob) -> str | None:
    if len(nj.payload) > MAX_PAYLOAD_BYTES:
        return f"payload larger than {MAX_PAYLOAD_BYTES} bytes"
    if not 0 <= nj.priority <= 9:
        return f"priority must be 0..9, got {nj.priority}"
    if nj.delay_ms is not None and nj.run_at_ms is not None:
        return "give delay_ms or run_at_ms, not both"
    if not _in_range(nj.delay_ms, 0, MAX_DELAY_MS):
        return f"delay_ms must be 0..{MAX_DELAY_MS}"
    if not _in_range(nj.run_at_ms, 0, MAX_TIME_MS):
        return f"run_at_ms must be 0..{MAX_TIME_MS}"
    if nj.key is not None and not 1 <= len(nj.key) <= MAX_KEY_CHARS:
        return f"key must be 1..{MAX_KEY_CHARS} characters"
    if not _in_range(nj.max_attempts, 1, MAX_MAX_ATTEMPTS):
        return f"max_attempts must be 1..{MAX_MAX_ATTEMPTS}"
    if not _in_range(nj.lease_ms, 1, MAX_LEASE_MS):
        return f"lease_ms must be 1..{MAX_LEASE_MS}"
    return None


def _live_key(m: Machine, q: QueueState, key: str) -> int | None:
    job_id = q.keys.get(key)
    if job_id is None:
        return None
    job = m.jobs.get(job_id)
    if (
        job is not None
        and job.state in FINISHED_STATES
        and job.finished_ms + q.dedup_window_ms <= m.clock_ms
    ):
        return None
    return job_id  # unfinished, or finished within the window (collected jobs included)


def enqueue(m: Machine, cmd: Enqueue) -> Result:
    if not 1 <= len(cmd.jobs) <= MAX_BATCH_JOBS:
        return _invalid(f"an enqueue holds 1..{MAX_BATCH_JOBS} jobs")
    for i, nj in enumerate(cmd.jobs):
        problem = _validate_new_job(nj)
        if problem is not None:
            return _invalid(f"jobs[{i}]: {problem}" if len(cmd.jobs) > 1 else problem)
    q = _queue(m, cmd.queue)
    if isinstance(q, Rejected):
        return q
    _expire_keys(m, q)
    clock = m.clock_ms
    ids: list[int] = []
    existing: list[bool] = []
    for nj in cmd.jobs:
        if nj.key is not None and (found := _live_key(m, q, nj.key)) is not None:
            ids.append(found)
            existing.append(True)
            continue
        job_id = m.next_id
        m.next_id += 1
        if nj.run_at_ms is not None:
            due_ms = max(nj.run_at_ms, clock)
        else:
            due_ms = clock + (nj.delay_ms or 0)
        job = Job(
            id=job_id,
            queue=q.name,
            payload=nj.payload,
            priority=nj.priority,
            state=JobState.DELAYED if due_ms > clock else JobState.QUEUED,
            max_attempts=DEFAULT_MAX_ATTEMPTS if nj.max_attempts is None else nj.max_attempts,
            lease_ms=DEFAULT_LEASE_MS if nj.lease_ms is None else nj.lease_ms,
            ready_at_ms=due_ms,
            created_ms=clock,
            key=nj.key,
        )
        m.jobs[job_id] = job
        q.count_in(job)
        if job.state is JobState.QUEUED:
            q.push_ready(job)
        else:
            q.push_delayed(job)
        if nj.key is not None:
            q.keys[nj.key] = job_id
        ids.append(job_id)
        existing.append(False)
    return Enqueued(tuple(ids), tuple(existing))


def claim(m: Machine, cmd: Claim) -> Result:
    if not 1 <= len(cmd.queues) <= MAX_CLAIM_QUEUES:
        return _invalid(f"claim from 1..{MAX_CLAIM_QUEUES} queues")
    for name in cmd.queues:
        if not valid_queue_name(name):
            return _invalid(f"queue name must match [A-Za-z0-9_.:-]{{1,128}}: {name[:140]!r}")
    if not 1 <= len(cmd.worker) <= MAX_WORKER_CHARS:
        return _invalid(f"worker must be 1..{MAX_WORKER_CHARS} characters")
    if not 1 <= cmd.max <= MAX_CLAIM:
        return _invalid(f"max must be 1..{MAX_CLAIM}")
    if not _in_range(cmd.lease_ms, 1, MAX_LEASE_MS):
        return _invalid(f"lease_ms must be 1..{MAX_LEASE_MS}")
    sources: list[QueueState] = []
    for name in dict.fromkeys(cmd.queues):  # de-duplicated, order kept
        q = m.queues.get(name)
        if q is not None and not q.paused:
            advance_queue(m, q)
            sources.append(q)
    jobs, clock = m.jobs, m.clock_ms
    out: list[Lease] = []
    while len(out) < cmd.max:
        best: QueueState | None = None
        best_key = 0
        for q in sources:
            key = q.peek_ready(jobs)
            if key is not None and (best is None or key < best_key):
                best, best_key = q, key
        if best is None:
            break
        heapq.heappop(best.ready)  # == best_key: peek_ready validated the top
        job = jobs[best_key & _B48]
        m.last_token += 1
        _move(best, job, JobState.LEASED)
        job.attempts += 1
        job.token = m.last_token
        job.worker = cmd.worker
        job.lease_expires_ms = clock + (job.lease_ms if cmd.lease_ms is None else cmd.lease_ms)
        best.push_lease(job)
        out.append(
            Lease(
                job.id,
                job.queue,
                job.payload,
                job.priority,
                job.attempts,
                job.token,
                job.lease_expires_ms,
            )
        )
    return Claimed(tuple(out))


def _leased_job(m: Machine, job_id: int, token: int) -> tuple[Job, QueueState] | Rejected:
    """The job if ``token`` is its live lease; else why not."""
    job = m.jobs.get(job_id)
    if job is None:
        return Rejected(Reason.NOT_FOUND, f"no job {job_id}")
    if token != job.token:
        return Rejected(Reason.STALE_TOKEN, f"token {token} is not job {job_id}'s current lease")
    if job.state is JobState.LEASED and m.clock_ms < job.lease_expires_ms:
        return job, m.queues[job.queue]
    if job.state is JobState.LEASED or job.lease_expires_ms != 0:
        return Rejected(Reason.LEASE_EXPIRED, f"the lease of job {job_id} expired")
    if job.state in FINISHED_STATES:
        return Rejected(Reason.FINISHED, f"job {job_id} is already {job.state}")
    return Rejected(Reason.STALE_TOKEN, f"job {job_id} is {job.state}, not leased")


def heartbeat(m: Machine, cmd: Heartbeat) -> Result:
    if not _in_range(cmd.lease_ms, 1, MAX_LEASE_MS):
        return _invalid(f"lease_ms must be 1..{MAX_LEASE_MS}")
    found = _leased_job(m, cmd.job_id, cmd.token)
    if isinstance(found, Rejected):
        return found
    job, q = found
    expires_ms = m.clock_ms + (job.lease_ms if cmd.lease_ms is None else cmd.lease_ms)
    if expires_ms != job.lease_expires_ms:  # an equal key is already in the heap
        job.lease_expires_ms = expires_ms
        q.push_lease(job)
    return Extended(expires_ms)


def ack(m: Machine, cmd: Ack) -> Result:
    if cmd.result is not None and len(cmd.result) > MAX_PAYLOAD_BYTES:
        return _invalid(f"result larger than {MAX_PAYLOAD_BYTES} bytes")
    found = _leased_job(m, cmd.job_id, cmd.token)
    if isinstance(found, Rejected):
        return found
    job, q = found
    job.result = cmd.result
    _finish(m, q, job, JobState.SUCCEEDED)
    advance_queue(m, q)
    return Acked(job.id)


def nack(m: Machine, cmd: Nack) -> Result:
    if not _in_range(cmd.retry_in_ms, 0, MAX_DELAY_MS):
        return _invalid(f"retry_in_ms must be 0..{MAX_DELAY_MS}")
    found = _leased_job(m, cmd.job_id, cmd.token)
    if isinstance(found, Rejected):
        return found
    job, q = found
    job.error = None if cmd.error is None else cmd.error[:MAX_ERROR_CHARS]
    if job.attempts >= job.max_attempts:
        _finish(m, q, job, JobState.DEAD)
        result = Nacked(job.id, JobState.DEAD.value, None)
    else:
        delay_ms = backoff_ms(job.id, job.attempts) if cmd.retry_in_ms is None else cmd.retry_in_ms
        _schedule(m, q, job, delay_ms)
        result = Nacked(job.id, job.state.value, job.ready_at_ms)
    advance_queue(m, q)
    return result


def cancel(m: Machine, cmd: Cancel) -> Result:
    job = m.jobs.get(cmd.job_id)
    if job is None:
        return Rejected(Reason.NOT_FOUND, f"no job {cmd.job_id}")
    if job.state in FINISHED_STATES:
        return Rejected(Reason.FINISHED, f"job {cmd.job_id} is already {job.state}")
    q = m.queues[job.queue]
    _finish(m, q, job, JobState.CANCELLED)
    advance_queue(m, q)
    return Cancelled(job.id)


def requeue_dead(m: Machine, cmd: RequeueDead) -> Result:
    if cmd.job_ids is not None and len(cmd.job_ids) > MAX_BATCH_JOBS:
        return _invalid(f"requeue at most {MAX_BATCH_JOBS} ids at once")
    q = m.queues.get(cmd.queue)
    if q is None:
        return Requeued(0)
    chosen = list(q.dead) if cmd.job_ids is None else list(dict.fromkeys(cmd.job_ids))
    count = 0
    for job_id in chosen:
        if job_id not in q.dead:
            continue
        del q.dead[job_id]
        job = m.jobs[job_id]
        job.attempts = 0
        job.finished_ms = 0
        if job.key is not None and job.key not in q.keys:
            q.keys[job.key] = job.id
        _schedule(m, q, job, 0)
        count += 1
    return Requeued(count)


def purge(m: Machine, cmd: Purge) -> Result:
    q = m.queues.get(cmd.queue)
    if q is None:
        return Purged(0)
    advance_queue(m, q)
    doomed: list[Job] = []
    for key in q.ready:
        job = m.jobs.get(key & _B48)
        if job is not None and job.state is JobState.QUEUED:
            doomed.append(job)
    for key in q.delayed:
        job = m.jobs.get(key & _B48)
        if job is not None and job.state is JobState.DELAYED:
            doomed.append(job)
    doomed.extend(m.jobs[job_id] for job_id in q.dead)
    seen: dict[int, None] = {}
    for job in doomed:
        if job.id in seen:  # a stale entry of a job that is valid elsewhere in the heap
            continue
        seen[job.id] = None
        q.count_out(job)
        del m.jobs[job.id]
        if job.key is not None and q.keys.get(job.key) == job.id:
            del q.keys[job.key]
    q.ready, q.delayed, q.dead = [], [], {}
    return Purged(len(seen))


def pause_resume(m: Machine, cmd: Pause | Resume) -> Result:
    q = _queue(m, cmd.queue)
    if isinstance(q, Rejected):
        return q
    if isinstance(cmd, Pause):
        q.paused = True
        return Paused(q.name)
    q.paused = False
    return Resumed(q.name)


def configure(m: Machine, cmd: Configure) -> Result:
    if not _in_range(cmd.dedup_window_ms, 0, MAX_DEDUP_WINDOW_MS):
        return _invalid(f"dedup_window_ms must be 0..{MAX_DEDUP_WINDOW_MS}")
    if not _in_range(cmd.retention_ms, 0, MAX_RETENTION_MS):
        return _invalid(f"retention_ms must be 0..{MAX_RETENTION_MS}")
    q = _queue(m, cmd.queue)
    if isinstance(q, Rejected):
        return q
    if cmd.dedup_window_ms is not None:
        q.dedup_window_ms = cmd.dedup_window_ms
    if cmd.retention_ms is not None:
        q.retention_ms = cmd.retention_ms
    advance_queue(m, q)
    return Configured(q.name, q.dedup_window_ms, q.retention_ms)
