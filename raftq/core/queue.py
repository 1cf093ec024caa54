"""One queue's indexes: ready, delayed and lease heaps, per-state counts, keys, dead letters.

The machine owns the jobs; a queue holds only job ids (inside heap keys) and counters.
Invariants (checked by ``Machine.check_invariants``):
- every QUEUED job of the queue has exactly one valid entry in ``ready``; DELAYED in
  ``delayed``; LEASED in ``leases``. Other entries are stale and skipped lazily.
- ``counts[s]`` is the number of the queue's jobs in state ``s``;
  ``ready_by_priority[p]`` the number of QUEUED jobs of priority ``p``.
- ``dead`` lists exactly the queue's DEAD jobs, oldest first; ``finished`` lists its
  SUCCEEDED and CANCELLED jobs in the order they finished (so by ``finished_ms``).
"""

from __future__ import annotations

import heapq
from collections import deque

from raftq.core.job import (
    Job,
    JobState,
    delayed_key,
    lease_key,
    ready_key,
    split_delayed_key,
    split_lease_key,
)
from raftq.core.limits import DEFAULT_DEDUP_WINDOW_MS, DEFAULT_RETENTION_MS

__all__ = ["QueueState"]

_B48 = (1 << 48) - 1
# A heap is rebuilt without its stale entries once they outnumber live ones by this much.
_COMPACT_SLACK = 1024


class QueueState:
    __slots__ = (
        "counts",
        "dead",
        "dedup_window_ms",
        "delayed",
        "finished",
        "key_expiry",
        "keys",
        "leases",
        "name",
        "paused",
        "ready",
        "ready_by_priority",
        "retention_ms",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.paused = False
        self.dedup_window_ms = DEFAULT_DEDUP_WINDOW_MS
        self.retention_ms = DEFAULT_RETENTION_MS
        self.ready: list[int] = []  # ready_key(priority, ready_at_ms, id)
        self.delayed: list[int] = []  # delayed_key(ready_at_ms, id)
        self.leases: list[int] = []  # lease_key(lease_expires_ms, token, id)
        self.counts: dict[JobState, int] = dict.fromkeys(JobState, 0)
        self.ready_by_priority = [0] * 10
        # Idempotency key -> job id. A key is live while its job is unfinished, and for
        # dedup_window_ms after it finished (key_expiry holds (expires_ms, key, id), FIFO).
        self.keys: dict[str, int] = {}
        self.key_expiry: deque[tuple[int, str, int]] = deque()
        self.dead: dict[int, None] = {}  # insertion-ordered set of ids
        self.finished: deque[int] = deque()

    # -- counters -------------------------------------------------------------------------

    def count_in(self, job: Job) -> None:
        self.counts[job.state] += 1
        if job.state is JobState.QUEUED:
            self.ready_by_priority[job.priority] += 1

    def count_out(self, job: Job) -> None:
        self.counts[job.state] -= 1
        if job.state is JobState.QUEUED:
            self.ready_by_priority[job.priority] -= 1

    # -- heaps ----------------------------------------------------------------------------

    def push_ready(self, job: Job) -> None:
        heapq.heappush(self.ready, ready_key(job.priority, job.ready_at_ms, job.id))

    def push_delayed(self, job: Job) -> None:
        heapq.heappush(self.delayed, delayed_key(job.ready_at_ms, job.id))

    def push_lease(self, job: Job) -> None:
        heapq.heappush(self.leases, lease_key(job.lease_expires_ms, job.token, job.id))

    def peek_ready(self, jobs: dict[int, Job]) -> int | None:
        """The smallest valid ready key, dropping stale entries above it; ``None`` if empty."""
        heap = self.ready
        while heap:
            key = heap[0]
            job = jobs.get(key & _B48)
            if (
                job is not None
                and job.state is JobState.QUEUED
                and key == ready_key(job.priority, job.ready_at_ms, job.id)
            ):
                return key
            heapq.heappop(heap)
        return None

    def pop_due_delayed(self, jobs: dict[int, Job], clock_ms: int) -> Job | None:
        """Pop the next DELAYED job due at or before ``clock_ms``, skipping stale entries."""
        heap = self.delayed
        while heap:
            run_at_ms, job_id = split_delayed_key(heap[0])
            if run_at_ms > clock_ms:
                return None
            heapq.heappop(heap)
            job = jobs.get(job_id)
            if job is not None and job.state is JobState.DELAYED and job.ready_at_ms == run_at_ms:
                return job
        return None

    def pop_expired_lease(self, jobs: dict[int, Job], clock_ms: int) -> Job | None:
        """Pop the next LEASED job whose lease ended at or before ``clock_ms``."""
        heap = self.leases
        while heap:
            expires_ms, token, job_id = split_lease_key(heap[0])
            if expires_ms > clock_ms:
                return None
            heapq.heappop(heap)
            job = jobs.get(job_id)
            if (
                job is not None
                and job.state is JobState.LEASED
                and job.token == token
                and job.lease_expires_ms == expires_ms
            ):
                return job
        return None

    def compact(self, jobs: dict[int, Job]) -> None:
        """Drop stale heap entries once they dominate (amortized O(1) per stale entry)."""
        c = self.counts
        if len(self.ready) > 2 * c[JobState.QUEUED] + _COMPACT_SLACK:
            self.ready = [k for k in self.ready if _ready_valid(jobs, k)]
            heapq.heapify(self.ready)
        if len(self.delayed) > 2 * c[JobState.DELAYED] + _COMPACT_SLACK:
            self.delayed = [k for k in self.delayed if _delayed_valid(jobs, k)]
            heapq.heapify(self.delayed)
        if len(self.leases) > 2 * c[JobState.LEASED] + _COMPACT_SLACK:
            self.leases = [k for k in self.leases if _lease_valid(jobs, k)]
            heapq.heapify(self.leases)

    def rebuild(self, jobs: list[Job]) -> None:
        """Recreate heaps and counters from the queue's jobs (restore after a snapshot)."""
        self.ready, self.delayed, self.leases = [], [], []
        self.counts = dict.fromkeys(JobState, 0)
        self.ready_by_priority = [0] * 10
        for job in jobs:
            self.count_in(job)
            if job.state is JobState.QUEUED:
                self.ready.append(ready_key(job.priority, job.ready_at_ms, job.id))
            elif job.state is JobState.DELAYED:
                self.delayed.append(delayed_key(job.ready_at_ms, job.id))
            elif job.state is JobState.LEASED:
                self.leases.append(lease_key(job.lease_expires_ms, job.token, job.id))
        heapq.heapify(self.ready)
        heapq.heapify(self.delayed)
        heapq.heapify(self.leases)


def _ready_valid(jobs: dict[int, Job], key: int) -> bool:
    job = jobs.get(key & _B48)
    return (
        job is not None
        and job.state is JobState.QUEUED
        and key == ready_key(job.priority, job.ready_at_ms, job.id)
    )


def _delayed_valid(jobs: dict[int, Job], key: int) -> bool:
    run_at_ms, job_id = split_delayed_key(key)
    job = jobs.get(job_id)
    return job is not None and job.state is JobState.DELAYED and job.ready_at_ms == run_at_ms


def _lease_valid(jobs: dict[int, Job], key: int) -> bool:
    expires_ms, token, job_id = split_lease_key(key)
    job = jobs.get(job_id)
    return (
        job is not None
        and job.state is JobState.LEASED
        and job.token == token
        and job.lease_expires_ms == expires_ms
    )
