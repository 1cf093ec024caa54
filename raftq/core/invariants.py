"""A full check of the machine's invariants: O(state), for tests and after a restore."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from raftq.core.errors import CorruptStateError
from raftq.core.job import FINISHED_STATES, JobState, delayed_key, lease_key, ready_key

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = ["check_invariants"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CorruptStateError(message)


def check_invariants(m: Machine) -> None:
    """Raise ``CorruptStateError`` naming the first broken invariant."""
    for job_id, job in m.jobs.items():
        _require(job.id == job_id, f"job {job_id} stored under another id")
        _require(0 < job_id < m.next_id, f"job id {job_id} not below next_id {m.next_id}")
        _require(job.queue in m.queues, f"job {job_id} in unknown queue {job.queue!r}")
        _require(0 <= job.token <= m.last_token, f"job {job_id} token above last_token")
        _require(job.attempts >= 0, f"job {job_id} negative attempts")
        if job.state is JobState.LEASED:
            _require(job.attempts <= job.max_attempts, f"job {job_id} leased past max_attempts")
            _require(job.token > 0, f"leased job {job_id} without a token")
    for q in m.queues.values():
        mine = [j for j in m.jobs.values() if j.queue == q.name]
        for state in JobState:
            n = sum(1 for j in mine if j.state is state)
            _require(q.counts[state] == n, f"{q.name}: counts[{state}]={q.counts[state]} != {n}")
        for p in range(10):
            n = sum(1 for j in mine if j.state is JobState.QUEUED and j.priority == p)
            _require(q.ready_by_priority[p] == n, f"{q.name}: ready_by_priority[{p}] wrong")
        ready, delayed, leases = Counter(q.ready), Counter(q.delayed), Counter(q.leases)
        for j in mine:
            if j.state is JobState.QUEUED:
                key = ready_key(j.priority, j.ready_at_ms, j.id)
                _require(ready[key] == 1, f"queued job {j.id}: {ready[key]} ready entries")
            elif j.state is JobState.DELAYED:
                key = delayed_key(j.ready_at_ms, j.id)
                _require(delayed[key] == 1, f"delayed job {j.id}: {delayed[key]} entries")
            elif j.state is JobState.LEASED:
                key = lease_key(j.lease_expires_ms, j.token, j.id)
                _require(leases[key] == 1, f"leased job {j.id}: {leases[key]} lease entries")
        dead = [j.id for j in mine if j.state is JobState.DEAD]
        _require(sorted(q.dead) == sorted(dead), f"{q.name}: dead list differs from dead jobs")
        done = [j.id for j in mine if j.state in FINISHED_STATES and j.state is not JobState.DEAD]
        _require(sorted(q.finished) == sorted(done), f"{q.name}: finished list differs")
        for name, key_owner in q.keys.items():
            owner = m.jobs.get(key_owner)
            _require(owner is None or owner.key == name, f"{q.name}: key {name!r} points elsewhere")
    _require(len(m.requests) == len(m.request_order), "request table and its order differ")
