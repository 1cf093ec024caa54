"""The queue's operations, each written once: validate the arguments, build the core command,
submit it to the local raft node, and answer.

Used by the HTTP handlers (``raftq.server.handlers``) and by the embedded node
(``raftq.node.embedded``), so an argument is refused exactly alike over HTTP and in-process,
with the same ``reason``, ``status`` and message. Answers are the shapes of the HTTP API's
bodies (``raftq.service.render``); the embedded node reads them exactly as it reads a
forwarded call's answer.

An operation is taken in two steps: ``Service.<operation>(...)`` validates the arguments
(``Fields`` of the request body, or of the embedded call's keyword arguments) and returns an
``Op``; awaiting ``op(request_id)`` on the leader checks the caller's queues
(``raftq.service.access``), submits and answers. Every error is one of ``raftq.errors``:
``Rejected`` (validation, refusals of the state machine), ``AuthError`` (a queue outside the
caller's patterns), ``NotLeader``/``NoLeader``/``Overloaded``/``OutcomeUnknown`` (the cluster).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from raftq.core import (
    Ack,
    Acked,
    BatchCreated,
    Cancel,
    Cancelled,
    Claim,
    Claimed,
    Command,
    Configure,
    Configured,
    CreateBatch,
    DeleteSchedule,
    EnableVersion,
    Enqueue,
    Enqueued,
    EnqueueFlow,
    Extended,
    Fired,
    Heartbeat,
    Lease,
    LimitsSet,
    Nack,
    Nacked,
    NewJob,
    Pause,
    Paused,
    Purge,
    Purged,
    PutSchedule,
    Refusal,
    Release,
    Released,
    Requeued,
    RequeueDead,
    Result,
    Resume,
    Resumed,
    ScheduleDeleted,
    SchedulePaused,
    SchedulePut,
    SetLimits,
    SetSchedulePaused,
    TriggerSchedule,
    VersionEnabled,
)
from raftq.core.limits import (
    MAX_BATCH_JOBS,
    MAX_CLAIM,
    MAX_CLAIM_QUEUES,
    MAX_DEDUP_WINDOW_MS,
    MAX_DELAY_MS,
    MAX_ERROR_CHARS,
    MAX_KEY_CHARS,
    MAX_LEASE_MS,
    MAX_MAX_ATTEMPTS,
    MAX_RATE_LIMIT,
    MAX_RATE_PERIOD_MS,
    MAX_RETENTION_MS,
    MAX_SLOTS,
    MAX_TIME_MS,
    MAX_WORKER_CHARS,
)
from raftq.errors import Rejected
from raftq.raft.api import NodeAPI
from raftq.service.access import allowed_queue, require_job, require_jobs, require_queues
from raftq.service.claims import claim_rounds
from raftq.service.fields import (
    INT64_MAX,
    Fields,
    check_address,
    check_int,
    check_queue,
    invalid,
)
from raftq.service.flow_ops import FLOW_FIELDS, FlowOps, has_flow_fields, render_flow
from raftq.service.long_jobs import LongJobOps
from raftq.service.refusals import rejected
from raftq.service.render import (
    render_cluster,
    render_job,
    render_lease,
    render_limits,
    render_limits_set,
    render_queue,
)
from raftq.service.schedules import ScheduleOps
from raftq.service.values import Format, pack_value

__all__ = ["Answer", "Claimer", "Limits", "Op", "Service", "new_job", "plain_ack"]

Answer = dict[str, Any]
_R = TypeVar("_R", bound=Result)

# The success result of each command the service submits (a replayed request id can answer
# with the result of another kind of command: see Service.submit).
_RESULT_OF: dict[type[Command], type[Result]] = {
    Enqueue: Enqueued,
    Claim: Claimed,
    Heartbeat: Extended,
    Ack: Acked,
    Nack: Nacked,
    Release: Released,
    Cancel: Cancelled,
    Pause: Paused,
    Resume: Resumed,
    Purge: Purged,
    RequeueDead: Requeued,
    Configure: Configured,
    SetLimits: LimitsSet,
    EnableVersion: VersionEnabled,
    PutSchedule: SchedulePut,
    DeleteSchedule: ScheduleDeleted,
    TriggerSchedule: Fired,
    SetSchedulePaused: SchedulePaused,
    EnqueueFlow: Enqueued,
    CreateBatch: BatchCreated,
}


class Limits(Protocol):
    """The limits and deadline the operations apply (``raftq.server.ServerSettings``)."""

    @property
    def max_payload_bytes(self) -> int: ...
    @property
    def max_batch_jobs(self) -> int: ...
    @property
    def max_wait_ms(self) -> int: ...
    @property
    def submit_timeout_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Op:
    """A validated operation: ``await op(request_id)`` runs it on this node (the leader).

    ``wait_ms`` is how long it may wait for work (a long-poll claim; 0 otherwise), for the
    caller's deadline when it forwards instead.
    """

    run: Callable[[str | None], Awaitable[Answer]]
    wait_ms: int = 0

    async def __call__(self, request_id: str | None) -> Answer:
        return await self.run(request_id)


@dataclass(frozen=True, slots=True)
class Claimer:
    """A worker's validated claims on ``queues``: ``await claim(request_id, max, wait_ms,
    wanted, turn)`` runs one long-poll claim (``Service.claim_leases``) and answers its jobs
    as rendered for the API (the maps of ``{"jobs": [...]}``); ``turn`` rotates the order of
    the queues (the worker stream's rounds take turns, as the HTTP worker's claims do)."""

    queues: tuple[str, ...]
    claim: Callable[[str | None, int, int, Callable[[], bool], int], Awaitable[list[Answer]]]


def new_job(f: Fields, fmt: Format, max_payload_bytes: int) -> NewJob:
    """One job of an enqueue from its fields (``payload``, ``priority``, ``delay_ms``,
    ``run_at_ms``, ``key``, ``max_attempts``, ``lease_ms``, ``group``), validated; ``f`` must
    hold no other field."""
    payload = pack_value(f.required("payload"), fmt, f.name("payload"), max_payload_bytes)
    priority = f.int_default("priority", 0, 9, default=0)
    delay_ms = f.opt_int("delay_ms", 0, MAX_DELAY_MS)
    run_at_ms = f.opt_int("run_at_ms", 0, MAX_TIME_MS)
    if delay_ms is not None and run_at_ms is not None:
        raise invalid(f.name("delay_ms"), "give delay_ms or run_at_ms, not both")
    group = f.raw("group")
    job = NewJob(
        payload=payload,
        priority=priority,
        delay_ms=delay_ms,
        run_at_ms=run_at_ms,
        key=f.opt_str("key", MAX_KEY_CHARS),
        max_attempts=f.opt_int("max_attempts", 1, MAX_MAX_ATTEMPTS),
        lease_ms=f.opt_int("lease_ms", 1, MAX_LEASE_MS),
        group=None if group is None else check_queue(group, f.name("group")),
    )
    f.done()
    return job


def plain_ack(item: Any) -> tuple[int, int, Any] | None:
    """``(id, token, result)`` of an ack item that ``Fields`` would accept as is (an object of
    ``id`` (1..), ``token`` (0..) and optionally ``result``), or ``None``: then ``Fields``
    takes it apart and names the field at fault. A shortcut for the usual item only."""
    if type(item) is not dict or not 2 <= len(item) <= 3:
        return None
    job_id = item.get("id")
    token = item.get("token")
    if type(job_id) is not int or type(token) is not int:
        return None
    if not (1 <= job_id <= INT64_MAX and 0 <= token <= INT64_MAX):
        return None
    if len(item) == 3 and "result" not in item:
        return None
    return job_id, token, item.get("result")


def _rate_field(args: Fields, field: str) -> tuple[int | None, int | None]:
    """``{limit, period_ms}`` (or absent / ``null``) as ``(limit, period_ms)``."""
    raw = args.raw(field)
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise invalid(args.name(field), "expected an object {limit, period_ms} or null")
    f = Fields(raw, args.name(field))
    limit = f.req_int("limit", 1, MAX_RATE_LIMIT)
    period_ms = f.req_int("period_ms", 1, MAX_RATE_PERIOD_MS)
    f.done()
    return limit, period_ms


class Service(FlowOps, LongJobOps):
    """The operations on one node (those of dependencies and batches: ``flow_ops``; the
    heartbeat: ``long_jobs``).

    Args:
        node: the local raft node.
        limits: payload, batch and wait limits, and the submit deadline.
    """

    def __init__(self, node: NodeAPI, limits: Limits) -> None:
        self.node = node
        self.limits = limits
        self.schedules = ScheduleOps(self)  # raftq.service.schedules

    # -- submitting -------------------------------------------------------------------------

    async def submit(self, command: Command) -> Result:
        """Submit and return a success result of the command's kind.

        A core refusal raises its ``Rejected``. Another command under a known request id is
        refused by the machine (409 ``request_id_reused``). A result of another kind than the
        command's is the first answer to an id restored from a version-3 snapshot, which kept
        no digest of its command: 409 ``request_id_reused`` too.
        """
        result = await self.node.submit(command, self.limits.submit_timeout_ms)
        return self.accepted(command, result)

    @staticmethod
    def accepted(command: Command, result: Result) -> Result:
        if isinstance(result, Refusal):
            raise rejected(result)
        expected = _RESULT_OF.get(type(command))
        if expected is not None and not isinstance(result, expected):
            raise Rejected(
                "request_id_reused",
                f"X-Request-Id {command.request_id!r} was already used for another operation "
                "within the deduplication window; use a fresh id per operation",
                409,
            )
        return result

    async def claim_leases(
        self, first: Claim, wait_ms: int, wanted: Callable[[], bool]
    ) -> Sequence[Lease]:
        """Claim; while nothing is ready and time remains, wait for work (woken by applied
        entries and by enqueues on this node, never polling) and claim again
        (``raftq.service.claims.claim_rounds``)."""

        def check(result: Result) -> Claimed:
            return _expect(Claimed, self.accepted(first, result))

        timeout_ms = self.limits.submit_timeout_ms
        return await claim_rounds(self.node, first, wait_ms, timeout_ms, check=check, wanted=wanted)

    async def _require_job(self, job_id: int) -> None:
        """The queue check of a write on a job, right before its submit: this node is the
        leader, or the barrier raises ``NotLeader`` and the caller forwards."""
        await require_job(self.node, job_id, self.limits.submit_timeout_ms)

    # -- producing --------------------------------------------------------------------------

    def enqueue(self, queue: str, args: Fields, fmt: Format) -> Op:
        """One job (``args`` are its fields), or ``{"jobs": [...]}``; answers ``{id,
        existing}`` or ``{ids, existing}``."""
        queue = check_queue(queue, "queue")
        batch = args.has("jobs")
        max_bytes = self.limits.max_payload_bytes
        if not batch and any(args.has(k) for k in FLOW_FIELDS):
            return self.enqueue_flow(queue, [args], fmt, many=False)
        if batch:
            items = args.req_list("jobs", self.limits.max_batch_jobs, 1)
            args.done()
            if has_flow_fields(items):
                fields = [Fields(item, f"jobs[{i}]") for i, item in enumerate(items)]
                return self.enqueue_flow(queue, fields, fmt, many=True)
            jobs = tuple(
                new_job(Fields(item, f"jobs[{i}]"), fmt, max_bytes) for i, item in enumerate(items)
            )
        else:
            jobs = (new_job(args, fmt, max_bytes),)

        async def run(rid: str | None) -> Answer:
            cmd = Enqueue(now_ms=self.node.now_ms(), request_id=rid, queue=queue, jobs=jobs)
            result = _expect(Enqueued, await self.submit(cmd))
            if batch:
                return {"ids": list(result.ids), "existing": list(result.existing)}
            return {"id": result.ids[0], "existing": result.existing[0]}

        return Op(run)

    # -- working ----------------------------------------------------------------------------

    def claim(
        self, queue: str | None, args: Fields, wanted: Callable[[], bool] = lambda: True
    ) -> Op:
        """A long-poll claim from ``queue``, or from ``args``' ``queues`` (``queue`` None):
        ``{worker, max?, lease_ms?, wait_ms?}``; answers ``{jobs}``. ``wanted()`` false (the
        caller left) ends the wait without leasing anything."""
        if queue is not None:
            claims = self._claimer((check_queue(queue, "queue"),), args)
        else:
            claims = self.claimer(args)  # its queues are checked there
        mx = args.int_default("max", 1, MAX_CLAIM, default=1)
        wait_ms = min(args.int_default("wait_ms", 0, INT64_MAX, default=0), self.limits.max_wait_ms)
        args.done()

        async def run(rid: str | None) -> Answer:
            return {"jobs": await claims.claim(rid, mx, wait_ms, wanted, 0)}

        return Op(run, wait_ms)

    def claimer(self, args: Fields) -> Claimer:
        """The claims of a worker on ``args``' ``{queues, worker, lease_ms?}`` (taken from
        ``args``; the caller takes the rest): ``POST /v1/claim`` and the worker stream's
        subscribe frame. 403 unless the caller may use every queue."""
        names = args.req_list("queues", MAX_CLAIM_QUEUES, 1)
        queues = tuple(check_queue(q, args.name(f"queues[{i}]")) for i, q in enumerate(names))
        require_queues(queues)  # a queue of the path is checked by the edge's guard
        return self._claimer(queues, args)

    def _claimer(self, queues: tuple[str, ...], args: Fields) -> Claimer:
        worker = args.req_str("worker", MAX_WORKER_CHARS)
        lease_ms = args.opt_int("lease_ms", 1, MAX_LEASE_MS)

        async def claim(
            rid: str | None, mx: int, wait_ms: int, wanted: Callable[[], bool], turn: int = 0
        ) -> list[Answer]:
            k = turn % len(queues)
            first = Claim(
                now_ms=self.node.now_ms(),
                request_id=rid,
                queues=queues[k:] + queues[:k],
                worker=worker,
                max=mx,
                lease_ms=lease_ms,
            )
            leases = await self.claim_leases(first, wait_ms, wanted)
            return [render_lease(x) for x in leases]

        return Claimer(queues, claim)

    def ack(self, job_id: int, args: Fields, fmt: Format) -> Op:
        """``{token, result?}``; answers ``{id, state: succeeded}``."""
        token = args.req_int("token")
        value = args.raw("result")
        args.done()

        async def run(rid: str | None) -> Answer:
            await self._require_job(job_id)
            result_bytes = (
                None
                if value is None
                else pack_value(value, fmt, "result", self.limits.max_payload_bytes)
            )
            cmd = Ack(
                now_ms=self.node.now_ms(),
                request_id=rid,
                job_id=job_id,
                token=token,
                result=result_bytes,
            )
            _expect(Acked, await self.submit(cmd))
            return {"id": job_id, "state": "succeeded"}

        return Op(run)

    def ack_many(self, args: Fields, fmt: Format) -> Op:
        """``{acks: [{id, token, result?}, ...]}``; answers ``{results}``, one per item.

        Each ack is its own ``Ack`` command with its own outcome (one stale token refuses
        only its own item); submitted together, they share log entries by group commit.

        Every item is validated before any is submitted (a malformed item: 400, nothing
        applied). Item ``i`` carries the request id ``<request id>.<i>``, so a retry of the
        whole request (same id) is answered per item with the first outcome. A cluster
        failure of any item (not leader, outcome unknown) fails the request as a whole, to be
        retried or forwarded with the same request id.
        """
        items = args.req_list("acks", self.limits.max_batch_jobs, 1)
        args.done()
        parsed: list[tuple[int, int, bytes | None]] = []
        for i, item in enumerate(items):
            fast = plain_ack(item)
            if fast is not None:
                job_id, token, value = fast
            else:  # anything unusual, with the error message of the field at fault
                g = Fields(item, f"acks[{i}]")
                job_id = g.req_int("id", 1)
                token = g.req_int("token")
                value = g.raw("result")
                g.done()
            result_bytes = (
                None
                if value is None
                else pack_value(value, fmt, f"acks[{i}].result", self.limits.max_payload_bytes)
            )
            parsed.append((job_id, token, result_bytes))

        async def run(rid: str | None) -> Answer:
            now = self.node.now_ms()
            commands = [
                Ack(
                    now_ms=now,
                    request_id=None if rid is None else f"{rid}.{i}",
                    job_id=job_id,
                    token=token,
                    result=result_bytes,
                )
                for i, (job_id, token, result_bytes) in enumerate(parsed)
            ]
            # Each job's queue, on the leader right before submitting (access.require_jobs):
            # a restricted caller's items on jobs unknown even after a barrier are not
            # submitted.
            timeout_ms = self.limits.submit_timeout_ms
            unknown = await require_jobs(self.node, (c.job_id for c in commands), timeout_ms)
            submitted = [c for c in commands if c.job_id not in unknown]
            # One submission of all the items (one deadline); a cluster failure of any raises.
            outcomes = iter(await self.node.submit_many(submitted, timeout_ms) if submitted else [])
            answers: list[Answer] = []
            for cmd in commands:
                if cmd.job_id in unknown:
                    error = {"code": "not_found", "message": f"no job {cmd.job_id}", "status": 404}
                    answers.append({"id": cmd.job_id, "error": error})
                    continue
                outcome = next(outcomes)
                if isinstance(outcome, Refusal):
                    err = rejected(outcome)
                    error = {"code": err.reason, "message": err.message, "status": err.status}
                    answers.append({"id": cmd.job_id, "error": error})
                else:
                    _expect(Acked, outcome)
                    answers.append({"id": cmd.job_id, "state": "succeeded"})
            return {"results": answers}

        return Op(run)

    def nack(self, job_id: int, args: Fields) -> Op:
        """``{token, error?, retry_in_ms?}``; answers ``{id, state, run_at_ms}``."""
        token = args.req_int("token")
        error = args.raw("error")
        if error is not None and type(error) is not str:
            raise invalid("error", "expected a string")
        retry_in_ms = args.opt_int("retry_in_ms", 0, MAX_DELAY_MS)
        args.done()

        async def run(rid: str | None) -> Answer:
            await self._require_job(job_id)
            cmd = Nack(
                now_ms=self.node.now_ms(),
                request_id=rid,
                job_id=job_id,
                token=token,
                error=None if error is None else error[:MAX_ERROR_CHARS],
                retry_in_ms=retry_in_ms,
            )
            result = _expect(Nacked, await self.submit(cmd))
            return {"id": job_id, "state": result.state, "run_at_ms": result.run_at_ms}

        return Op(run)

    def release(self, job_id: int, args: Fields) -> Op:
        """``{token}``: give a leased job back unstarted (queued again in its place, the
        claim's attempt undone; log version 4); answers ``{id, state: queued}``."""
        token = args.req_int("token")
        args.done()

        async def run(rid: str | None) -> Answer:
            await self._require_job(job_id)
            cmd = Release(now_ms=self.node.now_ms(), request_id=rid, job_id=job_id, token=token)
            _expect(Released, await self.submit(cmd))
            return {"id": job_id, "state": "queued"}

        return Op(run)

    def cancel(self, job_id: int, args: Fields) -> Op:
        """No fields; answers ``{id, state: cancelled}``."""
        args.done()

        async def run(rid: str | None) -> Answer:
            await self._require_job(job_id)
            cmd = Cancel(now_ms=self.node.now_ms(), request_id=rid, job_id=job_id)
            _expect(Cancelled, await self.submit(cmd))
            return {"id": job_id, "state": "cancelled"}

        return Op(run)

    # -- queue admin ------------------------------------------------------------------------

    def pause(self, queue: str, args: Fields) -> Op:
        """No fields; answers ``{queue, paused: true}``."""
        return self._pause_resume(queue, args, pausing=True)

    def resume(self, queue: str, args: Fields) -> Op:
        """No fields; answers ``{queue, paused: false}``."""
        return self._pause_resume(queue, args, pausing=False)

    def _pause_resume(self, queue: str, args: Fields, *, pausing: bool) -> Op:
        queue = check_queue(queue, "queue")
        args.done()

        async def run(rid: str | None) -> Answer:
            now = self.node.now_ms()
            cmd: Pause | Resume = (
                Pause(now_ms=now, request_id=rid, queue=queue)
                if pausing
                else Resume(now_ms=now, request_id=rid, queue=queue)
            )
            result = await self.submit(cmd)
            if pausing:
                _expect(Paused, result)
            else:
                _expect(Resumed, result)
            return {"queue": queue, "paused": pausing}

        return Op(run)

    def purge(self, queue: str, args: Fields) -> Op:
        """No fields; answers ``{queue, purged}``."""
        queue = check_queue(queue, "queue")
        args.done()

        async def run(rid: str | None) -> Answer:
            cmd = Purge(now_ms=self.node.now_ms(), request_id=rid, queue=queue)
            result = _expect(Purged, await self.submit(cmd))
            return {"queue": queue, "purged": result.count}

        return Op(run)

    def requeue_dead(self, queue: str, args: Fields) -> Op:
        """``{ids?}`` (absent: all); answers ``{queue, requeued}``. A given id that names no
        job of ``queue`` (on the replica that submits) is ``not_found`` (404) naming it, and
        nothing is requeued: a typo must not look like "0 requeued". A job of the queue that is
        not (or no longer) dead is skipped and not counted, as the machine does."""
        queue = check_queue(queue, "queue")
        ids = args.opt_list("ids", MAX_BATCH_JOBS, 1)
        args.done()
        job_ids = (
            None
            if ids is None
            else tuple(check_int(v, f"ids[{i}]", 1, INT64_MAX) for i, v in enumerate(ids))
        )

        async def run(rid: str | None) -> Answer:
            if job_ids is not None:
                self._require_jobs_of(queue, job_ids)
            cmd = RequeueDead(
                now_ms=self.node.now_ms(), request_id=rid, queue=queue, job_ids=job_ids
            )
            result = _expect(Requeued, await self.submit(cmd))
            return {"queue": queue, "requeued": result.count}

        return Op(run)

    def configure(self, queue: str, args: Fields) -> Op:
        """``{dedup_window_ms?, retention_ms?}`` (absent: unchanged; both absent reads the
        current windows); answers ``{queue, dedup_window_ms, retention_ms}`` as the machine
        applied them (``Configure``)."""
        queue = check_queue(queue, "queue")
        dedup_window_ms = args.opt_int("dedup_window_ms", 0, MAX_DEDUP_WINDOW_MS)
        retention_ms = args.opt_int("retention_ms", 0, MAX_RETENTION_MS)
        args.done()

        async def run(rid: str | None) -> Answer:
            cmd = Configure(
                now_ms=self.node.now_ms(),
                request_id=rid,
                queue=queue,
                dedup_window_ms=dedup_window_ms,
                retention_ms=retention_ms,
            )
            result = _expect(Configured, await self.submit(cmd))
            return {
                "queue": result.queue,
                "dedup_window_ms": result.dedup_window_ms,
                "retention_ms": result.retention_ms,
            }

        return Op(run)

    def set_limits(self, queue: str, args: Fields) -> Op:
        """``{concurrency?, rate?: {limit, period_ms}, group_concurrency?, group_rate?}``: the
        queue's limits, replaced as a whole (absent or ``null``: no such limit); answers them
        as applied (``SetLimits``)."""
        queue = check_queue(queue, "queue")
        concurrency = args.opt_int("concurrency", 1, MAX_SLOTS)
        group_concurrency = args.opt_int("group_concurrency", 1, MAX_SLOTS)
        rate = _rate_field(args, "rate")
        group_rate = _rate_field(args, "group_rate")
        args.done()

        async def run(rid: str | None) -> Answer:
            cmd = SetLimits(
                now_ms=self.node.now_ms(),
                request_id=rid,
                queue=queue,
                concurrency=concurrency,
                rate_limit=rate[0],
                rate_period_ms=rate[1],
                group_concurrency=group_concurrency,
                group_rate_limit=group_rate[0],
                group_rate_period_ms=group_rate[1],
            )
            return render_limits_set(_expect(LimitsSet, await self.submit(cmd)))

        return Op(run)

    def queue_limits(self, queue: str) -> Answer:
        """The queue's limits and their use on this replica (``not_found`` if unknown)."""
        queue = check_queue(queue, "queue")
        with self.node.read() as m:
            known = queue in m.queues
            view = m.queue_limits(queue)
        if not known:
            raise Rejected("not_found", f"no queue {queue}", 404)
        return render_limits(queue, view)

    def _require_jobs_of(self, queue: str, job_ids: tuple[int, ...]) -> None:
        """``not_found`` naming the first id that is no job of ``queue`` on this replica. Job
        ids are never reused and a dead letter stays until requeued or purged, so a retry with
        the same request id passes this check as the first attempt did."""
        with self.node.read() as m:
            unknown = next((i for i in job_ids if m.job_queue(i) != queue), None)
        if unknown is not None:
            raise Rejected("not_found", f"no job {unknown} in queue {queue!r}", 404)

    # -- reads (this node's replica) --------------------------------------------------------

    def get_job(self, job_id: int) -> Answer:
        """The job as this replica knows it (``not_found`` if unknown); the caller must be
        allowed its queue. A linearizable read is this read after ``node.barrier``."""
        with self.node.read() as m:
            info = m.job_info(job_id)
            flow = render_flow(m, job_id)
        if info is None:
            raise Rejected("not_found", f"no job {job_id}", 404)
        require_queues((info.queue,))  # the queue of the job answered with
        return render_job(info) | flow

    def queues(self) -> list[Answer]:
        """Every queue's stats, by name (those the caller may see)."""
        visible = allowed_queue()
        with self.node.read() as m:
            stats = [m.queue_stats(name) for name in sorted(m.queue_names()) if visible(name)]
        return [render_queue(s) for s in stats if s is not None]

    def queue(self, queue: str) -> Answer:
        """One queue's stats (``not_found`` if unknown)."""
        queue = check_queue(queue, "queue")
        with self.node.read() as m:
            stats = m.queue_stats(queue)
        if stats is None:
            raise Rejected("not_found", f"no queue {queue}", 404)
        return render_queue(stats)

    def dead(self, queue: str, limit: int, after: int) -> Answer:
        """The dead letters of ``queue`` after job id ``after``, oldest first:
        ``{queue, jobs, next_after}`` (``not_found`` if the queue is unknown)."""
        queue = check_queue(queue, "queue")
        with self.node.read() as m:
            known = m.queue_stats(queue) is not None
            infos = m.dead_letters(queue, limit, after)
        if not known:
            raise Rejected("not_found", f"no queue {queue}", 404)
        jobs = [render_job(j) for j in infos]
        next_after = infos[-1].id if len(infos) == limit else None
        return {"queue": queue, "jobs": jobs, "next_after": next_after}

    def transfer_leadership(self, args: Fields) -> Op:
        """``{to?}`` (a node id; absent: the most caught-up follower); on the leader, answers
        ``{leader, leader_api, previous}`` once leadership moved (``TransferRefused``: why
        not)."""
        to = args.opt_str("to", 256)
        args.done()
        if to is not None and self.node.api_address(to) is None:
            raise invalid("to", f"no node {to!r} in the cluster")

        async def run(_rid: str | None) -> Answer:
            previous = self.node.node_id
            leader = await self.node.transfer_leadership(to)
            return {
                "leader": leader,
                "leader_api": self.node.api_address(leader),
                "previous": previous,
            }

        return Op(run)

    def enable_version(self, version: int) -> Op:
        """Raise the cluster's enabled log version (``EnableVersion``); the caller has checked
        that every node runs a raftq that applies ``version``. Answers ``{enabled_version}``."""

        async def run(rid: str | None) -> Answer:
            cmd = EnableVersion(now_ms=self.node.now_ms(), request_id=rid, version=version)
            result = _expect(VersionEnabled, await self.submit(cmd))
            return {"enabled_version": result.version}

        return Op(run)

    def cluster(self) -> Answer:
        """This node's view of the cluster."""
        st = self.node.status()
        leader_api = None if st.leader is None else self.node.api_address(st.leader)
        answer = render_cluster(st, leader_api)
        with self.node.read() as m:
            answer["self"]["enabled_version"] = m.enabled_version
        return answer

    # -- membership (raftq.raft.members) ----------------------------------------------------

    def add_member(self, args: Fields) -> Op:
        """Fields ``id``, ``api``, ``raft`` (``host:port``); adds the voter at ``raft`` once the
        quorum allows it and answers ``{members: [...]}`` after the change is committed."""
        node_id = args.req_str("id", 128)
        api = check_address(args.req_str("api", 255), args.name("api"))
        raft = check_address(args.req_str("raft", 255), args.name("raft"))
        args.done()
        for m in self.node.status().members:
            if m.id == node_id and m.raft != raft:
                raise invalid(args.name("id"), f"{node_id} is the member at {m.raft}")

        async def run(_rid: str | None) -> Answer:
            await self.node.change_member("add", raft, node_id=node_id, api=api)
            return {**self._members(), "added": {"id": node_id, "api": api, "raft": raft}}

        return Op(run)

    def remove_member(self, member: str) -> Op:
        """``member``: a member's id or raft address; removes that voter (the leader hands
        leadership over first when it is the one removed) and answers ``{members: [...]}``."""
        raft = self.member_raft(member)

        async def run(_rid: str | None) -> Answer:
            await self.node.change_member("remove", raft)
            return self._members()

        return Op(run)

    def member_raft(self, member: str) -> str:
        """The raft address of the member ``member`` (its id or raft address); ``Rejected``
        404 when the cluster has no such member."""
        for m in self.node.status().members:
            if member in (m.id, m.raft):
                return m.raft
        raise Rejected("not_member", f"{member} is not a member of this cluster", 404)

    def _members(self) -> Answer:
        view = render_cluster(self.node.status(), None)
        return {"members": view["members"], "cluster_id": view["cluster_id"]}

    def members(self) -> Answer:
        """``{members: [...], cluster_id}``: the membership as this node knows it."""
        return self._members()


def _expect(kind: type[_R], result: Result) -> _R:
    """``result`` if it is of ``kind``; anything else is a bug (raised as such: a 500)."""
    if not isinstance(result, kind):
        raise TypeError(f"unexpected result {type(result).__name__} from the state machine")
    return result
