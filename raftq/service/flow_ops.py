"""Operations on dependencies and batches, each written once (``Service`` inherits them).

``depends_on`` on an enqueued job is a list of job ids, or of ``"@N"`` naming the N-th job of
the same ``{"jobs": [...]}`` request; ``"@N"`` is resolved here into the command's
``depends_on_new`` (the machine refuses cycles and unknown ids). ``on_dependency_failure`` is
``"cancel"`` (default: a dependency that dies or is cancelled cancels the job with error
``dependency_failed``) or ``"run"`` (the job is released anyway and its claim shows each
parent's outcome).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raftq.core import (
    BatchCallback,
    BatchCreated,
    CreateBatch,
    Enqueued,
    EnqueueFlow,
    FlowJob,
    NewJob,
)
from raftq.core.limits import MAX_DEPENDENCIES
from raftq.errors import Rejected
from raftq.raft.api import NodeAPI
from raftq.service.access import require_queues
from raftq.service.fields import INT64_MAX, Fields, check_queue, invalid
from raftq.service.values import Format, pack_value, unpack_value

if TYPE_CHECKING:
    from raftq.service.operations import Op

__all__ = ["FLOW_FIELDS", "FlowOps", "flow_job", "has_flow_fields", "render_flow"]

FLOW_FIELDS = ("depends_on", "on_dependency_failure")


def has_flow_fields(items: list[Any]) -> bool:
    """Whether any job item of an enqueue uses dependencies (then it is an ``EnqueueFlow``)."""
    return any(type(it) is dict and any(k in it for k in FLOW_FIELDS) for it in items)


def flow_job(f: Fields, queue: str, index: int, n: int, job: Any) -> FlowJob:
    """The dependency fields of one job item (``job``: a callable building its ``NewJob``
    from the remaining fields)."""
    items = f.opt_list("depends_on", MAX_DEPENDENCIES) or []
    ids: list[int] = []
    new: list[int] = []
    for i, item in enumerate(items):
        where = f.name(f"depends_on[{i}]")
        if type(item) is int and 1 <= item <= INT64_MAX:
            ids.append(item)
        elif type(item) is str and item.startswith("@") and item[1:].isdigit():
            k = int(item[1:])
            if not 0 <= k < n or k == index:
                raise invalid(where, f"{item} does not name another job of this request")
            new.append(k)
        else:
            raise invalid(where, 'expected a job id or "@N" (the N-th job of this request)')
    policy = f.opt_str("on_dependency_failure", 16) or "cancel"
    if policy not in ("cancel", "run"):
        raise invalid(f.name("on_dependency_failure"), 'must be "cancel" or "run"')
    nj: NewJob = job(f)
    return FlowJob(
        queue=queue,
        job=nj,
        depends_on=tuple(ids),
        depends_on_new=tuple(new),
        run_on_failure=policy == "run",
    )


def render_flow(m: Any, job_id: int) -> dict[str, Any]:
    """The ``dependencies`` and ``batch`` fields of ``GET /v1/jobs/{id}`` (empty: none)."""
    flow = m.job_flow(job_id)
    if flow is None:
        return {}
    out: dict[str, Any] = {"batch": flow.batch}
    if flow.depends_on or flow.outcomes:
        done = {pid: (state, result) for pid, state, result in flow.outcomes}
        out["on_dependency_failure"] = flow.on_dependency_failure
        out["dependencies"] = [
            {
                "id": d,
                "state": done[d][0] if d in done else "pending",
                "result": unpack_value(done[d][1]) if d in done else None,
            }
            for d in (flow.depends_on or tuple(done))
        ]
    return out


class FlowOps:
    """The batch operations of ``Service`` (``node`` and ``limits`` are the service's)."""

    node: NodeAPI
    limits: Any

    def create_batch(self, args: Fields, fmt: Format) -> Op:
        """``{jobs: [{queue, payload, ..., depends_on?}], on_complete?, on_success?,
        on_death?}`` (each callback ``{queue, payload}``); answers ``{batch, ids}``."""
        from raftq.service.operations import Op, _expect, new_job  # noqa: PLC0415 - cycle

        items = args.req_list("jobs", self.limits.max_batch_jobs, 1)
        callbacks = [
            _callback(args, name, fmt, self.limits.max_payload_bytes)
            for name in ("on_complete", "on_success", "on_death")
        ]
        default_queue = args.opt_str("queue", 128)
        args.done()
        max_bytes = self.limits.max_payload_bytes
        jobs: list[FlowJob] = []
        for i, item in enumerate(items):
            f = Fields(item, f"jobs[{i}]")
            name = f.raw("queue") if f.has("queue") else default_queue
            if name is None:
                raise invalid(f.name("queue"), "required (or a queue for all jobs)")
            queue = check_queue(name, f.name("queue"))
            jobs.append(flow_job(f, queue, i, len(items), lambda g: new_job(g, fmt, max_bytes)))
        queues = [j.queue for j in jobs] + [c.queue for c in callbacks if c is not None]

        async def run(rid: str | None) -> dict[str, Any]:
            require_queues(queues)
            cmd = CreateBatch(
                now_ms=self.node.now_ms(),
                request_id=rid,
                jobs=tuple(jobs),
                on_complete=callbacks[0],
                on_success=callbacks[1],
                on_death=callbacks[2],
            )
            result = _expect(BatchCreated, await self.submit(cmd))  # type: ignore[attr-defined]
            return {"batch": result.batch, "ids": list(result.ids)}

        return Op(run)

    def enqueue_flow(self, queue: str, items: list[Fields], fmt: Format, many: bool) -> Op:
        """An enqueue where some job has ``depends_on`` / ``on_dependency_failure``; answers
        as a plain enqueue does (``{ids, existing}``, or ``{id, existing}`` for one job)."""
        from raftq.service.operations import Op, _expect, new_job  # noqa: PLC0415 - cycle

        max_bytes = self.limits.max_payload_bytes
        n = len(items)
        jobs = tuple(
            flow_job(f, queue, i, n, lambda g: new_job(g, fmt, max_bytes))
            for i, f in enumerate(items)
        )

        async def run(rid: str | None) -> dict[str, Any]:
            cmd = EnqueueFlow(now_ms=self.node.now_ms(), request_id=rid, jobs=jobs)
            result = _expect(Enqueued, await self.submit(cmd))  # type: ignore[attr-defined]
            if not many:
                return {"id": result.ids[0], "existing": result.existing[0]}
            return {"ids": list(result.ids), "existing": list(result.existing)}

        return Op(run)

    def get_batch(self, batch_id: int) -> dict[str, Any]:
        """``GET /v1/batches/{id}``: members, counts by state, callbacks fired."""
        with self.node.read() as m:
            info = m.batch_info(batch_id)
            queues = [] if info is None else [m.job_queue(j) for j in info.jobs]
        if info is None:
            raise Rejected("not_found", f"no batch {batch_id}", 404)
        require_queues(q for q in queues if q is not None)
        counts = dict(info.counts)
        finished = counts["succeeded"] + counts["dead"] + counts["cancelled"]
        return {
            "batch": info.id,
            "ids": list(info.jobs),
            "counts": counts,
            "total": len(info.jobs),
            "done": finished == len(info.jobs),
            "fired": list(info.fired),
        }


def _callback(args: Fields, name: str, fmt: Format, max_bytes: int) -> BatchCallback | None:
    if not args.has(name):
        return None
    f = Fields(args.raw(name), args.name(name))
    queue = check_queue(f.req_str("queue", 128), f.name("queue"))
    payload = pack_value(f.required("payload"), fmt, f.name("payload"), max_bytes)
    f.done()
    return BatchCallback(queue=queue, payload=payload)
