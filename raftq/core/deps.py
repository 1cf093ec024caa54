"""Dependencies: jobs that wait for other jobs (``EnqueueFlow``), and the per-command settle.

A job enqueued with dependencies is ``waiting`` (in no heap) until each dependency finished.
Every finish of a watched job (a dependency, or a batch member: ``batches.py``) is noted as an
event by ``ops.finish``; ``settle`` runs at the end of the command that produced the events,
so a dependant is released in the same log entry as its last dependency's successful ack, and
a cancellation cascades in that entry too.

Rules: a dependency that succeeds counts as done; one that dies or is cancelled (or is purged
unfinished) cancels the dependant with error ``dependency_failed`` unless it was enqueued with
``run_on_failure`` (then it counts as done). The last one done releases the dependant:
``queued`` (or ``delayed`` until its own ``run_at_ms``). Each waiting dependant holds its
parents' outcomes (state and result) from the moment each finished, so a parent's result stays
available to its dependant whatever the parent's retention; the claim carries them
(``Lease.parents``). ``dependants`` indexes waiting jobs by parent: release is
O(dependants). Invariant: between commands, ``events`` and ``closing`` are empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftq.core import batches
from raftq.core.commands import CreateBatch, EnqueueFlow, FlowJob
from raftq.core.job import FINISHED_STATES, Job, JobState
from raftq.core.limits import (
    DEFAULT_LEASE_MS,
    DEFAULT_MAX_ATTEMPTS,
    MAX_BATCH_JOBS,
    MAX_DEPENDENCIES,
    MAX_QUEUES,
    valid_queue_name,
)
from raftq.core.ops import advance_queue, finish, invalid, live_key, move, validate_new_job
from raftq.core.queue import QueueState
from raftq.core.results import BatchCreated, Enqueued, Reason, Refusal, Result, all_new
from raftq.core.tally import CANCELLED, ENQUEUED

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = [
    "DEPENDENCY_FAILED",
    "Flow",
    "Link",
    "create_batch",
    "create_job",
    "enqueue_flow",
    "forget",
    "note",
    "parents_of",
    "settle",
]

DEPENDENCY_FAILED = "dependency_failed"  # the error of a dependant cancelled by its parent
Outcome = tuple[JobState, bytes | None]
_WAITING = JobState.WAITING


class Link:
    """What a job with dependencies (or a batch callback) keeps until it is deleted.

    ``deps``: its dependencies, de-duplicated, in the order given. ``remaining``: how many are
    not yet done (meaningful while ``waiting``). ``outcomes``: parent id -> (final state,
    result) of each finished parent; in ``deps`` order once released.
    """

    __slots__ = ("deps", "outcomes", "remaining", "run_on_failure")

    def __init__(self, deps: tuple[int, ...], run_on_failure: bool) -> None:
        self.deps = deps
        self.remaining = 0
        self.run_on_failure = run_on_failure
        self.outcomes: dict[int, Outcome] = {}


class Flow:
    """The machine's dependency and batch tables (``m.flow``)."""

    __slots__ = ("batch_of", "batches", "closing", "dependants", "events", "links", "next_batch")

    def __init__(self) -> None:
        self.links: dict[int, Link] = {}
        # parent id -> ids of jobs that were waiting on it (a dependant cancelled meanwhile
        # stays listed and is skipped): dropped when the parent finishes.
        self.dependants: dict[int, list[int]] = {}
        self.batches: dict[int, batches.Batch] = {}
        self.batch_of: dict[int, int] = {}  # live batch member -> batch id (derived)
        self.next_batch = 1
        # Pending within one command: (job id, state entered, result, batch id); settle
        # empties it.
        self.events: list[tuple[int, JobState, bytes | None, int | None]] = []
        self.closing: list[int] = []  # batches whose last member was deleted

    def watched(self, job_id: int) -> bool:
        return job_id in self.dependants or job_id in self.batch_of


def note(m: Machine, job: Job, state: JobState) -> None:
    """Record that ``job`` entered ``state`` (finished, or requeued: QUEUED) for ``settle``."""
    f = m.flow
    if job.id in f.dependants or job.id in f.batch_of:
        result = job.result if state is JobState.SUCCEEDED else None
        f.events.append((job.id, state, result, f.batch_of.get(job.id)))


def forget(m: Machine, job_id: int) -> None:
    """``job_id`` was deleted (collected or purged): drop what the tables keep for it."""
    f = m.flow
    f.links.pop(job_id, None)
    b = f.batch_of.pop(job_id, None)
    if b is not None:
        batch = f.batches[b]
        batch.live -= 1
        if batch.live == 0:
            f.closing.append(b)


def parents_of(m: Machine, job_id: int) -> tuple[tuple[int, str, bytes | None], ...] | None:
    """The parents' outcomes a claim of ``job_id`` carries (``None``: not a linked job)."""
    link = m.flow.links.get(job_id)
    if link is None:
        return None
    return tuple((pid, st.value, res) for pid, (st, res) in link.outcomes.items())


