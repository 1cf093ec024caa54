"""Fast decoders of the hot commands (enqueue, claim, heartbeat, ack, nack, tick).

An enqueue has two: ``fast_enqueue`` for entries below log version 3 declines a job with a
group (the checked path then refuses it in such an entry), ``fast_enqueue_groups`` for
entries of version 3 and above takes it.

Each checks every type in one expression and answers ``None`` when anything is off;
``codec.decode_entry`` then decodes that command again with the checked path, which raises
the precise ``CodecError``. So a fast decoder accepts exactly what the checked path accepts and
builds an equal command: only the speed differs (``tests/core/test_codec.py`` checks the two
paths agree). Kept apart from ``codec.py`` because it exists only for speed: applying entries
is the state machine's hot loop, and the checked path with frozen-dataclass constructors cost
about a third of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from raftq.core.commands import Ack, Claim, Command, Enqueue, Heartbeat, Nack, NewJob, Tick

__all__ = [
    "fast_ack",
    "fast_claim",
    "fast_enqueue",
    "fast_enqueue_groups",
    "fast_heartbeat",
    "fast_nack",
    "fast_tick",
]

# Commands are frozen dataclasses; their generated ``__init__`` sets each field through
# ``object.__setattr__``, which costs more than decoding the field. The fast decoders fill the
# slots through their descriptors instead (4x cheaper). ``_slot_setters`` checks at import
# that the field list is the one this module fills, so a new field cannot be left unset.

_T = TypeVar("_T")
_new = object.__new__


def _slot_setters(cls: type[_T], names: str) -> tuple[Callable[[_T, Any], None], ...]:
    expected = tuple(names.split())
    actual = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    if actual != expected:
        raise RuntimeError(f"codec fast path of {cls.__name__} is stale: fields {actual}")
    return tuple(cls.__dict__[name].__set__ for name in expected)


(
    _nj_payload,
    _nj_priority,
    _nj_delay_ms,
    _nj_run_at_ms,
    _nj_key,
    _nj_max_attempts,
    _nj_lease_ms,
    _nj_group,
) = _slot_setters(NewJob, "payload priority delay_ms run_at_ms key max_attempts lease_ms group")
_enq_now_ms, _enq_request_id, _enq_queue, _enq_jobs = _slot_setters(
    Enqueue, "now_ms request_id queue jobs"
)
_cl_now_ms, _cl_request_id, _cl_queues, _cl_worker, _cl_max, _cl_lease_ms = _slot_setters(
    Claim, "now_ms request_id queues worker max lease_ms"
)
(
    _hb_now_ms,
    _hb_request_id,
    _hb_job_id,
    _hb_token,
    _hb_lease_ms,
    _hb_progress,
    _hb_checkpoint,
) = _slot_setters(Heartbeat, "now_ms request_id job_id token lease_ms progress checkpoint")
_ack_now_ms, _ack_request_id, _ack_job_id, _ack_token, _ack_result = _slot_setters(
    Ack, "now_ms request_id job_id token result"
)
(
    _nack_now_ms,
    _nack_request_id,
    _nack_job_id,
    _nack_token,
    _nack_error,
    _nack_retry_in_ms,
) = _slot_setters(Nack, "now_ms request_id job_id token error retry_in_ms")
_tick_now_ms, _tick_request_id = _slot_setters(Tick, "now_ms request_id")


def fast_enqueue(c: list[Any]) -> Command | None:
    """An enqueue in an entry below log version 3: jobs of 7 fields (no group)."""
    return _enqueue(c, False)


def fast_enqueue_groups(c: list[Any]) -> Command | None:
    """An enqueue in an entry of log version 3 or above: a job may have an 8th field, its
    group."""
    return _enqueue(c, True)


def _enqueue(c: list[Any], groups: bool) -> Command | None:
    if len(c) != 5:
        return None
    _, rid, now, queue, raw_jobs = c
    if (
        type(now) is not int
        or (rid is not None and type(rid) is not str)
        or type(queue) is not str
        or type(raw_jobs) is not list
    ):
        return None
    jobs: list[NewJob] = []
    append = jobs.append
    for j in raw_jobs:
        if type(j) is not list:
            return None
        if len(j) == 7:
            group = None
            payload, priority, delay_ms, run_at_ms, key, max_attempts, lease_ms = j
        elif len(j) == 8 and groups and type(j[7]) is str:
            payload, priority, delay_ms, run_at_ms, key, max_attempts, lease_ms, group = j
        else:
            return None
        if (
            type(payload) is not bytes
            or type(priority) is not int
            or (delay_ms is not None and type(delay_ms) is not int)
            or (run_at_ms is not None and type(run_at_ms) is not int)
            or (key is not None and type(key) is not str)
            or (max_attempts is not None and type(max_attempts) is not int)
            or (lease_ms is not None and type(lease_ms) is not int)
        ):
            return None
        nj = _new(NewJob)
        _nj_payload(nj, payload)
        _nj_priority(nj, priority)
        _nj_delay_ms(nj, delay_ms)
        _nj_run_at_ms(nj, run_at_ms)
        _nj_key(nj, key)
        _nj_max_attempts(nj, max_attempts)
        _nj_lease_ms(nj, lease_ms)
        _nj_group(nj, group)
        append(nj)
    cmd = _new(Enqueue)
    _enq_now_ms(cmd, now)
    _enq_request_id(cmd, rid)
    _enq_queue(cmd, queue)
    _enq_jobs(cmd, tuple(jobs))
    return cmd


def fast_claim(c: list[Any]) -> Command | None:
    if len(c) != 7:
        return None
    _, rid, now, queues, worker, mx, lease_ms = c
    if (
        type(now) is not int
        or (rid is not None and type(rid) is not str)
        or type(queues) is not list
        or type(worker) is not str
        or type(mx) is not int
        or (lease_ms is not None and type(lease_ms) is not int)
    ):
        return None
    for q in queues:
        if type(q) is not str:
            return None
    cmd = _new(Claim)
    _cl_now_ms(cmd, now)
    _cl_request_id(cmd, rid)
    _cl_queues(cmd, tuple(queues))
    _cl_worker(cmd, worker)
    _cl_max(cmd, mx)
    _cl_lease_ms(cmd, lease_ms)
    return cmd


def fast_heartbeat(c: list[Any]) -> Command | None:
    if len(c) != 6:
        return None
    _, rid, now, job_id, token, lease_ms = c
    if (
        type(now) is not int
        or (rid is not None and type(rid) is not str)
        or type(job_id) is not int
        or type(token) is not int
        or (lease_ms is not None and type(lease_ms) is not int)
    ):
        return None
    cmd = _new(Heartbeat)
    _hb_now_ms(cmd, now)
    _hb_request_id(cmd, rid)
    _hb_job_id(cmd, job_id)
    _hb_token(cmd, token)
    _hb_lease_ms(cmd, lease_ms)
    _hb_progress(cmd, None)  # tag 3 carries neither (tag 15 takes the checked path)
    _hb_checkpoint(cmd, None)
    return cmd


def fast_ack(c: list[Any]) -> Command | None:
    if len(c) != 6:
        return None
    _, rid, now, job_id, token, result = c
    if (
        type(now) is not int
        or (rid is not None and type(rid) is not str)
        or type(job_id) is not int
        or type(token) is not int
        or (result is not None and type(result) is not bytes)
    ):
        return None
    cmd = _new(Ack)
    _ack_now_ms(cmd, now)
    _ack_request_id(cmd, rid)
    _ack_job_id(cmd, job_id)
    _ack_token(cmd, token)
    _ack_result(cmd, result)
    return cmd


def fast_nack(c: list[Any]) -> Command | None:
    if len(c) != 7:
        return None
    _, rid, now, job_id, token, error, retry_in_ms = c
    if (
        type(now) is not int
        or (rid is not None and type(rid) is not str)
        or type(job_id) is not int
        or type(token) is not int
        or (error is not None and type(error) is not str)
        or (retry_in_ms is not None and type(retry_in_ms) is not int)
    ):
        return None
    cmd = _new(Nack)
    _nack_now_ms(cmd, now)
    _nack_request_id(cmd, rid)
    _nack_job_id(cmd, job_id)
    _nack_token(cmd, token)
    _nack_error(cmd, error)
    _nack_retry_in_ms(cmd, retry_in_ms)
    return cmd


def fast_tick(c: list[Any]) -> Command | None:
    if len(c) != 3:
        return None
    _, rid, now = c
    if type(now) is not int or (rid is not None and type(rid) is not str):
        return None
    cmd = _new(Tick)
    _tick_now_ms(cmd, now)
    _tick_request_id(cmd, rid)
    return cmd
