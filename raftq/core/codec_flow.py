"""Wire format of the dependency and batch commands (log version 3): ``EnqueueFlow`` and
``CreateBatch`` (tags in ``codec.py``). A flow job is ``[queue, new job fields, depends_on,
depends_on_new, run_on_failure]``; a callback ``[queue, payload]`` or nil."""

from __future__ import annotations

from typing import Any

from raftq.core.codec import (
    _bytes,
    _decode_new_job,
    _fields,
    _int,
    _list,
    _new_job_fields,
    _str,
)
from raftq.core.commands import BatchCallback, Command, CreateBatch, EnqueueFlow, FlowJob
from raftq.core.errors import CodecError

__all__ = ["decode_flow_command", "flow_fields"]


def flow_fields(cmd: EnqueueFlow | CreateBatch) -> list[Any]:
    """The command's fields after ``[tag, request_id, now_ms]``."""
    jobs = [_flow_job_fields(j) for j in cmd.jobs]
    if isinstance(cmd, EnqueueFlow):
        return [jobs]
    return [jobs, *(_callback_fields(c) for c in (cmd.on_complete, cmd.on_success, cmd.on_death))]


def _flow_job_fields(j: FlowJob) -> list[Any]:
    deps, new = list(j.depends_on), list(j.depends_on_new)
    return [j.queue, _new_job_fields(j.job), deps, new, j.run_on_failure]


def _callback_fields(c: BatchCallback | None) -> list[Any] | None:
    return None if c is None else [c.queue, c.payload]


def _decode_flow_job(v: Any) -> FlowJob:
    queue, job, deps, new, run = _list(v, "flow job", 5)
    if type(run) is not bool:
        raise CodecError("run_on_failure: expected a boolean")
    return FlowJob(
        queue=_str(queue, "queue"),
        job=_decode_new_job(job),
        depends_on=tuple(_int(d, "depends_on[]") for d in _list(deps, "depends_on")),
        depends_on_new=tuple(_int(d, "depends_on_new[]") for d in _list(new, "depends_on_new")),
        run_on_failure=run,
    )


def _decode_callback(v: Any) -> BatchCallback | None:
    if v is None:
        return None
    queue, payload = _list(v, "callback", 2)
    return BatchCallback(queue=_str(queue, "queue"), payload=_bytes(payload, "payload"))


def decode_flow_command(batch: bool, rid: str | None, now: int, f: list[Any]) -> Command:
    """An ``EnqueueFlow`` (``batch`` false) or ``CreateBatch`` from its fields."""
    if not batch:
        (jobs,) = _fields(f, 1, "enqueue_flow")
        return EnqueueFlow(
            now_ms=now, request_id=rid, jobs=tuple(_decode_flow_job(j) for j in _list(jobs, "jobs"))
        )
    jobs, complete, success, death = _fields(f, 4, "create_batch")
    return CreateBatch(
        now_ms=now,
        request_id=rid,
        jobs=tuple(_decode_flow_job(j) for j in _list(jobs, "jobs")),
        on_complete=_decode_callback(complete),
        on_success=_decode_callback(success),
        on_death=_decode_callback(death),
    )
