"""Per-queue counters and latency histograms, kept in the replicated state.

Why here and not in the HTTP layer: every replica applies the same entries, so counting in
``apply`` gives the same numbers on every node (a Prometheus scrape of any node says what
happened to the cluster), and they survive restarts and snapshot installs (they are part of
the snapshot, hence of the state digest). Times come from the commands' cluster clock
(``Machine.clock_ms``), never from a wall clock, so the histograms are deterministic too.

Invariants: every counter only grows; ``Histogram.counts`` has one slot per bound of
``BUCKETS_MS`` plus one for larger values (not cumulative); ``sum_ms`` is the sum of the
observed values; ``workers`` maps a worker name to the cluster time of its last claim on the
queue, ordered by that time (oldest first), and holds only claims of the last
``WORKER_WINDOW_MS`` once the queue was advanced.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

__all__ = [
    "BUCKETS_MS",
    "CANCELLED",
    "CLAIMED",
    "DEAD",
    "ENQUEUED",
    "EXPIRED",
    "FAILED",
    "MAX_WORKERS",
    "OUTCOMES",
    "PURGED",
    "REQUEUED",
    "RETRIED",
    "SUCCEEDED",
    "WORKER_WINDOW_MS",
    "Histogram",
    "Tally",
]

# The outcome counters (``raftq_jobs_total{outcome}``), by index in ``Tally.totals``.
OUTCOMES: Final = (
    "enqueued",  # a new job was created (an enqueue answered with an existing key is not)
    "claimed",  # a lease was handed out (each attempt)
    "succeeded",  # acked
    "failed",  # nacked (each time)
    "retried",  # scheduled again after a failed or expired attempt
    "dead",  # dead-lettered (out of attempts, by nack or lease expiry)
    "expired",  # a lease ran out without ack or nack
    "cancelled",  # cancelled
    "requeued",  # a dead letter put back by an admin
    "purged",  # removed by an admin purge
)
(
    ENQUEUED,
    CLAIMED,
    SUCCEEDED,
    FAILED,
    RETRIED,
    DEAD,
    EXPIRED,
    CANCELLED,
    REQUEUED,
    PURGED,
) = range(len(OUTCOMES))

# Upper bounds of the latency buckets, in cluster ms (Prometheus ``le``, exported in seconds):
# from a few ms (a worker waiting on the queue) to an hour (a backlog).
BUCKETS_MS: Final = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
)

WORKER_WINDOW_MS: Final = 60_000  # "workers seen claiming in the last minute"
# At most this many workers remembered per queue (the least recent go first): claims with
# ever-new worker names must not grow the state without bound within a window.
MAX_WORKERS: Final = 10_000


class Histogram:
    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.sum_ms = 0

    def observe(self, value_ms: int) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (``le``: less or equal).
        # Cluster time never goes back, but a job's reference time can be ahead of the clock
        # by nothing more than rounding; clamp so a sum never shrinks.
        value_ms = max(value_ms, 0)
        self.counts[bisect_left(BUCKETS_MS, value_ms)] += 1
        self.sum_ms += value_ms

    @property
    def count(self) -> int:
        return sum(self.counts)


class Tally:
    """The counters of one queue: outcome totals, wait and run histograms, recent workers."""

    __slots__ = ("run", "totals", "wait", "workers")

    def __init__(self) -> None:
        self.totals = [0] * len(OUTCOMES)
        self.wait = Histogram()  # first claimable (enqueue or due time) -> first claim
        self.run = Histogram()  # claim -> ack, of the attempt that succeeded
        self.workers: dict[str, int] = {}

    def saw_worker(self, worker: str, clock_ms: int) -> None:
        """Record a claim by ``worker`` at ``clock_ms`` (keeps ``workers`` in time order)."""
        workers = self.workers
        if worker in workers:
            del workers[worker]
        elif len(workers) >= MAX_WORKERS:
            del workers[next(iter(workers))]
        workers[worker] = clock_ms

    def forget_workers(self, clock_ms: int) -> None:
        """Drop workers whose last claim is older than the window."""
        workers = self.workers
        until_ms = clock_ms - WORKER_WINDOW_MS
        while workers:
            name = next(iter(workers))
            if workers[name] > until_ms:
                break
            del workers[name]
