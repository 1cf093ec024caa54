"""Per-queue statistics, read from the replicated state (so every replica reports the same)."""

from __future__ import annotations

from dataclasses import dataclass

from raftq.core.fair import rate_ok
from raftq.core.job import Job, JobState
from raftq.core.queue import QueueState
from raftq.core.tally import OUTCOMES, WORKER_WINDOW_MS, Histogram

__all__ = [
    "HistogramData",
    "LimitsView",
    "QueueMetrics",
    "QueueStats",
    "limits_view",
    "queue_metrics",
    "queue_stats",
]

_B48 = (1 << 48) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    """``depth`` counts jobs by state; ``by_priority[p]`` counts ready jobs of priority p.

    Counts are as of the queue's last advance (any command touching it, or the periodic
    tick): a delayed job that fell due since then still counts as delayed. ``totals`` are the
    outcome counters of ``raftq.core.tally`` (they only grow).
    """

    queue: str
    paused: bool
    depth: dict[str, int]
    by_priority: dict[str, int]
    in_flight: int
    keys: int
    dedup_window_ms: int
    retention_ms: int
    totals: dict[str, int]
    limits: LimitsView | None = None  # None: the queue has no limits


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsView:
    """A queue's limits (``None``: no such limit) and their use as of cluster time ``at_ms``.

    ``leased``: slots in use (the queue's leased jobs); ``starts_in_window``: claims within the
    last ``rate_period_ms``; ``rate_blocked``: the queue's rate allows no claim now;
    ``groups``: groups tracked; ``groups_ready``: groups a claim may serve now;
    ``groups_waiting``: groups with ready jobs that wait for a slot or their rate window.
    """

    concurrency: int | None
    rate_limit: int | None
    rate_period_ms: int | None
    group_concurrency: int | None
    group_rate_limit: int | None
    group_rate_period_ms: int | None
    leased: int
    starts_in_window: int
    rate_blocked: bool
    groups: int
    groups_ready: int
    groups_waiting: int
    at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HistogramData:
    """A latency histogram: ``counts[i]`` values <= ``tally.BUCKETS_MS[i]`` and above the
    previous bound (the last slot: above every bound); not cumulative."""

    counts: tuple[int, ...]
    sum_ms: int

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueMetrics:
    """What ``/metrics`` exports of one queue, copied out of the state under its lock."""

    stats: QueueStats
    wait: HistogramData  # first claimable -> first claim
    run: HistogramData  # claim -> ack
    workers: int  # distinct workers that claimed in the last WORKER_WINDOW_MS
    leased_by_worker: dict[str, int]  # live leases per worker name


def _histogram(h: Histogram) -> HistogramData:
    return HistogramData(counts=tuple(h.counts), sum_ms=h.sum_ms)


def queue_metrics(q: QueueState, jobs: dict[int, Job], clock_ms: int) -> QueueMetrics:
    """Linear in the queue's leases (bounded by what workers hold), not in its jobs."""
    seen: set[int] = set()
    by_worker: dict[str, int] = {}
    for key in q.leases:  # the lease heap holds every LEASED job, maybe stale entries too
        job_id = key & _B48
        job = jobs.get(job_id)
        if job is None or job.state is not JobState.LEASED or job_id in seen:
            continue
        seen.add(job_id)
        name = job.worker or ""
        by_worker[name] = by_worker.get(name, 0) + 1
    since_ms = clock_ms - WORKER_WINDOW_MS
    return QueueMetrics(
        stats=queue_stats(q, clock_ms),
        wait=_histogram(q.tally.wait),
        run=_histogram(q.tally.run),
        workers=sum(1 for last_ms in q.tally.workers.values() if last_ms > since_ms),
        leased_by_worker=dict(sorted(by_worker.items())),
    )


def queue_stats(q: QueueState, clock_ms: int = 0) -> QueueStats:
    return QueueStats(
        queue=q.name,
        paused=q.paused,
        depth={state.value: q.counts[state] for state in JobState},
        by_priority={str(p): q.ready_by_priority[p] for p in range(9, -1, -1)},
        in_flight=q.counts[JobState.LEASED],
        keys=len(q.keys),
        dedup_window_ms=q.dedup_window_ms,
        retention_ms=q.retention_ms,
        totals=dict(zip(OUTCOMES, q.tally.totals, strict=True)),
        limits=limits_view(q, clock_ms),
    )


def limits_view(q: QueueState, clock_ms: int) -> LimitsView | None:
    """Linear in the queue's groups (a read; ``None`` when the queue has no limits)."""
    lim = q.lim
    if lim is None:
        return None
    limits = lim.limits
    ready = sum(1 for g in lim.groups.values() if g.ring)
    waiting = sum(1 for g in lim.groups.values() if g.queued and not g.ring)
    period = limits.rate_period_ms
    in_window = 0 if period is None else sum(1 for t in lim.starts if t > clock_ms - period)
    return LimitsView(
        concurrency=limits.concurrency,
        rate_limit=limits.rate_limit,
        rate_period_ms=period,
        group_concurrency=limits.group_concurrency,
        group_rate_limit=limits.group_rate_limit,
        group_rate_period_ms=limits.group_rate_period_ms,
        leased=q.counts[JobState.LEASED],
        starts_in_window=in_window,
        rate_blocked=not rate_ok(lim.starts, limits.rate_limit, period, clock_ms),
        groups=len(lim.groups),
        groups_ready=ready,
        groups_waiting=waiting,
        at_ms=clock_ms,
    )
