"""``GET /metrics``: Prometheus metrics of one node (docs/metrics.md lists every one).

Each mounting of the API has its own ``CollectorRegistry`` (several nodes can share a process
when embedded), holding:

- ``StateCollector``: queue gauges, outcome counters and latency histograms read from the
  replicated state *at scrape time*, under the node's read lock (a copy, then the lock is
  released): nothing is updated on the hot path, and every node reports the same numbers for
  the same applied index, because they are the state.
- raft gauges from ``NodeAPI.status()`` and, when the node has them (``RaftNode`` does), its
  ``raftq.raft.stats.RaftStats`` histograms, snapshot file size and clock offset;
- per-node HTTP metrics: a latency histogram by method, route template (``/v1/jobs/{id}``,
  never the raw path: no label per job id) and status, and forwarded requests by outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from raftq._version import __version__
from raftq.core import HistogramData, QueueMetrics
from raftq.core.job import JobState
from raftq.core.tally import BUCKETS_MS, OUTCOMES
from raftq.errors import ClusterError
from raftq.raft.api import NodeAPI, NodeStatus
from raftq.raft.stats import HistogramReading, RaftStats

__all__ = ["CONTENT_TYPE", "HTTP_BUCKETS_S", "Metrics", "StateCollector"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0)
_ROLES = ("leader", "follower", "candidate")


class Metrics:
    """The metrics of one node's API mounting; ``render()`` is the ``/metrics`` body."""

    def __init__(self, node: NodeAPI) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http = Histogram(
            "raftq_http_request_duration_seconds",
            "HTTP requests answered by this node, by method, route template and status.",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS_S,
            registry=self.registry,
        )
        self.forwarded = Counter(
            "raftq_forwarded_requests",
            "Requests this node relayed to the leader, by outcome (ok: an answer came back).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("ok", "unreachable", "no_answer"):
            self.forwarded.labels(outcome)  # present at 0 before the first forward
        self.registry.register(StateCollector(node))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http.labels(method, route, str(status)).observe(seconds)

    def observe_forward(self, outcome: str) -> None:
        self.forwarded.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _histogram(name: str, doc: str, labels: Sequence[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=list(labels))


def _le(bound: float) -> str:
    """A bucket bound as Prometheus prints it (``0.005``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _buckets(bounds: Iterable[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs from per-bucket counts (the last one is ``+Inf``)."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip([*bounds, float("inf")], counts, strict=True):
        running += n
        out.append((_le(bound), running))
    return out


_BOUNDS_S = [ms / 1000 for ms in BUCKETS_MS]


def _add_ms_histogram(family: HistogramMetricFamily, labels: list[str], h: HistogramData) -> None:
    family.add_metric(labels, _buckets(_BOUNDS_S, h.counts), h.sum_ms / 1000)


def _add_reading(family: HistogramMetricFamily, h: HistogramReading) -> None:
    family.add_metric([], _buckets(h.bounds, h.counts), h.total)


class StateCollector(Collector):
    """Reads the node at scrape time (see the module docstring)."""

    def __init__(self, node: NodeAPI) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "raftq_node_info",
            "This node's id and raftq version (value 1).",
            labels=["node", "version"],
        )
        info.add_metric([self.node.node_id, __version__], 1)
        yield info
        yield from self._queues()
        yield from self._schedules()
        yield from self._raft()

    # -- queues (replicated state: the same on every node) ----------------------------------

    def _queues(self) -> Iterator[Metric]:
        with self.node.read() as m:
            clock_ms = m.clock_ms
            queues = [m.queue_metrics(name) for name in sorted(m.queue_names())]
            batches_open, batches_kept = m.flow_metrics()
        # Families are built after the lock is released: the lock is held for copies only.
        clock = GaugeMetricFamily(
            "raftq_cluster_clock_seconds",
            "The replicated cluster clock (max now_ms proposed so far), as Unix time.",
        )
        clock.add_metric([], clock_ms / 1000)
        yield clock
        yield _gauge("raftq_batches_open", "Batches with a job not yet finished.", batches_open)
        yield _gauge(
            "raftq_batches", "Batches kept (until their last job is collected).", batches_kept
        )
        families = _QueueFamilies()
        for qm in queues:
            if qm is not None:
                families.add(qm)
        yield from families.all()

    def _schedules(self) -> Iterator[Metric]:
        """Per schedule: fires and skipped slots (replicated counters), paused, last fire."""
        with self.node.read() as m:
            infos = [m.schedule_info(name) for name in m.schedule_names()]
        fires = CounterMetricFamily(
            "raftq_schedule_fires",
            "Jobs enqueued by a schedule's slots (triggers not counted).",
            labels=["schedule", "queue"],
        )
        skipped = CounterMetricFamily(
            "raftq_schedule_skipped",
            "Slots of a schedule recorded without a job (overlap skip: the last job ran on).",
            labels=["schedule", "queue"],
        )
        paused = GaugeMetricFamily(
            "raftq_schedule_paused", "1 while the schedule is paused.", labels=["schedule"]
        )
        last = GaugeMetricFamily(
            "raftq_schedule_last_fire_seconds",
            "The slot (or trigger time) of the schedule's latest job, as Unix time.",
            labels=["schedule"],
        )
        for s in infos:
            if s is None:
                continue
            fires.add_metric([s.name, s.queue], s.fires)
            skipped.add_metric([s.name, s.queue], s.skipped)
            paused.add_metric([s.name], 1 if s.paused else 0)
            if s.last_fire_ms:
                last.add_metric([s.name], s.last_fire_ms / 1000)
        yield from (fires, skipped, paused, last)

    # -- raft (this node's own view) --------------------------------------------------------

    def _raft(self) -> Iterator[Metric]:
        try:
            st = self.node.status()
        except ClusterError:
            return  # not started (or stopping): no raft view to report
        yield from _status_families(st)
        stats = getattr(self.node, "stats", None)
        if isinstance(stats, RaftStats):
            yield from _stats_families(stats)
        offset_of = getattr(self.node, "clock_offset_ms", None)
        if callable(offset_of):
            offset = offset_of()
            if isinstance(offset, int):
                g = GaugeMetricFamily(
                    "raftq_clock_offset_seconds",
                    "This node's wall clock minus cluster time as this node estimates it "
                    "(positive: ahead).",
                )
                g.add_metric([], offset / 1000)
                yield g
        size_of = getattr(self.node, "snapshot_file_bytes", None)
        if callable(size_of):
            size = size_of()
            if isinstance(size, int):
                g = GaugeMetricFamily(
                    "raftq_raft_snapshot_size_bytes", "Size of this node's latest snapshot file."
                )
                g.add_metric([], size)
                yield g


class _QueueFamilies:
    """The per-queue metric families of one scrape."""

    def __init__(self) -> None:
        self.jobs = GaugeMetricFamily(
            "raftq_queue_jobs", "Jobs in the queue by state.", labels=["queue", "state"]
        )
        self.ready = GaugeMetricFamily(
            "raftq_queue_ready_jobs",
            "Jobs ready to claim (state queued) by priority.",
            labels=["queue", "priority"],
        )
        self.paused = GaugeMetricFamily(
            "raftq_queue_paused", "1 while the queue is paused.", labels=["queue"]
        )
        self.totals = CounterMetricFamily(
            "raftq_jobs",
            "Job events by outcome (see docs/metrics.md).",
            labels=["queue", "outcome"],
        )
        self.wait = _histogram(
            "raftq_job_wait_seconds",
            "From when a job became claimable (enqueue, or its due time) to its first claim.",
            ["queue"],
        )
        self.run = _histogram(
            "raftq_job_run_seconds", "From the claim to the ack of successful attempts.", ["queue"]
        )
        self.workers = GaugeMetricFamily(
            "raftq_workers",
            "Distinct workers that claimed from the queue in the last minute.",
            labels=["queue"],
        )
        self.leased = GaugeMetricFamily(
            "raftq_worker_leased_jobs",
            "Jobs a worker holds a live lease on.",
            labels=["queue", "worker"],
        )
        self.limit = GaugeMetricFamily(
            "raftq_queue_limit",
            "A queue's limit: concurrency, group_concurrency, rate and group_rate (claims per "
            "rate_period_ms, group_rate_period_ms); absent when not set.",
            labels=["queue", "limit"],
        )
        self.groups = GaugeMetricFamily(
            "raftq_queue_groups",
            "Groups of a limited queue: ready (a claim would serve them), waiting (ready jobs, "
            "at their group cap or rate).",
            labels=["queue", "state"],
        )

    def add(self, qm: QueueMetrics) -> None:
        s = qm.stats
        name = s.queue
        for state in JobState:
            self.jobs.add_metric([name, state.value], s.depth[state.value])
        for priority, n in s.by_priority.items():
            self.ready.add_metric([name, priority], n)
        self.paused.add_metric([name], 1 if s.paused else 0)
        for outcome in OUTCOMES:
            self.totals.add_metric([name, outcome], s.totals[outcome])
        _add_ms_histogram(self.wait, [name], qm.wait)
        _add_ms_histogram(self.run, [name], qm.run)
        self.workers.add_metric([name], qm.workers)
        for worker, n in qm.leased_by_worker.items():
            self.leased.add_metric([name, worker], n)
        lim = s.limits
        if lim is not None:
            for label, value in (
                ("concurrency", lim.concurrency),
                ("group_concurrency", lim.group_concurrency),
                ("rate", lim.rate_limit),
                ("rate_period_ms", lim.rate_period_ms),
                ("group_rate", lim.group_rate_limit),
                ("group_rate_period_ms", lim.group_rate_period_ms),
            ):
                if value is not None:
                    self.limit.add_metric([name, label], value)
            self.groups.add_metric([name, "ready"], lim.groups_ready)
            self.groups.add_metric([name, "waiting"], lim.groups_waiting)

    def all(self) -> list[Metric]:
        return [
            self.jobs,
            self.ready,
            self.paused,
            self.totals,
            self.wait,
            self.run,
            self.workers,
            self.leased,
            self.limit,
            self.groups,
        ]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _status_families(st: NodeStatus) -> Iterator[Metric]:
    yield _gauge("raftq_raft_term", "Current raft term as this node knows it.", st.term)
    role = GaugeMetricFamily(
        "raftq_raft_role", "1 for this node's current role, 0 for the others.", labels=["role"]
    )
    for r in _ROLES:
        role.add_metric([r], 1 if st.role == r else 0)
    yield role
    yield _gauge("raftq_raft_commit_index", "Highest log index known committed.", st.commit_index)
    yield _gauge("raftq_raft_applied_index", "Highest log index applied here.", st.applied_index)
    yield _gauge(
        "raftq_raft_log_entries",
        "Entries in this node's raft log (since the last snapshot).",
        st.log_entries,
    )
    yield _gauge("raftq_raft_has_leader", "1 when this node knows a leader.", 1 if st.leader else 0)
    yield _gauge("raftq_raft_ready", "1 when /readyz would answer 200.", 1 if st.ready else 0)
    reach = GaugeMetricFamily(
        "raftq_raft_peer_reachable",
        "1 when this node is connected to the peer at the raft level.",
        labels=["peer"],
    )
    for p in st.nodes:
        if p.id != st.id:
            reach.add_metric([p.id], 1 if p.reachable else 0)
    yield reach
    yield _gauge(
        "raftq_config_membership_mismatch",
        "1 when this node's config lists other nodes than the replicated membership it keeps.",
        1 if st.membership_mismatch else 0,
    )
    yield _gauge("raftq_cluster_voters", "Voters in the replicated membership.", len(st.members))


def _stats_families(stats: RaftStats) -> Iterator[Metric]:
    r = stats.snapshot()
    changes = CounterMetricFamily(
        "raftq_raft_leader_changes",
        "Times this node saw a new leader (sampled each tick and scrape).",
    )
    changes.add_metric([], r.leader_changes)
    yield changes
    fsync = _histogram(
        "raftq_raft_fsync_duration_seconds",
        "Durable write of appends to the raft journal (one O_DSYNC write per append or batch).",
        [],
    )
    _add_reading(fsync, r.fsync_seconds)
    yield fsync
    batch = _histogram(
        "raftq_raft_group_commit_batch_commands", "Commands per log entry proposed here.", []
    )
    _add_reading(batch, r.batch_commands)
    yield batch
    wait = _histogram(
        "raftq_raft_group_commit_wait_seconds",
        "Per entry proposed here: how long its oldest command waited for a place in the "
        "pipeline (entries in flight).",
        [],
    )
    _add_reading(wait, r.queue_wait_seconds)
    yield wait
    commit = _histogram(
        "raftq_raft_commit_duration_seconds",
        "Per entry proposed here: from its proposal until it was committed and applied here.",
        [],
    )
    _add_reading(commit, r.commit_seconds)
    yield commit
    snap = _histogram(
        "raftq_raft_snapshot_duration_seconds",
        "Time a snapshot writer ran (sampled each tick interval).",
        [],
    )
    _add_reading(snap, r.snapshot_seconds)
    yield snap
    killed = CounterMetricFamily(
        "raftq_raft_snapshot_writer_kills",
        "Snapshot writers killed for running past raft.snapshot_write_timeout_s.",
    )
    killed.add_metric([], r.snapshot_writers_killed)
    yield killed
    refused = CounterMetricFamily(
        "raftq_raft_peer_connections_refused",
        "Raft connections refused because the peer belongs to another cluster.",
    )
    refused.add_metric([], r.peer_connections_refused)
    yield refused
    mismatches = CounterMetricFamily(
        "raftq_raft_digest_mismatches",
        "Leader: times a peer's digest differed from this node's at an equal applied index.",
    )
    mismatches.add_metric([], r.digest_mismatches)
    yield mismatches
    yield _gauge(
        "raftq_raft_digest_mismatch_peers",
        "Leader: peers whose digest differs from this node's at an equal applied index now.",
        r.digest_mismatch_peers,
    )