def settle(m: Machine) -> None:
    """Apply the consequences of this command's events: release or cancel dependants, count
    batch members, fire due callbacks; cascades until nothing is left."""
    f = m.flow
    while f.events:
        events, f.events = f.events, []
        for job_id, state, result, b in events:
            waiting = f.dependants.pop(job_id, None) if state in FINISHED_STATES else None
            for dep_id in waiting or ():
                _parent_done(m, dep_id, job_id, state, result)
            if b is not None and b in f.batches:
                batches.member_changed(m, f.batches[b], job_id, state, result)
    for b in f.closing:
        batch = f.batches.get(b)
        if batch is not None and batch.live == 0:
            del f.batches[b]
    f.closing.clear()


def _parent_done(m: Machine, job_id: int, parent: int, state: JobState, res: bytes | None) -> None:
    job = m.jobs.get(job_id)
    link = m.flow.links.get(job_id)
    if job is None or link is None or job.state is not JobState.WAITING:
        return  # cancelled (and maybe collected) while it waited
    link.outcomes[parent] = (state, res)
    if state is JobState.SUCCEEDED or link.run_on_failure:
        link.remaining -= 1
        if link.remaining == 0:
            release(m, job, link)
    else:
        fail(m, job)


def release(m: Machine, job: Job, link: Link) -> None:
    """A waiting job whose dependencies are all done becomes claimable (or delayed)."""
    link.outcomes = {d: link.outcomes[d] for d in link.deps}
    q = m.queues[job.queue]
    if job.ready_at_ms > m.clock_ms:  # its own run_at_ms / delay_ms is still ahead
        move(q, job, JobState.DELAYED)
        q.push_delayed(job)
    else:
        job.ready_at_ms = m.clock_ms
        move(q, job, JobState.QUEUED)
        q.push_ready(job)


def fail(m: Machine, job: Job) -> None:
    """Cancel a waiting job whose dependency failed (its own dependants follow: an event)."""
    q = m.queues[job.queue]
    job.error = DEPENDENCY_FAILED
    q.tally.totals[CANCELLED] += 1
    finish(m, q, job, JobState.CANCELLED, m.clock_ms)


# -- enqueue --------------------------------------------------------------------------------


def _validate(m: Machine, jobs: tuple[FlowJob, ...], batch: bool) -> Refusal | None:
    n = len(jobs)
    if not 1 <= n <= MAX_BATCH_JOBS:
        return invalid(f"an enqueue holds 1..{MAX_BATCH_JOBS} jobs")
    new_queues: dict[str, None] = {}
    for i, fj in enumerate(jobs):
        where = f"jobs[{i}]: " if n > 1 else ""
        problem = _job_problem(fj, i, n, batch)
        if problem is not None:
            return invalid(where + problem)
        for d in fj.depends_on:
            parent = m.jobs.get(d)
            if parent is not None:
                # Judged at cluster time: past its retention, a parent is collected now.
                advance_queue(m, m.queues[parent.queue])
            if d not in m.jobs:
                return Refusal(Reason.NOT_FOUND, f"{where}no job {d} to depend on")
        if fj.queue not in m.queues:
            new_queues[fj.queue] = None
    cycle = _find_cycle(jobs)
    if cycle is not None:
        return invalid(f"dependencies form a cycle through jobs[{cycle}]")
    return _gone_key_reference(m, jobs) or _queue_room(m, new_queues)


def _gone_key_reference(m: Machine, jobs: tuple[FlowJob, ...]) -> Refusal | None:
    """A job named by ``@N`` whose key is live for a job already collected would depend on
    a job that is no longer kept: refused, as an unknown id is."""
    named = {k for fj in jobs for k in fj.depends_on_new}
    for k in sorted(named):
        key = jobs[k].job.key
        q = m.queues.get(jobs[k].queue)
        if key is None or q is None:
            continue
        advance_queue(m, q)
        found = live_key(m, q, key)
        if found is not None and found not in m.jobs:
            return Refusal(Reason.NOT_FOUND, f"@{k}: key {key!r} names job {found}, not kept")
    return None


def _queue_room(m: Machine, new_queues: dict[str, None]) -> Refusal | None:
    if len(m.queues) + len(new_queues) > MAX_QUEUES:
        return Refusal(Reason.TOO_MANY_QUEUES, f"at most {MAX_QUEUES} queues")
    return None


def _job_problem(fj: FlowJob, i: int, n: int, batch: bool) -> str | None:
    problem = validate_new_job(fj.job)
    if problem is not None:
        return problem
    if not valid_queue_name(fj.queue):
        return f"queue name must match [A-Za-z0-9_.:-]{{1,128}}: {fj.queue[:140]!r}"
    if batch and fj.job.key is not None:
        return "a batch job cannot have a key (retry a batch with its request id)"
    if len(fj.depends_on) + len(fj.depends_on_new) > MAX_DEPENDENCIES:
        return f"at most {MAX_DEPENDENCIES} dependencies"
    for k in fj.depends_on_new:
        if not 0 <= k < n or k == i:
            return f"depends_on @{k} does not name another job of this request"
    return None


