"""Snapshots: the whole machine as a stream of msgpack objects, and back.

Layout (version 1), each item one msgpack object:
``["raftq-snapshot", 1]``, ``[clock_ms, applied, digest, next_id, last_token, n_queues, n_jobs,
n_requests]``, then n_queues queue records, n_jobs job records (in id order), n_requests
request records. Heaps are not stored: they are rebuilt from the jobs, and since every heap
key is unique, the order in which jobs come out does not depend on a heap's layout. The
stream is canonical: equal states give equal bytes, so a hash of it compares replicas.
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

import msgpack

from raftq.core.codec import encode_result, result_from_wire
from raftq.core.errors import CodecError
from raftq.core.job import Job, JobState
from raftq.core.queue import QueueState
from raftq.core.results import Result

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = [
    "SNAPSHOT_VERSION",
    "read_snapshot_into",
    "snapshot_bytes",
    "snapshot_digest",
    "write_snapshot",
]

SNAPSHOT_VERSION = 1
_MAGIC = "raftq-snapshot"
_STATES = list(JobState)
_STATE_CODE = {s: i for i, s in enumerate(_STATES)}
_CHUNK = 2048  # records packed per write call


def _records(m: Machine) -> Iterator[Any]:
    yield [_MAGIC, SNAPSHOT_VERSION]
    yield [
        m.clock_ms,
        m.applied,
        m.digest,
        m.next_id,
        m.last_token,
        len(m.queues),
        len(m.jobs),
        len(m.requests),
    ]
    index: dict[str, int] = {}
    for i, q in enumerate(m.queues.values()):
        index[q.name] = i
        yield [
            q.name,
            q.paused,
            q.dedup_window_ms,
            q.retention_ms,
            [x for kv in q.keys.items() for x in kv],
            [x for e in q.key_expiry for x in e],
            list(q.dead),
            list(q.finished),
        ]
    code = _STATE_CODE
    for j in m.jobs.values():  # insertion order == id order: ids only grow
        yield [
            j.id,
            index[j.queue],
            j.payload,
            j.priority,
            code[j.state],
            j.attempts,
            j.max_attempts,
            j.lease_ms,
            j.ready_at_ms,
            j.created_ms,
            j.key,
            j.token,
            j.lease_expires_ms,
            j.worker,
            j.result,
            j.error,
            j.finished_ms,
        ]
    for expires_ms, rid in m.request_order:
        yield [rid, expires_ms, encode_result(m.requests[rid][1])]


def write_snapshot(m: Machine, write: Callable[[bytes], object]) -> None:
    """Stream the snapshot of ``m`` to ``write`` in chunks of a few hundred KiB."""
    packer = msgpack.Packer(autoreset=False)
    for n, record in enumerate(_records(m), 1):
        packer.pack(record)
        if n % _CHUNK == 0:
            write(packer.bytes())
            packer.reset()
    write(packer.bytes())


def snapshot_bytes(m: Machine) -> bytes:
    parts: list[bytes] = []
    write_snapshot(m, parts.append)
    return b"".join(parts)


def snapshot_digest(m: Machine) -> str:
    h = hashlib.blake2b(digest_size=16, person=b"raftq-state")
    write_snapshot(m, h.update)
    return h.hexdigest()


def read_snapshot_into(m: Machine, stream: IO[bytes] | bytes) -> None:
    """Fill the fresh machine ``m`` from a snapshot; ``CodecError`` if it is not a valid one."""
    # The buffer must hold the largest single record (payload and result up to 16 MiB each).
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=128 * 2**20)
    it = _stream_items(unpacker, io.BytesIO(stream) if isinstance(stream, bytes) else stream)
    try:
        _read_into(m, it)
    except CodecError:
        raise
    except Exception as e:  # any malformed record: wrong type, length, missing item
        raise CodecError(f"corrupt snapshot: {type(e).__name__}: {e}") from e


def _stream_items(unpacker: msgpack.Unpacker, stream: IO[bytes]) -> Iterator[Any]:
    while True:
        yield from unpacker
        chunk = stream.read(1 << 20)
        if not chunk:
            return
        unpacker.feed(chunk)


def _read_into(m: Machine, it: Iterator[Any]) -> None:
    head = next(it)
    if head != [_MAGIC, SNAPSHOT_VERSION]:
        raise CodecError(f"not a raftq snapshot of version {SNAPSHOT_VERSION}: {head!r:.80}")
    (m.clock_ms, m.applied, m.digest, m.next_id, m.last_token, n_q, n_jobs, n_req) = next(it)
    queues: list[QueueState] = []
    for _ in range(n_q):
        name, paused, window, retention, keys, expiry, dead, finished = next(it)
        q = QueueState(name)
        q.paused, q.dedup_window_ms, q.retention_ms = bool(paused), window, retention
        q.keys = dict(zip(keys[::2], keys[1::2], strict=True))
        q.key_expiry = deque(zip(expiry[::3], expiry[1::3], expiry[2::3], strict=True))
        q.dead = dict.fromkeys(dead)
        q.finished = deque(finished)
        queues.append(q)
        m.queues[name] = q
    members: list[list[Job]] = [[] for _ in queues]
    for _ in range(n_jobs):
        r = next(it)
        job = Job(
            id=r[0],
            queue=queues[r[1]].name,
            payload=r[2],
            priority=r[3],
            state=_STATES[r[4]],
            max_attempts=r[6],
            lease_ms=r[7],
            ready_at_ms=r[8],
            created_ms=r[9],
            key=r[10],
        )
        job.attempts, job.token, job.lease_expires_ms = r[5], r[11], r[12]
        job.worker, job.result, job.error, job.finished_ms = r[13], r[14], r[15], r[16]
        m.jobs[job.id] = job
        members[r[1]].append(job)
    for q, jobs in zip(queues, members, strict=True):
        q.rebuild(jobs)
    for _ in range(n_req):
        rid, expires_ms, wire = next(it)
        result: Result = result_from_wire(wire)
        m.requests[rid] = (expires_ms, result)
        m.request_order.append((expires_ms, rid))
    if next(it, None) is not None:
        raise CodecError("corrupt snapshot: trailing data")
