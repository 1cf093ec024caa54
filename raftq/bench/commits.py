"""Where a benchmark phase's write time went on the leader: its group-commit and commit
histograms (``raftq_raft_group_commit_wait_seconds``, ``raftq_raft_commit_duration_seconds``,
``raftq_raft_group_commit_batch_commands``), read from every node's ``/metrics`` before and
after the phase and summed over the nodes (only a leader proposes, so a leader change during
the phase is still counted once per entry).

Quantiles are estimated from the buckets as Prometheus' ``histogram_quantile`` does: linear
inside the bucket that holds the rank, so they are as coarse as the buckets around them.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["CommitReading", "commit_summary", "parse_commits", "read_commits"]

_COMMIT = "raftq_raft_commit_duration_seconds"
_WAIT = "raftq_raft_group_commit_wait_seconds"
_BATCH = "raftq_raft_group_commit_batch_commands"
_FSYNC = "raftq_raft_fsync_duration_seconds"  # read too (``bench/claim_budget.py``)
_NAMES = (_COMMIT, _WAIT, _BATCH, _FSYNC)


@dataclass(frozen=True, slots=True)
class _Hist:
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), sorted
    total: float
    count: float

    def plus(self, other: _Hist, sign: int = 1) -> _Hist:
        """This histogram plus (``sign`` -1: minus) ``other``, bucket by bucket."""
        theirs = dict(other.buckets)
        return _Hist(
            tuple((le, c + sign * theirs.get(le, 0.0)) for le, c in self.buckets),
            self.total + sign * other.total,
            self.count + sign * other.count,
        )

    def quantile(self, q: float) -> float | None:
        if self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if le == float("inf"):
                    return lower  # above the last bound: its lower edge, as Prometheus does
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, cumulative
        return lower


CommitReading = dict[str, _Hist]


def parse_commits(text: str) -> CommitReading:
    """The histograms above of one node's /metrics text (absent ones are left out)."""
    out: CommitReading = {}
    for family in text_string_to_metric_families(text):
        if family.name not in _NAMES:
            continue
        buckets: list[tuple[float, float]] = []
        total = count = 0.0
        for s in family.samples:
            if s.name.endswith("_bucket"):
                buckets.append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_sum"):
                total = s.value
            elif s.name.endswith("_count"):
                count = s.value
        out[family.name] = _Hist(tuple(sorted(buckets)), total, count)
    return out


def read_commits(api_addresses: Iterable[str], timeout_s: float = 2.0) -> CommitReading:
    """The histograms summed over the nodes at ``api_addresses`` ("host:port"); a node
    that does not answer counts as empty."""
    summed: CommitReading = {}
    for address in api_addresses:
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout_s) as r:
                reading = parse_commits(r.read().decode())
        except (OSError, ValueError, urllib.error.URLError):
            continue
        for name, hist in reading.items():
            summed[name] = hist if name not in summed else summed[name].plus(hist)
    return summed


def commit_summary(before: CommitReading, after: CommitReading) -> dict[str, float | None]:
    """What happened between two readings: entries proposed, commands per entry, the mean
    pipeline wait and the commit time (mean, p50, p99), in milliseconds."""

    def delta(name: str) -> _Hist | None:
        if name not in after:
            return None
        return after[name].plus(before[name], -1) if name in before else after[name]

    commit, wait, batch = delta(_COMMIT), delta(_WAIT), delta(_BATCH)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    def mean(h: _Hist | None) -> float | None:
        return None if h is None or h.count <= 0 else h.total / h.count

    return {
        "entries": None if batch is None else batch.count,
        "commands_per_entry": None if mean(batch) is None else round(mean(batch) or 0.0, 1),
        "wait_mean_ms": ms(mean(wait)),
        "commit_mean_ms": ms(mean(commit)),
        "commit_p50_ms": ms(None if commit is None else commit.quantile(0.5)),
        "commit_p99_ms": ms(None if commit is None else commit.quantile(0.99)),
    }
