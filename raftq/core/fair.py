"""Limits and fair groups of one queue (``SetLimits``): what a claim may hand out, and from
which group.

A queue without limits has no ``Limiter`` (``QueueState.lim is None``) and claims from its one
ready heap as always. With any limit set, its ready jobs are indexed per group instead:

- ``Group.ready`` is the group's ready heap (the same keys as ``QueueState.ready``, which stays
  empty); ``queued`` and ``leased`` count the group's QUEUED and LEASED jobs.
- the ring holds ``(turn, group)`` of the *eligible* groups: those with a ready job,
  ``leased < group_concurrency`` and a free group rate slot. ``turn`` is ``(since_ms << 48) |
  seq``: the cluster time the group became eligible (or was last served), then the order in
  which that happened. A claim serves the eligible group with the smallest turn, and the group
  goes back in with a new turn (now, next seq) if it is still eligible: round-robin over the
  groups, each waiting its turn since it last got a job. So a claim looks at one group, never at
  the jobs of the others, and a saturated group is out of the ring (it costs nothing). A turn
  given now is above every turn in the ring, so the ring is a deque in turn order (``ring``),
  plus a min-heap (``early``) for the turns dated in the past (a lease that ended, a rate
  window that freed, a delayed job that came due): its next group is the smaller of both
  heads. Entries whose group's ``ring`` is no longer their turn are stale, dropped when met.
- A group blocked by its rate waits in ``wake`` (``(wake_ms, name)``) until its oldest counted
  start leaves the window; a group blocked by its concurrency comes back when a lease of it
  ends (ack, nack, cancel, expiry: ``count_out``/``count_in`` of the job's move).
- An idle group (nothing ready, nothing leased) is deleted, unless its rate history still
  matters (a start within the last ``group_rate_period_ms``): then it waits in ``wake`` until it
  does not, and is deleted then. Jobs without a group are the implicit group ``""``.

Rates are sliding logs, not token buckets: ``starts`` holds the cluster times of the last
``limit`` claims (a deque with ``maxlen=limit``), and a claim at ``t`` is allowed only if fewer
than ``limit`` are logged or the oldest logged is ``<= t - period_ms``. So any ``limit + 1``
consecutive starts span at least ``period_ms`` and no window ``[a, a + period_ms)`` holds more
than ``limit`` of them (a bucket of capacity ``limit`` refilled ``limit`` per period allows up
to ``2 * limit`` in one window).

Transitions are dated when they happened (a lease that expired frees its slot at its end), so
ring order does not depend on when a tick ran.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raftq.core.job import Job, JobState

if TYPE_CHECKING:
    from raftq.core.queue import QueueState

__all__ = ["Group", "Limiter", "Limits", "rate_ok"]

_B48 = (1 << 48) - 1
_QUEUED = JobState.QUEUED
_LEASED = JobState.LEASED
_heappush = heapq.heappush
_heappop = heapq.heappop
_COMPACT_SLACK = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """A queue's limits; ``None`` is no such limit. A rate is both of its fields or neither."""

    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_ms: int | None = None
    group_concurrency: int | None = None
    group_rate_limit: int | None = None
    group_rate_period_ms: int | None = None

    def fields(self) -> list[int | None]:
        return [
            self.concurrency,
            self.rate_limit,
            self.rate_period_ms,
            self.group_concurrency,
            self.group_rate_limit,
            self.group_rate_period_ms,
        ]

    def any(self) -> bool:
        return any(v is not None for v in self.fields())


def rate_ok(starts: deque[int], limit: int | None, period_ms: int | None, at_ms: int) -> bool:
    """May one more start happen at ``at_ms``? (``starts`` has ``maxlen == limit``.)"""
    return limit is None or len(starts) < limit or starts[0] + (period_ms or 0) <= at_ms


