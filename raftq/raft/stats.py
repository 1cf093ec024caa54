"""Per-node raft instrumentation: counters and histograms the raft layer fills in, read by
``raftq.server.metrics`` at scrape time.

The raft layer knows nothing of Prometheus: it calls the ``observe_*`` hooks (cheap: a lock,
a bisect and two additions) and the server turns a ``snapshot()`` into metric families.
Hooks run on PySyncObj's tick thread (fsync) or the asyncio loop (group commit, leader
changes); the lock makes a reading consistent across them.

These numbers are per node (how fast *this* disk syncs, how many leaders *this* node saw), unlike
the queue counters, which live in the replicated state and are the same on every node.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BATCH_BUCKETS",
    "COMMIT_BUCKETS_S",
    "FSYNC_BUCKETS_S",
    "SNAPSHOT_BUCKETS_S",
    "HistogramReading",
    "RaftStats",
    "StatsReading",
]

FSYNC_BUCKETS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
    1.0,
)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
COMMIT_BUCKETS_S: Final = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    10.0,
)
SNAPSHOT_BUCKETS_S: Final = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True, slots=True)
class HistogramReading:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, not cumulative; the last one: above every bound
    total: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsReading:
    leader_changes: int
    fsync_seconds: HistogramReading
    batch_commands: HistogramReading
    queue_wait_seconds: HistogramReading
    commit_seconds: HistogramReading
    snapshot_seconds: HistogramReading
    snapshot_writers_killed: int
    peer_connections_refused: int = 0
    digest_mismatches: int = 0
    digest_mismatch_peers: int = 0


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def reading(self) -> HistogramReading:
        return HistogramReading(self.bounds, tuple(self.counts), self.total)


class RaftStats:
    """The raft-side instrumentation of one node (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leader_changes = 0
        self._last_leader: str | None = None
        self._fsync = _Histogram(FSYNC_BUCKETS_S)
        self._batch = _Histogram(BATCH_BUCKETS)
        self._queue_wait = _Histogram(COMMIT_BUCKETS_S)
        self._commit = _Histogram(COMMIT_BUCKETS_S)
        self._snapshot = _Histogram(SNAPSHOT_BUCKETS_S)
        self._snapshot_kills = 0
        self._peers_refused = 0
        self._digest_mismatches = 0
        self._digest_mismatch_peers = 0

    def observe_leader(self, leader: str | None) -> None:
        """The leader as seen now; a change to a new known leader counts once."""
        with self._lock:
            if leader is not None and leader != self._last_leader:
                self._leader_changes += 1
                self._last_leader = leader

    def observe_fsync(self, seconds: float) -> None:
        """One sync of the journal: fdatasync of its records, then of its header (tick thread)."""
        with self._lock:
            self._fsync.observe(seconds)

    def observe_batch(self, commands: int, waited_s: float) -> None:
        """One log entry proposed by group commit, holding ``commands`` commands, the oldest
        of which waited ``waited_s`` for a place in the pipeline."""
        with self._lock:
            self._batch.observe(commands)
            self._queue_wait.observe(waited_s)

    def observe_commit(self, seconds: float) -> None:
        """One entry proposed here came back applied, ``seconds`` after its proposal."""
        with self._lock:
            self._commit.observe(seconds)

    def observe_snapshot(self, seconds: float) -> None:
        """One snapshot written (from the start of the forked writer to its exit)."""
        with self._lock:
            self._snapshot.observe(seconds)

    def observe_snapshot_killed(self) -> None:
        """A snapshot writer ran past its deadline and was killed (tick thread)."""
        with self._lock:
            self._snapshot_kills += 1

    def observe_peer_refused(self) -> None:
        """A raft connection with a node of another cluster was refused (tick thread)."""
        with self._lock:
            self._peers_refused += 1

    def observe_digest_mismatch(self, differing: int, new: bool) -> None:
        """Leader: ``differing`` peers have another digest at an equal applied index now;
        ``new``: one more began to differ (tick thread)."""
        with self._lock:
            self._digest_mismatch_peers = differing
            self._digest_mismatches += 1 if new else 0

    def snapshot(self) -> StatsReading:
        with self._lock:
            return StatsReading(
                leader_changes=self._leader_changes,
                fsync_seconds=self._fsync.reading(),
                batch_commands=self._batch.reading(),
                queue_wait_seconds=self._queue_wait.reading(),
                commit_seconds=self._commit.reading(),
                snapshot_seconds=self._snapshot.reading(),
                snapshot_writers_killed=self._snapshot_kills,
                peer_connections_refused=self._peers_refused,
                digest_mismatches=self._digest_mismatches,
                digest_mismatch_peers=self._digest_mismatch_peers,
            )
