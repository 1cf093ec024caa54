"""Per-queue statistics, read from the replicated state (so every replica reports the same)."""

from __future__ import annotations

from dataclasses import dataclass

from raftq.core.job import JobState
from raftq.core.queue import QueueState

__all__ = ["QueueStats", "queue_stats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    """``depth`` counts jobs by state; ``by_priority[p]`` counts ready jobs of priority p.

    Counts are as of the queue's last advance (any command touching it, or the periodic
    tick): a delayed job that fell due since then still counts as delayed.
    """

    queue: str
    paused: bool
    depth: dict[str, int]
    by_priority: dict[str, int]
    in_flight: int
    keys: int
    dedup_window_ms: int
    retention_ms: int


def queue_stats(q: QueueState) -> QueueStats:
    return QueueStats(
        queue=q.name,
        paused=q.paused,
        depth={state.value: q.counts[state] for state in JobState},
        by_priority={str(p): q.ready_by_priority[p] for p in range(9, -1, -1)},
        in_flight=q.counts[JobState.LEASED],
        keys=len(q.keys),
        dedup_window_ms=q.dedup_window_ms,
        retention_ms=q.retention_ms,
    )