def carried_log(old: deque[int], new_limit: int) -> deque[int]:
    """The log of a rate whose limit changed: the old log cut to the new limit. A full log
    raised to a higher limit lacks the claims before its oldest one: they count as made at
    that oldest time (the latest they can have been), so the new limit holds in every window
    that ends after the change, never more claims than it allows (a claim may wait up to one
    period longer than the unknown history needed)."""
    items = list(old)
    if old.maxlen and len(items) == old.maxlen and new_limit > old.maxlen:
        items = [items[0]] * (new_limit - old.maxlen) + items
    return deque(items, maxlen=new_limit)


class Group:
    """One group of a limited queue. ``ring``: its live turn in the ring (0: not in it);
    ``wake``: when it must be looked at again (0: never)."""

    __slots__ = ("leased", "name", "queued", "ready", "ring", "starts", "wake")

    def __init__(self, name: str, rate_limit: int | None) -> None:
        self.name = name
        self.ready: list[int] = []
        self.queued = 0
        self.leased = 0
        self.starts: deque[int] = deque(maxlen=rate_limit or 0)
        self.ring = 0
        self.wake = 0


class Limiter:
    """The limits, rate logs and group index of one queue. ``clock`` reads cluster time."""

    __slots__ = (
        "early",
        "eligible",
        "group_of",
        "groups",
        "limits",
        "m",
        "out_at",
        "out_group",
        "q",
        "ring",
        "seq",
        "starts",
        "top",
        "top_early",
        "wake",
    )

    def __init__(self, q: QueueState, m: Any, limits: Limits) -> None:
        self.q = q
        self.m = m  # the Machine (its clock_ms and jobs)
        self.limits = limits
        self.starts: deque[int] = deque(maxlen=limits.rate_limit or 0)
        self.groups: dict[str, Group] = {}  # never iterated for a decision unsorted
        self.ring: deque[tuple[int, Group]] = deque()  # turns in increasing order
        self.early: list[tuple[int, Group]] = []  # heap: turns below the ring's last
        self.top_early = False  # the last peek's group came from ``early``
        self.wake: list[tuple[int, str]] = []
        self.seq = 0
        self.eligible = 0  # groups in the ring (ring != 0)
        self.out_at: int | None = None  # when the job of the current move left its state
        self.out_group: Group | None = None  # and its group (count_out to count_in)
        self.group_of = q.group_of  # the queue's job groups (the same dict)
        self.top: Group | None = None  # the group of the last peek

    # -- hooks of QueueState (every state change of a job of the queue) ---------------------

    def group_name(self, job: Job) -> str:
        return self.group_of.get(job.id, "")

    def _group(self, name: str) -> Group:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = Group(name, self.limits.group_rate_limit)
        return g

    # count_out and count_in run for every move of a job of the queue (hot): the group found by
    # count_out is handed to the count_in of the same move (out_group), and the lookups inlined.

    def count_out(self, job: Job) -> None:
        state = job.state
        if state is _QUEUED:
            g = self.groups[self.group_of.get(job.id, "")]
            g.queued -= 1
            self.out_group, self.out_at = g, self.m.clock_ms
        elif state is _LEASED:
            g = self.groups[self.group_of.get(job.id, "")]
            g.leased -= 1
            clock = self.m.clock_ms
            ended = job.lease_expires_ms
            # An expired lease frees its slot when it ended; any other end is now.
            self.out_group, self.out_at = g, ended if 0 < ended < clock else clock

    def count_in(self, job: Job) -> None:
        state, out_at, g = job.state, self.out_at, self.out_group
        self.out_at = self.out_group = None
        if state is _QUEUED:
            if g is None:
                g = self._group(self.group_of.get(job.id, ""))
            g.queued += 1
            at = job.ready_at_ms if out_at is None else out_at
        elif state is _LEASED:
            if g is None:
                g = self._group(self.group_of.get(job.id, ""))
            g.leased += 1
            at = self.m.clock_ms
        elif g is None or out_at is None:
            return
        else:
            at = out_at
        self.settle(g, at)

    def push_ready(self, job: Job, key: int) -> None:
        g = self.groups[self.group_name(job)]
        heap = g.ready
        _heappush(heap, key)
        if len(heap) > 2 * g.queued + _COMPACT_SLACK:
            jobs = self.m.jobs
            g.ready = [k for k in heap if _valid_ready(jobs.get(k & _B48), k)]
            heapq.heapify(g.ready)

    # -- eligibility --------------------------------------------------------------------

    def settle(self, g: Group, at: int) -> None:
        """Put ``g`` where it belongs as of cluster time ``at``: in the ring, waiting for a
        slot or a rate window, or deleted when idle and its history no longer matters."""
        if g.ring:
            if g.queued:
                return
            g.ring = 0  # its ring entry is stale now
            self.eligible -= 1
        lim = self.limits
        if g.queued:
            if lim.group_concurrency is not None and g.leased >= lim.group_concurrency:
                return  # back when a lease of it ends
            grl = lim.group_rate_limit  # rate_ok, inlined (once per claim)
            if grl is not None and len(g.starts) >= grl:
                free_at = g.starts[0] + (lim.group_rate_period_ms or 0)
                if free_at > at:
                    self._wake_at(g, free_at)
                    return
            self.seq += 1
            self.eligible += 1
            g.ring = turn = (at << 48) | self.seq
            ring = self.ring
            if not ring or turn > ring[-1][0]:
                ring.append((turn, g))
            else:
                _heappush(self.early, (turn, g))
            if len(ring) + len(self.early) > 2 * len(self.groups) + _COMPACT_SLACK:
                self._compact()
            return
        if g.leased:
            return
        period = lim.group_rate_period_ms
        if period is not None and g.starts and g.starts[-1] + period > at:
            self._wake_at(g, g.starts[-1] + period)
            return
        del self.groups[g.name]

    def _wake_at(self, g: Group, wake_ms: int) -> None:
        if g.wake != wake_ms:
            g.wake = wake_ms
            _heappush(self.wake, (wake_ms, g.name))
            if len(self.wake) > 2 * len(self.groups) + _COMPACT_SLACK:
                self._compact()

    def _compact(self) -> None:
        """Drop the ring's and wake's stale entries once they dominate (amortized O(1))."""
        groups = self.groups
        self.ring = deque((t, g) for t, g in self.ring if g.ring == t)
        self.early = [(t, g) for t, g in self.early if g.ring == t]
        heapq.heapify(self.early)
        self.wake = [(w, n) for w, n in self.wake if (g := groups.get(n)) and g.wake == w]
        heapq.heapify(self.wake)

    def advance(self, clock: int) -> None:
        """Wake the groups whose rate window or history ended by ``clock``."""
        wake, groups = self.wake, self.groups
        while wake and wake[0][0] <= clock:
            wake_ms, name = _heappop(wake)
            g = groups.get(name)
            if g is not None and g.wake == wake_ms:
                g.wake = 0
                self.settle(g, wake_ms)
                wake = self.wake  # settle may have compacted it

    # -- claim ------------------------------------------------------------------------------

    def claimable(self, clock: int) -> int:
        """At most how many jobs a claim could take now (0 when the queue is at its cap or
        rate, or every group with ready jobs is): what wakes long-poll claims. A read."""
        lim, q = self.limits, self.q
        if self.eligible == 0:
            return 0
        if not rate_ok(self.starts, lim.rate_limit, lim.rate_period_ms, clock):
            return 0
        free = q.counts[_QUEUED]
        if lim.concurrency is not None:
            free = min(free, lim.concurrency - q.counts[_LEASED])
        return max(free, 0)

    def peek(self, jobs: dict[int, Job], clock: int) -> int | None:
        """The ready key a claim takes next from this queue (``None``: nothing, or the queue
        is at its concurrency or rate); remembers its group for ``take``."""
        lim = self.limits
        if lim.concurrency is not None and self.q.counts[_LEASED] >= lim.concurrency:
            return None
        rl = lim.rate_limit  # rate_ok, inlined (once per job claimed)
        starts = self.starts
        if rl is not None and len(starts) >= rl and starts[0] + (lim.rate_period_ms or 0) > clock:
            return None
        ring, early, jobs_get = self.ring, self.early, jobs.get
        while ring or early:
            from_early = bool(early) and (not ring or early[0][0] < ring[0][0])
            turn, g = early[0] if from_early else ring[0]
            if g.ring == turn:
                heap = g.ready
                while heap:
                    key = heap[0]
                    if _valid_ready(jobs_get(key & _B48), key):
                        self.top, self.top_early = g, from_early
                        return key
                    _heappop(heap)
                g.ring = 0  # no ready job left (cannot happen while queued > 0)
                self.eligible -= 1
            if from_early:
                _heappop(early)
            else:
                ring.popleft()
        return None

    def take(self, clock: int) -> None:
        """Take the key ``peek`` returned (the job is moved to LEASED next, which puts its
        group back in the ring if it is still eligible)."""
        g = self.top
        assert g is not None
        _heappop(g.ready)
        if self.top_early:
            _heappop(self.early)
        else:
            self.ring.popleft()
        g.ring = 0
        self.eligible -= 1
        self.starts.append(clock)
        g.starts.append(clock)

    # -- building (limits changed, restore, purge) -------------------------------------------

    def index(self, ready: list[int], leased: list[Job], old: Limiter | None) -> None:
        """Index the queue's ready keys and leased jobs by group, keep the rate history of
        ``old``, and settle every group at the current time (old ring order first)."""
        jobs, clock = self.m.jobs, self.m.clock_ms
        rl, grl = self.limits.rate_limit or 0, self.limits.group_rate_limit or 0
        for key in ready:
            g = self._group(self.group_name(jobs[key & _B48]))
            g.ready.append(key)
            g.queued += 1
        for job in leased:
            self._group(self.group_name(job)).leased += 1
        order: dict[str, int] = {}
        if old is not None:
            self.starts = carried_log(old.starts, rl)
            self.seq = old.seq
            for name in sorted(old.groups):
                og = old.groups[name]
                if og.starts and grl:
                    self._group(name).starts = carried_log(og.starts, grl)
                order[name] = og.ring or (1 << 100)
        none = 1 << 101
        for name in sorted(self.groups, key=lambda n: (order.get(n, none), n)):
            g = self.groups[name]
            heapq.heapify(g.ready)
            self.settle(g, clock)

    def record(self) -> list[Any]:
        """The snapshot record: limits, the queue's starts, seq, and per group (by name) its
        starts, turn and wake (ready heaps and counts are rebuilt from the jobs)."""
        groups = [  # a turn is above 64 bits: stored as its time and its seq
            [name, list(g.starts), g.ring >> 48, g.ring & _B48, g.wake]
            for name, g in sorted(self.groups.items())
        ]
        return [*self.limits.fields(), list(self.starts), self.seq, groups]

    def restore(self, record: list[Any], ready: list[int], leased: list[Job]) -> None:
        *_, starts, seq, groups = record
        self.index(ready, leased, None)  # counts and heaps; turns are replaced below
        self.ring, self.early, self.wake = deque(), [], []
        self.eligible = 0
        for g in self.groups.values():
            g.ring = g.wake = 0
        self.starts = deque(starts, maxlen=self.limits.rate_limit or 0)
        self.seq = seq
        turns: list[tuple[int, Group]] = []
        for name, g_starts, since, seq_of, wake in groups:
            ring = (since << 48) | seq_of
            g = self._group(name)
            g.starts = deque(g_starts, maxlen=self.limits.group_rate_limit or 0)
            g.ring, g.wake = ring, wake
            if ring:
                self.eligible += 1
                turns.append((ring, g))
            if wake:
                self.wake.append((wake, name))
        turns.sort(key=lambda tg: tg[0])  # turns are unique
        self.ring = deque(turns)
        heapq.heapify(self.wake)


def limits_from_record(record: list[Any]) -> Limits:
    c, rl, rp, gc, grl, grp = record[:6]
    return Limits(
        concurrency=c,
        rate_limit=rl,
        rate_period_ms=rp,
        group_concurrency=gc,
        group_rate_limit=grl,
        group_rate_period_ms=grp,
    )


def _valid_ready(job: Job | None, key: int) -> bool:
    return (
        job is not None
        and job.state is _QUEUED
        and key == ((9 - job.priority) << 96) | (job.ready_at_ms << 48) | job.id
    )
