"""The replicated state machine: committed entries in, results out.

``apply_entry`` is the one replicated entry point. It is total: bytes that do not decode and
every domain refusal become results; an exception means the state itself is corrupt (a bug),
and the node must stop rather than diverge.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from dataclasses import replace
from typing import IO, assert_never

from raftq.core import admin_ops, codec, deps, lease_ops, ops, schedules
from raftq.core.batches import batch_counts
from raftq.core.commands import (
    Ack,
    Cancel,
    Claim,
    Command,
    Configure,
    CreateBatch,
    DeleteSchedule,
    EnableVersion,
    Enqueue,
    EnqueueFlow,
    Fire,
    Heartbeat,
    Nack,
    Pause,
    Purge,
    PutSchedule,
    Release,
    RequeueDead,
    Resume,
    SetLimits,
    SetSchedulePaused,
    Tick,
    TriggerSchedule,
)
from raftq.core.errors import CodecError
from raftq.core.invariants import check_invariants
from raftq.core.job import BatchInfo, Job, JobFlow, JobInfo, JobState
from raftq.core.limits import (
    MAX_LOG_VERSION,
    MAX_REQUEST_ID_CHARS,
    MAX_TIME_MS,
    REQUEST_WINDOW_MAX,
    REQUEST_WINDOW_MS,
)
from raftq.core.queue import QueueState
from raftq.core.requests import LEGACY_DIGEST, Answer, command_digest, remember, replay
from raftq.core.results import Reason, Refusal, Result, Ticked, VersionEnabled
from raftq.core.schedules import Schedule, ScheduleInfo
from raftq.core.snapshot import read_snapshot_into, snapshot_digest
from raftq.core.stats import (
    LimitsView,
    QueueMetrics,
    QueueStats,
    limits_view,
    queue_metrics,
    queue_stats,
)

__all__ = ["Machine"]

_DIGEST_SIZE = 16


class Machine:
    """The whole replicated state. Single-threaded: the caller serializes every call.

    Invariants: ``clock_ms`` never decreases; ``next_id`` and ``last_token`` only grow, so job
    ids are unique and fencing tokens strictly increase across the cluster; ``digest`` is a
    rolling hash of every applied entry, so replicas at the same ``applied`` index agree on it
    exactly when they applied the same bytes.
    """

    def __init__(self) -> None:
        self.clock_ms = 0
        self.applied = 0  # entries applied
        self.digest = b"\0" * _DIGEST_SIZE
        self.next_id = 1
        self.last_token = 0
        # The log version the cluster has enabled (``EnableVersion``): commands of a version
        # above it are refused. Only goes up.
        self.enabled_version = 1
        self.jobs: dict[int, Job] = {}
        self.queues: dict[str, QueueState] = {}
        # request id -> (expires_ms, command digest, first answer) (``requests.py``);
        # request_order is FIFO by expiry.
        self.requests: dict[str, tuple[int, bytes, Answer]] = {}
        self.request_order: deque[tuple[int, str]] = deque()
        # Schedules by name (``schedules.py``), and the jobs their fires made: job id ->
        # (schedule name, fire_ms). An entry goes with its job (collected or purged).
        self.schedules: dict[str, Schedule] = {}
        self.fired: dict[int, tuple[str, int]] = {}
        self.flow = deps.Flow()  # dependencies and batches (log version 3)

    @classmethod
    def restore(cls, snapshot: IO[bytes] | bytes) -> Machine:
        """A machine rebuilt from ``snapshot.write_snapshot`` output (``CodecError`` if bad)."""
        m = cls()
        read_snapshot_into(m, snapshot)
        return m

    # -- the replicated entry point -------------------------------------------------------

    def apply_entry(self, raw: bytes) -> list[Result]:
        """Apply one committed log entry (a batch of commands); one result per command."""
        self.applied += 1
        self.digest = hashlib.blake2b(
            self.digest + raw, digest_size=_DIGEST_SIZE, person=b"raftq-entry"
        ).digest()
        try:
            commands = codec.decode_entry(raw)
        except CodecError as e:
            return [Refusal(e.reason, str(e))]
        return [self.apply_command(cmd) for cmd in commands]

    def apply(self, raw: bytes) -> bytes:
        """``apply_entry`` with the results encoded (versioned msgpack)."""
        return codec.encode_results(self.apply_entry(raw))

    def apply_command(self, cmd: Command) -> Result:
        if not 0 <= cmd.now_ms <= MAX_TIME_MS:
            return Refusal(Reason.INVALID, f"now_ms out of range: {cmd.now_ms}")
        self.clock_ms = max(self.clock_ms, cmd.now_ms)
        self._expire_requests()
        rid = cmd.request_id
        if rid is None:
            return self._dispatch(cmd)
        if len(rid) > MAX_REQUEST_ID_CHARS:
            return Refusal(Reason.INVALID, f"request_id longer than {MAX_REQUEST_ID_CHARS}")
        digest = command_digest(cmd)
        seen = self.requests.get(rid)
        if seen is not None:
            _, first_digest, answer = seen
            if first_digest not in (digest, LEGACY_DIGEST):
                # Another command under a known id: not a retry. Refused, not applied, and the
                # id keeps its first answer (which belongs to whoever sent that command).
                return Refusal(
                    Reason.REQUEST_ID_REUSED,
                    "this request id was already used for another command within the "
                    "request-id window; use a fresh id per operation",
                )
            return replay(self, answer)
        result = self._dispatch(cmd)
        expires_ms = self.clock_ms + REQUEST_WINDOW_MS
        self.requests[rid] = (expires_ms, digest, remember(result))
        self.request_order.append((expires_ms, rid))
        return result

    def _dispatch(self, cmd: Command) -> Result:
        result = self._dispatch_one(cmd)
        flow = self.flow
        if flow.events or flow.closing:  # what finished jobs release, cancel or fire
            deps.settle(self)
        return result

    def _dispatch_one(self, cmd: Command) -> Result:  # noqa: C901 - one case per command type
        # Every command this code decodes is of a version <= LOG_VERSION: once that is
        # enabled, nothing is gated (and the hot path skips the lookup).
        if (
            self.enabled_version < codec.LOG_VERSION
            and (needed := codec.command_version(cmd)) > self.enabled_version
            and type(cmd) is not EnableVersion
        ):
            return Refusal(
                Reason.VERSION_NOT_ENABLED,
                f"this command needs log version {needed}, the cluster has enabled "
                f"{self.enabled_version}: enable it once every node runs a raftq that has it",
            )
        match cmd:
            case Enqueue():
                return ops.enqueue(self, cmd)
            case Claim():
                return ops.claim(self, cmd)
            case Heartbeat():
                return lease_ops.heartbeat(self, cmd)
            case Ack():
                return lease_ops.ack(self, cmd)
            case Nack():
                return lease_ops.nack(self, cmd)
            case Release():
                return lease_ops.release(self, cmd)
            case Cancel():
                return lease_ops.cancel(self, cmd)
            case RequeueDead():
                return admin_ops.requeue_dead(self, cmd)
            case Purge():
                return admin_ops.purge(self, cmd)
            case Pause() | Resume():
                return admin_ops.pause_resume(self, cmd)
            case Configure():
                return admin_ops.configure(self, cmd)
            case SetLimits():
                return admin_ops.set_limits(self, cmd)
            case Tick():
                for q in self.queues.values():
                    ops.advance_queue(self, q)
                return Ticked(self.clock_ms)
            case EnableVersion():
                if not 1 <= cmd.version <= MAX_LOG_VERSION:
                    return Refusal(Reason.INVALID, f"version out of 1..{MAX_LOG_VERSION}")
                self.enabled_version = max(self.enabled_version, cmd.version)
                return VersionEnabled(self.enabled_version)
            case PutSchedule():
                return schedules.put_schedule(self, cmd)
            case DeleteSchedule():
                return schedules.delete_schedule(self, cmd)
            case Fire():
                return schedules.fire(self, cmd)
            case TriggerSchedule():
                return schedules.trigger(self, cmd)
            case SetSchedulePaused():
                return schedules.set_paused(self, cmd)
            case EnqueueFlow():
                return deps.enqueue_flow(self, cmd)
            case CreateBatch():
                return deps.create_batch(self, cmd)
            case _:
                assert_never(cmd)

    def _expire_requests(self) -> None:
        order = self.request_order
        while order and (order[0][0] <= self.clock_ms or len(order) > REQUEST_WINDOW_MAX):
            _, rid = order.popleft()
            del self.requests[rid]

    # -- reads (local, never mutate: a read must not make replicas differ) ----------------

    def job_info(self, job_id: int) -> JobInfo | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        info = job.info(self.queues[job.queue].group_of.get(job_id))
        origin = self.fired.get(job_id)
        if origin is None:
            return info
        return replace(info, schedule=origin[0], fire_ms=origin[1])

    def schedule_names(self) -> list[str]:
        return sorted(self.schedules)

    def schedule_info(self, name: str) -> ScheduleInfo | None:
        s = self.schedules.get(name)
        return None if s is None else s.info()

    def job_queue(self, job_id: int) -> str | None:
        """The queue of a job (``None`` if unknown): what ``job_info(job_id).queue`` gives,
        without building the whole view (the batched ack checks each job's queue)."""
        job = self.jobs.get(job_id)
        return None if job is None else job.queue

    def job_flow(self, job_id: int) -> JobFlow | None:
        """A job's dependencies, their outcomes so far, and its batch (``None``: neither)."""
        link = self.flow.links.get(job_id)
        batch = self.flow.batch_of.get(job_id)
        if link is None and batch is None:
            return None
        return JobFlow(
            depends_on=() if link is None else link.deps,
            outcomes=() if link is None else deps.parents_of(self, job_id) or (),
            on_dependency_failure="run" if link is not None and link.run_on_failure else "cancel",
            batch=batch,
        )

    def batch_info(self, batch_id: int) -> BatchInfo | None:
        b = self.flow.batches.get(batch_id)
        if b is None:
            return None
        names = ("on_complete", "on_success", "on_death")
        return BatchInfo(
            id=b.id,
            jobs=b.jobs,
            counts=batch_counts(self, b),
            fired=tuple(n for i, n in enumerate(names) if b.fired & (1 << i)),
        )

    def flow_metrics(self) -> tuple[int, int]:
        """(batches open: some member unfinished, batches kept)."""
        batches = self.flow.batches.values()
        return sum(1 for b in batches if len(b.outcomes) < len(b.jobs)), len(batches)

    def queue_names(self) -> list[str]:
        return list(self.queues)

    def queue_stats(self, name: str) -> QueueStats | None:
        q = self.queues.get(name)
        return None if q is None else queue_stats(q, self.clock_ms)

    def claimable(self, name: str) -> int:
        """At most how many jobs a claim of queue ``name`` could take now: its ready jobs, or
        fewer under its limits (0: unknown, paused, nothing ready, or at a cap)."""
        q = self.queues.get(name)
        if q is None or q.paused:
            return 0
        if q.lim is None:
            return q.counts[JobState.QUEUED]
        return q.lim.claimable(self.clock_ms)

    def queue_limits(self, name: str) -> LimitsView | None:
        """The limits of a queue and their use now (``None``: no such queue)."""
        q = self.queues.get(name)
        return None if q is None else limits_view(q, self.clock_ms)

    def queue_metrics(self, name: str) -> QueueMetrics | None:
        """Stats, histograms and workers of a queue, for ``/metrics``."""
        q = self.queues.get(name)
        return None if q is None else queue_metrics(q, self.jobs, self.clock_ms)

    def dead_letters(self, name: str, limit: int = 100, after_id: int = 0) -> list[JobInfo]:
        """Dead letters of a queue, oldest first, at most ``limit``, ids above ``after_id``."""
        q = self.queues.get(name)
        if q is None:
            return []
        # ``q.dead`` is in the order jobs died, which is not id order: sort, so that paging
        # with ``after_id`` neither skips nor repeats a dead letter.
        page = heapq.nsmallest(limit, (i for i in q.dead if i > after_id))
        return [self.jobs[job_id].info(q.group_of.get(job_id)) for job_id in page]

    def state_digest(self) -> str:
        """Hex digest of the canonical snapshot: equal iff the states are equal."""
        return snapshot_digest(self)

    def check_invariants(self) -> None:
        """Raise ``CorruptStateError`` if an internal invariant is broken (tests, fail-stop)."""
        check_invariants(self)
        schedules.check_schedules(self)
