"""Versioned msgpack wire format of log entries and results.

An entry is ``[version, [command, ...]]``; a command is an array
``[tag, request_id, now_ms, *fields]`` with the fields in the order of its dataclass. Tags and
field orders are part of the replicated log format: change them only with a new version
(the golden-bytes test guards this). Decoding checks every type (bool is not an int here);
ranges are the machine's business.

Versions: ``LOG_VERSION`` is the highest entry version this code applies. An entry declares the
version its commands need (``encode_entry`` writes ``FORMAT_VERSION`` while every command is of
version 1, so the bytes old nodes read stay the same). A node must never apply an entry of a
version above its own, not even as a refusal: nodes of the new version apply it, so the
replicas would differ. ``entry_version`` lets the raft layer see that before applying and stop
the node instead (``raftq.raft.pysyncobj.replica``); the machine alone answers such an entry
with ``Refusal(unsupported_version)``, as any bytes it cannot decode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from raftq.core import codec_fast
from raftq.core.codec_checks import (
    check_bytes,
    check_fields,
    check_int,
    check_list,
    check_opt_bytes,
    check_opt_int,
    check_opt_str,
    check_str,
)
from raftq.core.codec_limits import (
    SET_LIMITS,
    decode_set_limits,
    encode_limits_set,
    encode_set_limits,
)
from raftq.core.codec_schedules import (
    SCHEDULE_TAGS,
    decode_schedule_command,
    encode_schedule_command,
)
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
    NewJob,
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
from raftq.core.results import (
    Acked,
    BatchCreated,
    Cancelled,
    Claimed,
    Configured,
    Enqueued,
    Extended,
    Fired,
    Lease,
    LimitsSet,
    Nacked,
    Paused,
    Purged,
    Reason,
    Refusal,
    Released,
    Requeued,
    Result,
    Resumed,
    ScheduleDeleted,
    SchedulePaused,
    SchedulePut,
    Ticked,
    VersionEnabled,
)

__all__ = [
    "FORMAT_VERSION",
    "LOG_VERSION",
    "command_version",
    "decode_entry",
    "decode_results",
    "encode_command",
    "encode_entry",
    "encode_result",
    "encode_results",
    "entry_version",
    "result_from_wire",
    "unpack",
]

FORMAT_VERSION = 1  # the version entries of version-1 commands declare
LOG_VERSION = 4  # the highest entry version this code decodes and applies

# Command tags (stable).
_ENQUEUE, _CLAIM, _HEARTBEAT, _ACK, _NACK, _CANCEL = 1, 2, 3, 4, 5, 6
_REQUEUE, _PURGE, _PAUSE, _RESUME, _CONFIGURE, _TICK = 7, 8, 9, 10, 11, 12
_ENABLE_VERSION = 13  # log version 2
# Log version 3: a heartbeat carrying progress or a checkpoint (a plain one keeps tag 3, and
# its bytes).
_HEARTBEAT_LONG = 15
_SET_LIMITS = SET_LIMITS  # log version 3 (codec_limits.py)
_GROUPS_VERSION = 3  # an Enqueue with a job's ``group`` (its job arrays have 8 fields)
# Log version 3: schedules, tags 20..24 (codec_schedules.py).
# Log version 3: dependencies and batches (codec_flow.py).
_ENQUEUE_FLOW, _CREATE_BATCH = 30, 31
_RELEASE = 16  # log version 4

# The log version of each command type above 1 (the first log version). An entry declares the
# highest of its commands' (1 when none is listed); a command is valid only in an entry of its
# version or above, and the machine refuses it while the enabled version is below it.
_COMMAND_VERSION: dict[type[Command], int] = {
    EnableVersion: 2,
    SetLimits: 3,
    PutSchedule: 3,
    DeleteSchedule: 3,
    Fire: 3,
    TriggerSchedule: 3,
    SetSchedulePaused: 3,
    EnqueueFlow: 3,
    CreateBatch: 3,
    Release: 4,
}


def command_version(cmd: Command) -> int:
    """The log version a command needs (see ``_COMMAND_VERSION``; an Enqueue of a job with a
    ``group`` needs version 3: an older node would drop the field; so does a Heartbeat with
    progress or a checkpoint)."""
    if type(cmd) is Enqueue:
        for j in cmd.jobs:
            if j.group is not None:
                return _GROUPS_VERSION
    elif type(cmd) is Heartbeat:
        return FORMAT_VERSION if cmd.progress is None and cmd.checkpoint is None else 3
    return _COMMAND_VERSION.get(type(cmd), FORMAT_VERSION)


# -- type checks (codec_checks.py) ------------------------------------------------------

_int, _opt_int, _str, _opt_str = check_int, check_opt_int, check_str, check_opt_str
_bytes, _opt_bytes, _list, _fields = check_bytes, check_opt_bytes, check_list, check_fields


# -- commands -----------------------------------------------------------------------------


def _new_job_fields(j: NewJob) -> list[Any]:
    f = [j.payload, j.priority, j.delay_ms, j.run_at_ms, j.key, j.max_attempts, j.lease_ms]
    if j.group is not None:  # version 3; without a group, the bytes older nodes read
        f.append(j.group)
    return f


# One case per command type, its tag beside it: the table reads best flat.
def encode_command(cmd: Command) -> list[Any]:  # noqa: C901
    head = [cmd.request_id, cmd.now_ms]
    match cmd:
        case Enqueue():
            return [_ENQUEUE, *head, cmd.queue, [_new_job_fields(j) for j in cmd.jobs]]
        case Claim():
            return [_CLAIM, *head, list(cmd.queues), cmd.worker, cmd.max, cmd.lease_ms]
        case Heartbeat():
            if cmd.progress is None and cmd.checkpoint is None:
                return [_HEARTBEAT, *head, cmd.job_id, cmd.token, cmd.lease_ms]
            fields = [cmd.job_id, cmd.token, cmd.lease_ms, cmd.progress, cmd.checkpoint]
            return [_HEARTBEAT_LONG, *head, *fields]
        case Ack():
            return [_ACK, *head, cmd.job_id, cmd.token, cmd.result]
        case Nack():
            return [_NACK, *head, cmd.job_id, cmd.token, cmd.error, cmd.retry_in_ms]
        case Release():
            return [_RELEASE, *head, cmd.job_id, cmd.token]
        case Cancel():
            return [_CANCEL, *head, cmd.job_id]
        case RequeueDead():
            ids = None if cmd.job_ids is None else list(cmd.job_ids)
            return [_REQUEUE, *head, cmd.queue, ids]
        case Purge():
            return [_PURGE, *head, cmd.queue]
        case Pause():
            return [_PAUSE, *head, cmd.queue]
        case Resume():
            return [_RESUME, *head, cmd.queue]
        case Configure():
            return [_CONFIGURE, *head, cmd.queue, cmd.dedup_window_ms, cmd.retention_ms]
        case Tick():
            return [_TICK, *head]
        case EnableVersion():
            return [_ENABLE_VERSION, *head, cmd.version]
        case PutSchedule() | DeleteSchedule() | Fire() | TriggerSchedule() | SetSchedulePaused():
            return encode_schedule_command(cmd, head)
        case SetLimits():
            return encode_set_limits(cmd, head)
        case EnqueueFlow() | CreateBatch():
            from raftq.core import codec_flow  # noqa: PLC0415 - it builds on this module

            tag = _ENQUEUE_FLOW if isinstance(cmd, EnqueueFlow) else _CREATE_BATCH
            return [tag, *head, *codec_flow.flow_fields(cmd)]


_SHAPED = (Enqueue, Heartbeat)  # whose version depends on their fields (command_version)


def encode_entry(commands: Sequence[Command]) -> bytes:
    """One log entry holding ``commands`` (applied in order, atomically as one entry)."""
    version = FORMAT_VERSION  # entries of version-1 commands keep the bytes old nodes read
    get = _COMMAND_VERSION.get
    for c in commands:
        v = command_version(c) if type(c) in _SHAPED else get(type(c))
        if v is not None and v > version:
            version = v
    raw: bytes = msgpack.packb([version, [encode_command(c) for c in commands]])
    return raw


def _decode_new_job(v: Any) -> NewJob:
    a = _list(v, "job")
    if len(a) == 8:
        group = _str(a[7], "group")  # written only when set
        a = a[:7]
    else:
        group = None
        if len(a) != 7:
            raise CodecError("job: expected an array of 7 or 8")
    payload, priority, delay_ms, run_at_ms, key, max_attempts, lease_ms = a
    return NewJob(
        group=group,
        payload=_bytes(payload, "payload"),
        priority=_int(priority, "priority"),
        delay_ms=_opt_int(delay_ms, "delay_ms"),
        run_at_ms=_opt_int(run_at_ms, "run_at_ms"),
        key=_opt_str(key, "key"),
        max_attempts=_opt_int(max_attempts, "max_attempts"),
        lease_ms=_opt_int(lease_ms, "lease_ms"),
    )


def _decode_command(v: Any) -> Command:
    a = _list(v, "command")
    if len(a) < 3:
        raise CodecError("command: expected [tag, request_id, now_ms, ...]")
    tag = _int(a[0], "tag")
    rid = _opt_str(a[1], "request_id")
    now = _int(a[2], "now_ms")
    f = a[3:]
    if tag == _ENQUEUE:
        queue, jobs = _fields(f, 2, "enqueue")
        return Enqueue(
            now_ms=now,
            request_id=rid,
            queue=_str(queue, "queue"),
            jobs=tuple(_decode_new_job(j) for j in _list(jobs, "jobs")),
        )
    if tag == _CLAIM:
        queues, worker, mx, lease_ms = _fields(f, 4, "claim")
        return Claim(
            now_ms=now,
            request_id=rid,
            queues=tuple(_str(q, "queues[]") for q in _list(queues, "queues")),
            worker=_str(worker, "worker"),
            max=_int(mx, "max"),
            lease_ms=_opt_int(lease_ms, "lease_ms"),
        )
    if tag in (_HEARTBEAT, _ACK, _NACK, _HEARTBEAT_LONG, _RELEASE):
        return _decode_lease_command(tag, rid, now, f)
    if tag == _CANCEL:
        (job_id,) = _fields(f, 1, "cancel")
        return Cancel(now_ms=now, request_id=rid, job_id=_int(job_id, "job_id"))
    if tag == _REQUEUE:
        queue, ids = _fields(f, 2, "requeue")
        return RequeueDead(
            now_ms=now,
            request_id=rid,
            queue=_str(queue, "queue"),
            job_ids=None if ids is None else tuple(_int(i, "ids[]") for i in _list(ids, "ids")),
        )
    if tag in (_PURGE, _PAUSE, _RESUME):
        (queue,) = _fields(f, 1, "queue command")
        name = _str(queue, "queue")
        if tag == _PURGE:
            return Purge(now_ms=now, request_id=rid, queue=name)
        if tag == _PAUSE:
            return Pause(now_ms=now, request_id=rid, queue=name)
        return Resume(now_ms=now, request_id=rid, queue=name)
    if tag == _CONFIGURE:
        queue, window, retention = _fields(f, 3, "configure")
        return Configure(
            now_ms=now,
            request_id=rid,
            queue=_str(queue, "queue"),
            dedup_window_ms=_opt_int(window, "dedup_window_ms"),
            retention_ms=_opt_int(retention, "retention_ms"),
        )
    if tag == _TICK:
        _fields(f, 0, "tick")
        return Tick(now_ms=now, request_id=rid)
    return _decode_later_command(tag, rid, now, f)


def _decode_later_command(tag: int, rid: str | None, now: int, f: list[Any]) -> Command:
    """Commands of log version 2 and above."""
    if tag == _ENABLE_VERSION:
        (version,) = _fields(f, 1, "enable_version")
        return EnableVersion(now_ms=now, request_id=rid, version=_int(version, "version"))
    if tag in SCHEDULE_TAGS:
        return decode_schedule_command(tag, rid, now, f)
    if tag in (_ENQUEUE_FLOW, _CREATE_BATCH):
        from raftq.core import codec_flow  # noqa: PLC0415 - it builds on this module

        return codec_flow.decode_flow_command(tag == _CREATE_BATCH, rid, now, f)
    if tag != _SET_LIMITS:
        raise CodecError(f"unknown command tag {tag}")
    return decode_set_limits(rid, now, f)


def _decode_lease_command(tag: int, rid: str | None, now: int, f: list[Any]) -> Command:
    if tag in (_HEARTBEAT, _HEARTBEAT_LONG):  # tag 15: with progress and checkpoint
        long = tag == _HEARTBEAT_LONG
        job_id, token, lease_ms, *reports = _fields(f, 5 if long else 3, "heartbeat")
        progress, checkpoint = reports if long else (None, None)
        if long and progress is None and checkpoint is None:  # that is tag 3's command
            raise CodecError("heartbeat: tag 15 carries progress or a checkpoint")
        return Heartbeat(
            now_ms=now,
            request_id=rid,
            job_id=_int(job_id, "job_id"),
            token=_int(token, "token"),
            lease_ms=_opt_int(lease_ms, "lease_ms"),
            progress=_opt_bytes(progress, "progress"),
            checkpoint=_opt_bytes(checkpoint, "checkpoint"),
        )
    if tag == _ACK:
        job_id, token, result = _fields(f, 3, "ack")
        return Ack(
            now_ms=now,
            request_id=rid,
            job_id=_int(job_id, "job_id"),
            token=_int(token, "token"),
            result=_opt_bytes(result, "result"),
        )
    if tag == _RELEASE:
        job_id, token = _fields(f, 2, "release")
        return Release(
            now_ms=now, request_id=rid, job_id=_int(job_id, "job_id"), token=_int(token, "token")
        )
    job_id, token, error, retry_in_ms = _fields(f, 4, "nack")
    return Nack(
        now_ms=now,
        request_id=rid,
        job_id=_int(job_id, "job_id"),
        token=_int(token, "token"),
        error=_opt_str(error, "error"),
        retry_in_ms=_opt_int(retry_in_ms, "retry_in_ms"),
    )


# Hot commands decode through codec_fast first; anything it declines takes the checked path.
_FAST_DECODERS: dict[int, Callable[[list[Any]], Command | None]] = {
    _ENQUEUE: codec_fast.fast_enqueue,
    _CLAIM: codec_fast.fast_claim,
    _HEARTBEAT: codec_fast.fast_heartbeat,
    _ACK: codec_fast.fast_ack,
    _NACK: codec_fast.fast_nack,
    _TICK: codec_fast.fast_tick,
}
# In entries of log version 3 and above, an enqueue's jobs may carry a group.
_FAST_DECODERS_V3 = {**_FAST_DECODERS, _ENQUEUE: codec_fast.fast_enqueue_groups}


def unpack(raw: bytes) -> Any:
    """msgpack-decode untrusted bytes; every failure becomes ``CodecError``."""
    if type(raw) is not bytes:
        raise CodecError("expected bytes")
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises many unrelated types for bad input
        raise CodecError(f"not valid msgpack: {type(e).__name__}") from e


def entry_version(raw: bytes) -> int | None:
    """The version an entry declares (``None``: not an entry at all, a malformed one).
    Cheap for the usual case: a 2-array whose first item is a small positive int."""
    if len(raw) >= 2 and raw[0] == 0x92 and raw[1] < 0x80:  # fixarray(2), positive fixint
        return raw[1]
    try:
        v = unpack(raw)
    except CodecError:
        return None
    if type(v) is list and len(v) == 2 and type(v[0]) is int:
        return v[0]
    return None


def decode_entry(raw: bytes) -> list[Command]:
    """Decode a log entry; ``CodecError`` (with its ``reason``) when it is not one."""
    v = unpack(raw)
    if type(v) is not list or len(v) != 2 or type(v[0]) is not int:
        raise CodecError("entry: expected [version, [commands]]")
    version = v[0]
    if not FORMAT_VERSION <= version <= LOG_VERSION:
        raise CodecError(f"entry format {version} not supported", Reason.UNSUPPORTED_VERSION)
    out: list[Command] = []
    append = out.append
    fast = (_FAST_DECODERS if version < _GROUPS_VERSION else _FAST_DECODERS_V3).get
    for c in _list(v[1], "commands"):
        if type(c) is list and len(c) >= 3:
            decoder = fast(c[0]) if type(c[0]) is int else None
            cmd = None if decoder is None else decoder(c)
            if cmd is not None:
                append(cmd)
                continue
        cmd = _decode_command(c)  # the checked path: it builds the exact error
        needed = command_version(cmd)
        if needed > version:
            # What an older node reads as an unknown tag: no node applies it.
            raise CodecError(f"command tag {c[0]} needs an entry of version {needed}")
        append(cmd)
    return out


# -- results ------------------------------------------------------------------------------


# One case per result type, the wire tag beside it: the table reads best flat (and is hot).
def encode_result(r: Result) -> list[Any]:  # noqa: C901
    match r:
        case Refusal():
            return [0, r.reason.value, r.message]
        case Enqueued():
            return [1, list(r.ids), list(r.existing)]
        case Claimed():
            return [2, [list(_lease_fields(x)) for x in r.jobs]]
        case Extended():
            if r.cancel_requested:
                return [3, r.lease_expires_ms, True]
            return [3, r.lease_expires_ms]
        case Acked():
            return [4, r.job_id]
        case Nacked():
            return [5, r.job_id, r.state, r.run_at_ms]
        case Released():
            return [15, r.job_id]
        case Cancelled():
            return [6, r.job_id]
        case Requeued():
            return [7, r.count]
        case Purged():
            return [8, r.count]
        case Paused():
            return [9, r.queue]
        case Resumed():
            return [10, r.queue]
        case Configured():
            return [11, r.queue, r.dedup_window_ms, r.retention_ms]
        case Ticked():
            return [12, r.clock_ms]
        case VersionEnabled():
            return [13, r.version]
        case SchedulePut():
            return [20, r.name, r.created]
        case ScheduleDeleted():
            return [21, r.name]
        case Fired():
            return [22, r.name, r.fire_ms, r.job_id]
        case SchedulePaused():
            return [23, r.name, r.paused]
        case LimitsSet():
            return encode_limits_set(r)
        case BatchCreated():
            return [30, r.batch, list(r.ids)]


def _lease_fields(x: Lease) -> tuple[Any, ...]:
    fields = (x.id, x.queue, x.payload, x.priority, x.attempt, x.token, x.lease_expires_ms)
    parents = None if x.parents is None else [list(p) for p in x.parents]
    if x.checkpoint is not None:
        return (*fields, parents, x.checkpoint)
    if parents is None:  # the bytes of a lease without parents are those of version 2
        return fields
    return (*fields, parents)


def _lease_from_wire(x: list[Any]) -> Lease:
    wired = x[7] if len(x) > 7 else None
    parents = None if wired is None else tuple((p[0], p[1], p[2]) for p in wired)
    return Lease(x[0], x[1], x[2], x[3], x[4], x[5], x[6], parents, x[8] if len(x) > 8 else None)


_RESULT_BUILDERS: dict[int, Callable[[list[Any]], Result]] = {
    0: lambda a: Refusal(Reason(_str(a[0], "reason")), _str(a[1], "message")),
    1: lambda a: Enqueued(tuple(a[0]), tuple(a[1])),
    2: lambda a: Claimed(tuple(_lease_from_wire(x) for x in a[0])),
    3: lambda a: Extended(a[0], len(a) > 1 and a[1] is True),
    4: lambda a: Acked(a[0]),
    5: lambda a: Nacked(a[0], a[1], a[2]),
    6: lambda a: Cancelled(a[0]),
    7: lambda a: Requeued(a[0]),
    8: lambda a: Purged(a[0]),
    9: lambda a: Paused(a[0]),
    10: lambda a: Resumed(a[0]),
    11: lambda a: Configured(a[0], a[1], a[2]),
    12: lambda a: Ticked(a[0]),
    13: lambda a: VersionEnabled(a[0]),
    20: lambda a: SchedulePut(a[0], a[1]),
    21: lambda a: ScheduleDeleted(a[0]),
    22: lambda a: Fired(a[0], a[1], a[2]),
    23: lambda a: SchedulePaused(a[0], a[1]),
    14: lambda a: LimitsSet(*a[:7]),
    15: lambda a: Released(a[0]),
    30: lambda a: BatchCreated(a[0], tuple(a[1])),
}


def result_from_wire(v: Any) -> Result:
    """Rebuild a result from ``encode_result``'s array (trusted input: our own snapshots)."""
    a = _list(v, "result")
    try:
        return _RESULT_BUILDERS[_int(a[0], "result tag")](a[1:])
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise CodecError(f"bad result: {e}") from e


def encode_results(results: Sequence[Result]) -> bytes:
    raw: bytes = msgpack.packb([FORMAT_VERSION, [encode_result(r) for r in results]])
    return raw


def decode_results(raw: bytes) -> list[Result]:
    v = unpack(raw)
    if type(v) is not list or len(v) != 2 or v[0] != FORMAT_VERSION:
        raise CodecError("results: expected [version, [results]]")
    return [result_from_wire(r) for r in _list(v[1], "results")]