def _find_cycle(jobs: tuple[FlowJob, ...]) -> int | None:
    """An index on a cycle of ``depends_on_new`` references, if any (iterative DFS)."""
    state = [0] * len(jobs)  # 0 unseen, 1 on the path, 2 done
    for start in range(len(jobs)):
        if state[start]:
            continue
        stack = [(start, 0)]
        state[start] = 1
        while stack:
            i, k = stack[-1]
            refs = jobs[i].depends_on_new
            if k == len(refs):
                state[i] = 2
                stack.pop()
                continue
            stack[-1] = (i, k + 1)
            nxt = refs[k]
            if state[nxt] == 1:
                return nxt
            if state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, 0))
    return None


def create_job(m: Machine, q: QueueState, fj: FlowJob, waiting: bool) -> Job:
    nj, clock = fj.job, m.clock_ms
    if nj.run_at_ms is not None:
        due_ms = max(clock, nj.run_at_ms)
    else:
        due_ms = clock + nj.delay_ms if nj.delay_ms else clock
    state = JobState.DELAYED if due_ms > clock else JobState.QUEUED
    job = Job(
        id=m.next_id,
        queue=q.name,
        payload=nj.payload,
        priority=nj.priority,
        state=JobState.WAITING if waiting else state,
        max_attempts=DEFAULT_MAX_ATTEMPTS if nj.max_attempts is None else nj.max_attempts,
        lease_ms=DEFAULT_LEASE_MS if nj.lease_ms is None else nj.lease_ms,
        ready_at_ms=due_ms,
        created_ms=clock,
        key=nj.key,
    )
    m.next_id += 1
    m.jobs[job.id] = job
    if nj.group is not None:
        q.group_of[job.id] = nj.group  # before count_in: the limiter files it by group
    q.count_in(job)
    if job.state is JobState.QUEUED:
        q.push_ready(job)
    elif job.state is JobState.DELAYED:
        q.push_delayed(job)
    if nj.key is not None:
        q.keys[nj.key] = job.id
    q.tally.totals[ENQUEUED] += 1
    return job


def _enqueue(m: Machine, jobs: tuple[FlowJob, ...], batch: int | None) -> Enqueued:
    """Create the (validated) jobs and wire their dependencies; the ids, in order."""
    queues: dict[str, QueueState] = {}
    for fj in jobs:
        if fj.queue not in queues:
            q = m.queues.get(fj.queue)
            if q is None:
                q = m.queues[fj.queue] = QueueState(fj.queue)
            # Dependencies and keys are judged at cluster time (a lease past its end may
            # have killed its job): bring every queue involved up to now.
            advance_queue(m, q)
            queues[fj.queue] = q
    ids: list[int] = []
    existing: list[bool] = []
    created: list[Job | None] = []
    for fj in jobs:
        q = queues[fj.queue]
        found = None if fj.job.key is None else live_key(m, q, fj.job.key)
        if found is not None:
            ids.append(found)
            existing.append(True)
            created.append(None)
            continue
        job = create_job(m, q, fj, waiting=bool(fj.depends_on or fj.depends_on_new))
        ids.append(job.id)
        existing.append(False)
        created.append(job)
        if batch is not None:
            m.flow.batch_of[job.id] = batch
    waiting = [(fj, j) for fj, j in zip(jobs, created, strict=True) if j and j.state is _WAITING]
    for fj, job in waiting:
        deps = tuple(dict.fromkeys((*fj.depends_on, *(ids[k] for k in fj.depends_on_new))))
        _wire(m, job, Link(deps, fj.run_on_failure))
    # Dependencies that had already finished: the rules apply now.
    for _, job in waiting:
        link = m.flow.links[job.id]
        failed = any(st is not JobState.SUCCEEDED for st, _ in link.outcomes.values())
        if failed and not link.run_on_failure:
            fail(m, job)
        elif link.remaining == 0:
            release(m, job, link)
    return Enqueued(tuple(ids), tuple(existing) if any(existing) else all_new(len(ids)))


def _wire(m: Machine, job: Job, link: Link) -> None:
    f = m.flow
    f.links[job.id] = link
    for d in link.deps:
        parent = m.jobs[d]
        if parent.state in FINISHED_STATES:
            res = parent.result if parent.state is JobState.SUCCEEDED else None
            link.outcomes[d] = (parent.state, res)
        else:
            f.dependants.setdefault(d, []).append(job.id)
            link.remaining += 1


def enqueue_flow(m: Machine, cmd: EnqueueFlow) -> Result:
    refused = _validate(m, cmd.jobs, batch=False)
    if refused is not None:
        return refused
    return _enqueue(m, cmd.jobs, None)


def create_batch(m: Machine, cmd: CreateBatch) -> Result:
    refused = _validate(m, cmd.jobs, batch=True)
    if refused is not None:
        return refused
    refused = batches.validate_callbacks(m, cmd)
    if refused is not None:
        return refused
    b = batches.open_batch(m, cmd)
    ids = _enqueue(m, cmd.jobs, b.id).ids
    b.jobs = ids
    b.live = len(ids)
    return BatchCreated(b.id, ids)
