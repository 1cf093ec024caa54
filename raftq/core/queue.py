"""One queue's indexes: ready, delayed and lease heaps, per-state counts, keys, dead letters.

The machine owns the jobs; a queue holds only job ids (inside heap keys) and counters.
Invariants (checked by ``Machine.check_invariants``):
- every QUEUED job of the queue has exactly one valid entry in ``ready``; DELAYED in
  ``delayed``; LEASED at least one in ``leases`` (a heartbeat that moves a lease back to an
  end it had before revives the old, equal entry; the copy is skipped once the job moves
  on). Other entries are stale and skipped lazily.
- ``counts[s]`` is the number of the queue's jobs in state ``s``;
  ``ready_by_priority[p]`` the number of QUEUED jobs of priority ``p``.
- ``group_of`` maps the id of each of the queue's jobs that has a group to it.
- with limits set (``lim``, see ``fair.py``), ``ready`` is empty and each QUEUED job has its
  one valid entry in its group's ready heap instead.
- ``dead`` lists exactly the queue's DEAD jobs, in the order they died (not id order);
  ``finished`` lists its SUCCEEDED and CANCELLED jobs in the order they finished (so by
  ``finished_ms``).
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import TYPE_CHECKING

from raftq.core.job import Job, JobState
from raftq.core.limits import DEFAULT_DEDUP_WINDOW_MS, DEFAULT_RETENTION_MS
from raftq.core.tally import Tally

if TYPE_CHECKING:
    from raftq.core.fair import Limiter

__all__ = ["QueueState"]

_B48 = (1 << 48) - 1
# Enum members as module constants: ``JobState.QUEUED`` is a metaclass attribute lookup, several
# times slower than a global, and these run once or more per command.
_QUEUED = JobState.QUEUED
_DELAYED = JobState.DELAYED
_LEASED = JobState.LEASED
_heappush = heapq.heappush
_heappop = heapq.heappop
# A heap is rebuilt without its stale entries once they outnumber live ones by this much.
_COMPACT_SLACK = 1024


class QueueState:
    __slots__ = (
        "counts",
        "dead",
        "dedup_window_ms",
        "delayed",
        "finished",
        "group_of",
        "key_expiry",
        "keys",
        "leases",
        "lim",
        "name",
        "paused",
        "ready",
        "ready_by_priority",
        "retention_ms",
        "tally",
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
        # dedup_window_ms after it finished. key_expiry holds (finished_ms, key, id) of
        # succeeded and cancelled key owners, in finish order; a dead letter's key is judged
        # from the job, which stays until requeued or purged.
        self.keys: dict[str, int] = {}
        self.key_expiry: deque[tuple[int, str, int]] = deque()
        self.dead: dict[int, None] = {}  # insertion-ordered set of ids
        self.finished: deque[int] = deque()
        self.tally = Tally()  # outcome counters and latency histograms (metrics)
        self.group_of: dict[int, str] = {}  # job id -> its group (jobs with one only)
        self.lim: Limiter | None = None  # limits and the group index (None: no limits)

    # -- counters -------------------------------------------------------------------------

    def count_in(self, job: Job) -> None:
        state = job.state
        self.counts[state] += 1
        if state is _QUEUED:
            self.ready_by_priority[job.priority] += 1
        lim = self.lim
        # The limiter counts QUEUED and LEASED jobs per group (and settles the group a job
        # just left): other moves, the collection of finished jobs among them, skip the call.
        if lim is not None and (state is _QUEUED or state is _LEASED or lim.out_group):
            lim.count_in(job)

    def count_out(self, job: Job) -> None:
        state = job.state
        self.counts[state] -= 1
        if state is _QUEUED:
            self.ready_by_priority[job.priority] -= 1
            if self.lim is not None:
                self.lim.count_out(job)
        elif state is _LEASED and self.lim is not None:
            self.lim.count_out(job)

    # -- heaps ----------------------------------------------------------------------------

    # The key formulas of job.py are inlined below: these run once or more per command.

    def push_ready(self, job: Job) -> None:
        key = ((9 - job.priority) << 96) | (job.ready_at_ms << 48) | job.id
        if self.lim is None:
            _heappush(self.ready, key)
        else:
            self.lim.push_ready(job, key)

    def ready_keys(self) -> list[int]:
        """Every ready heap entry of the queue (stale ones too), whatever indexes them."""
        if self.lim is None:
            return self.ready
        return [k for name in sorted(self.lim.groups) for k in self.lim.groups[name].ready]

    def push_delayed(self, job: Job) -> None:
        _heappush(self.delayed, (job.ready_at_ms << 48) | job.id)

    def push_lease(self, job: Job) -> None:
        _heappush(self.leases, (job.lease_expires_ms << 96) | (job.token << 48) | job.id)

    def peek_ready(self, jobs: dict[int, Job]) -> int | None:
        """The smallest valid ready key, dropping stale entries above it; ``None`` if empty."""
        heap = self.ready
        get = jobs.get
        while heap:
            key = heap[0]
            job = get(key & _B48)
            if (
                job is not None
                and job.state is _QUEUED
                and key == ((9 - job.priority) << 96) | (job.ready_at_ms << 48) | job.id
            ):
                return key
            _heappop(heap)
        return None

    def pop_due_delayed(self, jobs: dict[int, Job], clock_ms: int) -> Job | None:
        """Pop the next DELAYED job due at or before ``clock_ms``, skipping stale entries."""
        heap = self.delayed
        while heap:
            key = heap[0]
            run_at_ms = key >> 48
            if run_at_ms > clock_ms:
                return None
            _heappop(heap)
            job = jobs.get(key & _B48)
            if job is not None and job.state is _DELAYED and job.ready_at_ms == run_at_ms:
                return job
        return None

    def pop_expired_lease(self, jobs: dict[int, Job], clock_ms: int) -> Job | None:
        """Pop the next LEASED job whose lease ended at or before ``clock_ms``."""
        heap = self.leases
        while heap:
            key = heap[0]
            expires_ms = key >> 96
            if expires_ms > clock_ms:
                return None
            _heappop(heap)
            job = jobs.get(key & _B48)
            if (
                job is not None
                and job.state is _LEASED
                and job.token == (key >> 48) & _B48
                and job.lease_expires_ms == expires_ms
            ):
                return job
        return None

    def compact(self, jobs: dict[int, Job]) -> None:
        """Drop stale heap entries once they dominate (amortized O(1) per stale entry)."""
        c = self.counts
        get = jobs.get
        # The validity tests of peek_ready / pop_due_delayed / pop_expired_lease, inlined.
        if len(self.ready) > 2 * c[_QUEUED] + _COMPACT_SLACK:
            self.ready = [
                k
                for k in self.ready
                if (j := get(k & _B48)) is not None
                and j.state is _QUEUED
                and k == ((9 - j.priority) << 96) | (j.ready_at_ms << 48) | j.id
            ]
            heapq.heapify(self.ready)
        if len(self.delayed) > 2 * c[_DELAYED] + _COMPACT_SLACK:
            self.delayed = [
                k
                for k in self.delayed
                if (j := get(k & _B48)) is not None
                and j.state is _DELAYED
                and j.ready_at_ms == k >> 48
            ]
            heapq.heapify(self.delayed)
        if len(self.leases) > 2 * c[_LEASED] + _COMPACT_SLACK:
            self.leases = [
                k
                for k in self.leases
                if (j := get(k & _B48)) is not None
                and j.state is _LEASED
                and j.token == (k >> 48) & _B48
                and j.lease_expires_ms == k >> 96
            ]
            heapq.heapify(self.leases)

    def rebuild(self, jobs: list[Job]) -> None:
        """Recreate heaps and counters from the queue's jobs (restore after a snapshot)."""
        ready: list[int] = []
        delayed: list[int] = []
        leases: list[int] = []
        counts = dict.fromkeys(JobState, 0)
        by_priority = [0] * 10
        for job in jobs:  # count_in and the push_* key formulas, inlined
            state = job.state
            counts[state] += 1
            if state is _QUEUED:
                by_priority[job.priority] += 1
                ready.append(((9 - job.priority) << 96) | (job.ready_at_ms << 48) | job.id)
            elif state is _DELAYED:
                delayed.append((job.ready_at_ms << 48) | job.id)
            elif state is _LEASED:
                leases.append((job.lease_expires_ms << 96) | (job.token << 48) | job.id)
        heapq.heapify(ready)
        heapq.heapify(delayed)
        heapq.heapify(leases)
        self.ready, self.delayed, self.leases = ready, delayed, leases
        self.counts, self.ready_by_priority = counts, by_priority
