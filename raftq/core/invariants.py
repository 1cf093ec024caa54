"""A full check of the machine's invariants: O(state), for tests and after a restore."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from raftq.core.errors import CorruptStateError
from raftq.core.fair import rate_ok
from raftq.core.job import FINISHED_STATES, Job, JobState, delayed_key, lease_key, ready_key
from raftq.core.queue import QueueState
from raftq.core.tally import (
    CLAIMED,
    DEAD,
    EXPIRED,
    FAILED,
    MAX_WORKERS,
    RETRIED,
    SUCCEEDED,
)

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = ["check_invariants"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CorruptStateError(message)


def _check_tally(q: QueueState) -> None:
    """The outcome counters agree with each other (they are bumped by the same transitions)."""
    t = q.tally.totals
    _require(all(n >= 0 for n in t), f"{q.name}: a negative counter")
    # Every failed or expired attempt is either retried or dead-lettered.
    _require(t[FAILED] + t[EXPIRED] == t[RETRIED] + t[DEAD], f"{q.name}: failed+expired mismatch")
    _require(q.tally.run.count == t[SUCCEEDED], f"{q.name}: run histogram != succeeded")
    _require(q.tally.wait.count <= t[CLAIMED], f"{q.name}: more waits than claims")
    finished = t[SUCCEEDED] + t[FAILED] + t[EXPIRED]
    _require(finished <= t[CLAIMED], f"{q.name}: more attempts ended than claimed")
    _require(len(q.tally.workers) <= MAX_WORKERS, f"{q.name}: too many workers remembered")


def _check_long_job(job: Job) -> None:
    """A finished job keeps no checkpoint; only a cancelled job has cancel_requested."""
    if job.state in FINISHED_STATES:
        _require(job.checkpoint is None, f"finished job {job.id} keeps a checkpoint")
    _require(
        not job.cancel_requested or job.state is JobState.CANCELLED,
        f"job {job.id} has cancel_requested but is {job.state}",
    )


def check_invariants(m: Machine) -> None:
    """Raise ``CorruptStateError`` naming the first broken invariant. Linear in the state."""
    by_queue: dict[str, list[Job]] = {name: [] for name in m.queues}
    for job_id, job in m.jobs.items():
        _require(job.id == job_id, f"job {job_id} stored under another id")
        _require(0 < job_id < m.next_id, f"job id {job_id} not below next_id {m.next_id}")
        _require(job.queue in m.queues, f"job {job_id} in unknown queue {job.queue!r}")
        _require(0 <= job.token <= m.last_token, f"job {job_id} token above last_token")
        _require(job.attempts >= 0, f"job {job_id} negative attempts")
        if job.state is JobState.LEASED:
            _require(job.attempts <= job.max_attempts, f"job {job_id} leased past max_attempts")
            _require(job.token > 0, f"leased job {job_id} without a token")
            _require(job.claim_lease_ms > 0, f"leased job {job_id} without a lease length")
        elif job.state is JobState.QUEUED:
            _require(job.ready_at_ms <= m.clock_ms, f"queued job {job_id} ready in the future")
        _check_long_job(job)
        by_queue[job.queue].append(job)
    for q in m.queues.values():
        _check_tally(q)
        mine = by_queue[q.name]
        counts = Counter(j.state for j in mine)
        for state in JobState:
            n = counts[state]
            _require(q.counts[state] == n, f"{q.name}: counts[{state}]={q.counts[state]} != {n}")
        by_priority = Counter(j.priority for j in mine if j.state is JobState.QUEUED)
        for p in range(10):
            n = by_priority[p]
            _require(q.ready_by_priority[p] == n, f"{q.name}: ready_by_priority[{p}] wrong")
        _require(all(i in m.jobs for i in q.group_of), f"{q.name}: group of an unknown job")
        if q.lim is not None:
            _check_groups(m, q, mine)
        ready, delayed, leases = Counter(q.ready_keys()), Counter(q.delayed), Counter(q.leases)
        for j in mine:
            if j.state is JobState.QUEUED:
                key = ready_key(j.priority, j.ready_at_ms, j.id)
                _require(ready[key] == 1, f"queued job {j.id}: {ready[key]} ready entries")
            elif j.state is JobState.DELAYED:
                key = delayed_key(j.ready_at_ms, j.id)
                _require(delayed[key] == 1, f"delayed job {j.id}: {delayed[key]} entries")
            elif j.state is JobState.LEASED:
                key = lease_key(j.lease_expires_ms, j.token, j.id)
                # At least one: a heartbeat that moves a lease back to an end it had before
                # makes an old entry valid again; the copy is skipped once the job moves on.
                _require(leases[key] >= 1, f"leased job {j.id}: no lease entry")
        dead = [j.id for j in mine if j.state is JobState.DEAD]
        _require(sorted(q.dead) == sorted(dead), f"{q.name}: dead list differs from dead jobs")
        done = [j.id for j in mine if j.state in FINISHED_STATES and j.state is not JobState.DEAD]
        _require(sorted(q.finished) == sorted(done), f"{q.name}: finished list differs")
        finished_at = [m.jobs[i].finished_ms for i in q.finished]
        _require(finished_at == sorted(finished_at), f"{q.name}: finished not in finish order")
        expiry = [e[0] for e in q.key_expiry]
        _require(expiry == sorted(expiry), f"{q.name}: key_expiry not in finish order")
        for name, key_owner in q.keys.items():
            owner = m.jobs.get(key_owner)
            _require(owner is None or owner.key == name, f"{q.name}: key {name!r} points elsewhere")
    _require(len(m.requests) == len(m.request_order), "request table and its order differ")
    _check_flow(m)


def _check_flow(m: Machine) -> None:
    """Dependencies and batches (``deps.py``, ``batches.py``)."""
    f = m.flow
    _require(not f.events and not f.closing, "flow events left between commands")
    for job in m.jobs.values():
        if job.state is not JobState.WAITING:
            continue
        link = f.links.get(job.id)
        _require(link is not None, f"waiting job {job.id} without dependencies")
        assert link is not None
        open_deps = [d for d in link.deps if d not in link.outcomes]
        _require(link.remaining == len(open_deps) > 0, f"waiting job {job.id}: wrong remaining")
        for d in open_deps:
            _require(job.id in f.dependants.get(d, ()), f"waiting job {job.id} not indexed")
    for b in f.batches.values():
        ok = sum(1 for st, _ in b.outcomes.values() if st is JobState.SUCCEEDED)
        _require(b.succeeded == ok, f"batch {b.id}: succeeded count wrong")
        live = sum(1 for j in b.jobs if j in m.jobs)
        _require(b.live == live > 0, f"batch {b.id}: live count wrong")
        for j in b.jobs:
            member = m.jobs.get(j)
            finished = member is not None and member.state in FINISHED_STATES
            _require(
                member is None or finished == (j in b.outcomes), f"batch {b.id}: outcome of {j}"
            )


def _check_groups(m: Machine, q: QueueState, mine: list[Job]) -> None:
    """The group index of a limited queue (``fair.py``) agrees with its jobs, and no group
    that may be served is left out of the ring (nothing starves)."""
    lim = q.lim
    assert lim is not None
    _require(not q.ready, f"{q.name}: limited queue with a queue-wide ready heap")
    queued: Counter[str] = Counter()
    leased: Counter[str] = Counter()
    for j in mine:
        name = q.group_of.get(j.id, "")
        if j.state is JobState.QUEUED:
            queued[name] += 1
            g = lim.groups.get(name)
            _require(g is not None, f"queued job {j.id}: group {name!r} not indexed")
            if g is not None:
                key = ready_key(j.priority, j.ready_at_ms, j.id)
                _require(g.ready.count(key) == 1, f"queued job {j.id}: not once in its group")
        elif j.state is JobState.LEASED:
            leased[name] += 1
    ring = {(t, g.name) for t, g in (*lim.ring, *lim.early)}
    turns = [t for t, _ in lim.ring]
    _require(turns == sorted(turns), f"{q.name}: ring not in turn order")
    limits = lim.limits
    in_ring = sum(1 for g in lim.groups.values() if g.ring)
    _require(lim.eligible == in_ring, f"{q.name}: eligible {lim.eligible} != {in_ring}")
    for name, g in lim.groups.items():
        _require(g.queued == queued[name], f"{q.name}/{name}: queued count wrong")
        _require(g.leased == leased[name], f"{q.name}/{name}: leased count wrong")
        _require(bool(g.queued or g.leased or g.wake), f"{q.name}/{name}: idle group kept")
        free = limits.group_concurrency is None or g.leased < limits.group_concurrency
        if g.ring:
            _require(g.queued > 0 and free, f"{q.name}/{name}: ineligible group in the ring")
            _require((g.ring, name) in ring, f"{q.name}/{name}: turn not in the ring")
        elif g.queued and free:
            rate = rate_ok(
                g.starts, limits.group_rate_limit, limits.group_rate_period_ms, m.clock_ms
            )
            due = g.wake != 0 and g.wake <= m.clock_ms  # woken by the next advance
            _require(not rate or due, f"{q.name}/{name}: servable group out of the ring")
        if g.wake:
            _require((g.wake, name) in set(lim.wake), f"{q.name}/{name}: wake not scheduled")
