"""Command handlers, part 1: shared helpers, queue advance, enqueue and claim.

Handlers are called only by ``Machine``. ``lease_ops`` holds heartbeat/ack/nack/cancel and
``admin_ops`` the admin commands; both build on the helpers here.

Every handler validates first and mutates after, so a refusal leaves the state untouched.
Time is ``m.clock_ms`` (the max ``now_ms`` seen); a lease is live while
``clock_ms < lease_expires_ms``.

The state is a function of cluster time: a handler that decides on a queue's jobs first
brings the queue to the current time (``advance_queue``), and every transition that time
causes is dated when it happened (a lease that ran out of attempts kills its job at the
lease's end), so no outcome depends on when a tick last ran (only the collection of old
results, and reads, follow the last advance). That advance is not a change: it is what the
state already is at that time.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from raftq.core.commands import Claim, Enqueue, NewJob
from raftq.core.job import FINISHED_STATES, Job, JobState
from raftq.core.limits import (
    DEFAULT_LEASE_MS,
    DEFAULT_MAX_ATTEMPTS,
    MAX_BATCH_JOBS,
    MAX_CLAIM,
    MAX_CLAIM_QUEUES,
    MAX_DELAY_MS,
    MAX_FINISHED_PER_QUEUE,
    MAX_KEY_CHARS,
    MAX_LEASE_MS,
    MAX_MAX_ATTEMPTS,
    MAX_PAYLOAD_BYTES,
    MAX_QUEUES,
    MAX_TIME_MS,
    MAX_WORKER_CHARS,
    valid_queue_name,
)
from raftq.core.queue import QueueState
from raftq.core.results import Claimed, Enqueued, Lease, Reason, Refusal, Result, all_new
from raftq.core.tally import CLAIMED, DEAD, ENQUEUED, EXPIRED, RETRIED

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = [
    "ID_MASK",
    "advance_queue",
    "claim",
    "enqueue",
    "expire_keys",
    "finish",
    "in_range",
    "invalid",
    "lease_of",
    "live_key",
    "move",
    "queue_for",
    "schedule",
    "validate_new_job",
]

ID_MASK = (1 << 48) - 1  # the job id inside a ready or delayed heap key


def invalid(message: str) -> Refusal:
    return Refusal(Reason.INVALID, message)


def in_range(value: int | None, lo: int, hi: int) -> bool:
    return value is None or lo <= value <= hi


def queue_for(m: Machine, name: str) -> QueueState | Refusal:
    """The queue ``name``, created on first use."""
    q = m.queues.get(name)
    if q is not None:
        return q
    if not valid_queue_name(name):
        return invalid(f"queue name must match [A-Za-z0-9_.:-]{{1,128}}: {name[:140]!r}")
    if len(m.queues) >= MAX_QUEUES:
        return Refusal(Reason.TOO_MANY_QUEUES, f"at most {MAX_QUEUES} queues")
    q = m.queues[name] = QueueState(name)
    return q


def move(q: QueueState, job: Job, state: JobState) -> None:
    q.count_out(job)
    job.state = state
    q.count_in(job)


def finish(m: Machine, q: QueueState, job: Job, state: JobState, at_ms: int) -> None:
    """Move a job into a finished state as of cluster time ``at_ms`` (now, or when its lease
    ended); its key's dedup window runs from then. A job that others depend on, or a batch
    member, leaves an event that ``deps.settle`` handles at the end of the command."""
    move(q, job, state)
    f = m.flow
    if job.id in f.dependants or job.id in f.batch_of:
        result = job.result if state is JobState.SUCCEEDED else None
        f.events.append((job.id, state, result, f.batch_of.get(job.id)))
    job.finished_ms = at_ms
    job.lease_expires_ms = 0
    job.drop_checkpoint()  # a finished job keeps its last progress only
    if state is JobState.DEAD:
        # No key_expiry entry: a dead letter may be requeued and finish again, so an entry
        # could outlive its meaning. Its key is judged from the job itself (live_key), which
        # stays until requeued or purged.
        q.dead[job.id] = None
    else:
        q.finished.append(job.id)
        if job.key is not None and q.keys.get(job.key) == job.id:
            q.key_expiry.append((at_ms, job.key, job.id))


def schedule(m: Machine, q: QueueState, job: Job, delay_ms: int) -> None:
    """Make ``job`` claimable after ``delay_ms`` (ready at once when 0)."""
    job.ready_at_ms = m.clock_ms + delay_ms
    job.lease_expires_ms = 0
    if delay_ms > 0:
        move(q, job, JobState.DELAYED)
        q.push_delayed(job)
    else:
        move(q, job, JobState.QUEUED)
        q.push_ready(job)


def advance_queue(m: Machine, q: QueueState) -> None:
    """Bring ``q`` up to cluster time: due delayed jobs become ready, expired leases return
    the job (or dead-letter it when out of attempts), old results and keys are collected."""
    clock, jobs = m.clock_ms, m.jobs
    while (job := q.pop_due_delayed(jobs, clock)) is not None:
        move(q, job, JobState.QUEUED)
        q.push_ready(job)
    totals = q.tally.totals
    while (job := q.pop_expired_lease(jobs, clock)) is not None:
        totals[EXPIRED] += 1
        if job.attempts >= job.max_attempts:
            totals[DEAD] += 1
            # Dead as of the lease's end, not of this advance: whenever the queue is advanced,
            # the job's history (and its key's dedup window) is the same.
            job.error = f"lease expired after attempt {job.attempts} (worker {job.worker})"
            ended_ms = job.lease_expires_ms
            finish(m, q, job, JobState.DEAD, ended_ms)
            job.lease_expires_ms = ended_ms  # ended by expiry: see lease_ops
        else:
            totals[RETRIED] += 1
            # Ready from the moment the lease ended, so it keeps its place among peers.
            job.ready_at_ms = job.lease_expires_ms
            move(q, job, JobState.QUEUED)
            q.push_ready(job)
    while q.finished:
        old = jobs[q.finished[0]]
        if len(q.finished) <= MAX_FINISHED_PER_QUEUE and old.finished_ms + q.retention_ms > clock:
            break
        q.finished.popleft()
        q.count_out(old)
        del jobs[old.id]
        if m.fired:  # a job a schedule made: its origin goes with it
            m.fired.pop(old.id, None)
        if q.group_of:
            q.group_of.pop(old.id, None)
        if m.flow.links or m.flow.batch_of:
            forget(m, old.id)
    if q.lim is not None and q.lim.wake:
        q.lim.advance(clock)
    expire_keys(m, q)
    q.tally.forget_workers(clock)
    q.compact(jobs)


def expire_keys(m: Machine, q: QueueState) -> None:
    """Forget the keys of succeeded and cancelled jobs whose dedup window has ended.

    ``key_expiry`` holds ``(finished_ms, key, id)`` in finish order (those finish at the
    clock, which never goes back), and the window is applied here, so a changed window
    takes effect on every key, including those of jobs already collected.
    """
    until_ms = m.clock_ms - q.dedup_window_ms
    expiry = q.key_expiry
    while expiry and expiry[0][0] <= until_ms:
        _, key, job_id = expiry.popleft()
        if q.keys.get(key) == job_id:  # else the key was purged or taken by a newer job
            del q.keys[key]


def validate_new_job(nj: NewJob) -> str | None:
    if len(nj.payload) > MAX_PAYLOAD_BYTES:
        return f"payload larger than {MAX_PAYLOAD_BYTES} bytes"
    if not 0 <= nj.priority <= 9:
        return f"priority must be 0..9, got {nj.priority}"
    if nj.delay_ms is not None and nj.run_at_ms is not None:
        return "give delay_ms or run_at_ms, not both"
    if not in_range(nj.delay_ms, 0, MAX_DELAY_MS):
        return f"delay_ms must be 0..{MAX_DELAY_MS}"
    if not in_range(nj.run_at_ms, 0, MAX_TIME_MS):
        return f"run_at_ms must be 0..{MAX_TIME_MS}"
    if nj.key is not None and not 1 <= len(nj.key) <= MAX_KEY_CHARS:
        return f"key must be 1..{MAX_KEY_CHARS} characters"
    if not in_range(nj.max_attempts, 1, MAX_MAX_ATTEMPTS):
        return f"max_attempts must be 1..{MAX_MAX_ATTEMPTS}"
    if not in_range(nj.lease_ms, 1, MAX_LEASE_MS):
        return f"lease_ms must be 1..{MAX_LEASE_MS}"
    if nj.group is not None and not valid_queue_name(nj.group):
        return f"group must match [A-Za-z0-9_.:-]{{1,128}}: {nj.group[:140]!r}"
    return None


def live_key(m: Machine, q: QueueState, key: str) -> int | None:
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
    # Unfinished, or finished within the window. A collected job's key is still here only
    # while its window runs (expire_keys drops it when it ends; enqueue advances first).
    return job_id


def enqueue(m: Machine, cmd: Enqueue) -> Result:
    if not 1 <= len(cmd.jobs) <= MAX_BATCH_JOBS:
        return invalid(f"an enqueue holds 1..{MAX_BATCH_JOBS} jobs")
    keyed = False
    for i, nj in enumerate(cmd.jobs):
        problem = validate_new_job(nj)
        if problem is not None:
            return invalid(f"jobs[{i}]: {problem}" if len(cmd.jobs) > 1 else problem)
        keyed = keyed or nj.key is not None
    q = queue_for(m, cmd.queue)
    if isinstance(q, Refusal):
        return q
    if keyed:
        # Keys are judged at cluster time: a lease that ran out of attempts has made its job
        # dead (and started its key's window) even if nothing advanced the queue since.
        advance_queue(m, q)
    clock = m.clock_ms
    ids: list[int] = []
    existing: list[bool] = []
    for nj in cmd.jobs:
        if nj.key is not None and (found := live_key(m, q, nj.key)) is not None:
            ids.append(found)
            existing.append(True)
            continue
        job_id = m.next_id
        m.next_id += 1
        # A job due now shares the clock's int object with created_ms (``clock + 0`` would be
        # a new int: 32 bytes per job, 32 MB at 1M queued).
        if nj.run_at_ms is not None:
            due_ms = clock if nj.run_at_ms <= clock else nj.run_at_ms
        else:
            due_ms = clock + nj.delay_ms if nj.delay_ms else clock
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
        if nj.group is not None:
            q.group_of[job_id] = nj.group  # before count_in: the limiter files it by group
        q.count_in(job)
        if job.state is JobState.QUEUED:
            q.push_ready(job)
        else:
            q.push_delayed(job)
        if nj.key is not None:
            q.keys[nj.key] = job_id
        ids.append(job_id)
        existing.append(False)
        q.tally.totals[ENQUEUED] += 1
    return Enqueued(tuple(ids), tuple(existing) if any(existing) else all_new(len(ids)))


def _validate_claim(cmd: Claim) -> str | None:
    if not 1 <= len(cmd.queues) <= MAX_CLAIM_QUEUES:
        return f"claim from 1..{MAX_CLAIM_QUEUES} queues"
    for name in cmd.queues:
        if not valid_queue_name(name):
            return f"queue name must match [A-Za-z0-9_.:-]{{1,128}}: {name[:140]!r}"
    if not 1 <= len(cmd.worker) <= MAX_WORKER_CHARS:
        return f"worker must be 1..{MAX_WORKER_CHARS} characters"
    if not 1 <= cmd.max <= MAX_CLAIM:
        return f"max must be 1..{MAX_CLAIM}"
    if not in_range(cmd.lease_ms, 1, MAX_LEASE_MS):
        return f"lease_ms must be 1..{MAX_LEASE_MS}"
    return None


def claim(m: Machine, cmd: Claim) -> Result:
    problem = _validate_claim(cmd)
    if problem is not None:
        return invalid(problem)
    sources: list[QueueState] = []
    for name in dict.fromkeys(cmd.queues):  # de-duplicated, order kept
        q = m.queues.get(name)
        if q is not None and not q.paused:
            advance_queue(m, q)
            sources.append(q)
    jobs, clock = m.jobs, m.clock_ms
    for q in sources:  # a worker polling an empty queue is still a worker of it
        q.tally.saw_worker(cmd.worker, clock)
    out: list[Lease] = []
    while len(out) < cmd.max:
        best: QueueState | None = None
        best_key = 0
        for q in sources:
            key = q.peek_ready(jobs) if q.lim is None else q.lim.peek(jobs, clock)
            if key is not None and (best is None or key < best_key):
                best, best_key = q, key
        if best is None:
            break
        if best.lim is None:
            heapq.heappop(best.ready)  # == best_key: peek_ready validated the top
        else:
            best.lim.take(clock)  # the same, from the group its peek chose
        job = jobs[best_key & ID_MASK]
        m.last_token += 1
        move(best, job, JobState.LEASED)
        tally = best.tally
        tally.totals[CLAIMED] += 1
        if job.attempts == 0:  # first claim (of this life: a requeued dead letter restarts)
            tally.wait.observe(clock - job.ready_at_ms)
        job.attempts += 1
        job.token = m.last_token
        job.new_attempt()  # each attempt reports its own progress
        claim_lease_ms = job.lease_ms if cmd.lease_ms is None else cmd.lease_ms
        job.set_run(cmd.worker, claim_lease_ms, clock)
        job.lease_expires_ms = clock + claim_lease_ms
        best.push_lease(job)
        out.append(lease_of(m, job))
    return Claimed(tuple(out))


def lease_of(m: Machine, job: Job) -> Lease:
    """The claim answer's view of a leased ``job`` (its current token and lease end, and its
    parents' outcomes when it has dependencies: ``deps.py``)."""
    links = m.flow.links
    return Lease(
        job.id,
        job.queue,
        job.payload,
        job.priority,
        job.attempts,
        job.token,
        job.lease_expires_ms,
        parents_of(m, job.id) if links and job.id in links else None,
        job.checkpoint,
    )


def forget(m: Machine, job_id: int) -> None:
    """A deleted job leaves the dependency and batch tables (``deps.forget``)."""
    from raftq.core.deps import forget as forget_flow  # noqa: PLC0415 - deps imports ops

    forget_flow(m, job_id)


def parents_of(m: Machine, job_id: int) -> tuple[tuple[int, str, bytes | None], ...] | None:
    from raftq.core.deps import parents_of as flow_parents  # noqa: PLC0415 - deps imports ops

    return flow_parents(m, job_id)
