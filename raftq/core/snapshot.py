"""Snapshots: the whole machine as a stream of msgpack objects, and back.

Layout (version 4, 5 or 6), each item one msgpack object: ``["raftq-snapshot", 4]``, ``[clock_ms,
applied, digest, next_id, last_token, n_queues, n_jobs, n_requests]`` (version 5:
``enabled_version`` appended; version 6: ``enabled_version, n_schedules, n_fired``), then
n_queues queue records (version 6: with the job groups and limits at the end), n_jobs job
records (in id order), n_requests request records (``[id, expires_ms, command digest, claim refs
| None, result | None]``, see ``requests.py``), in version 6 n_schedules schedule records and
n_fired fired-job records (``schedules.py``: ``schedule_records``), and last a trailer: the
SHA-256 of every byte before it (32 raw bytes, not a msgpack object), so a damaged or truncated
snapshot is refused. Heaps are not stored: they are rebuilt from the jobs, and since every heap
key is unique, the order in which
jobs come out does not depend on a heap's layout. The stream is canonical: equal states give
equal bytes, so a hash of it compares replicas. Version 3 is still read (see
``_read_v3_request``).

Version 5 is written only once the cluster enabled log version 2 or above (``EnableVersion``):
until then a snapshot is the version 4 that the previous raftq reads, so a leader of the new
release can still send its snapshot to a follower of the old one during a rolling upgrade.
Version 6 (schedules, job groups and limits, the dependency and batch tables of
``flow_snapshot.py``) likewise only once log version 3 is enabled (before that, version 5 while
the enabled version is 2). The limits' heaps (ring, wake, group ready heaps) are rebuilt too;
what orders them (each group's turn and wake time, the rate logs) is stored.
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import IO, TYPE_CHECKING, Any, Protocol

import msgpack

from raftq.core.codec import result_from_wire
from raftq.core.errors import CodecError
from raftq.core.fair import Limiter, limits_from_record
from raftq.core.flow_snapshot import flow_records, read_flow
from raftq.core.job import Job, JobState
from raftq.core.limits import DEFAULT_LEASE_MS
from raftq.core.queue import QueueState
from raftq.core.requests import (
    DIGEST_SIZE,
    LEGACY_DIGEST,
    Answer,
    answer_from_record,
    answer_record,
    remember,
)
from raftq.core.results import Enqueued, all_new
from raftq.core.schedules import fired_records, read_schedule_records, schedule_records
from raftq.core.tally import Tally

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = [
    "SNAPSHOT_VERSION",
    "Checksum",
    "read_snapshot_into",
    "snapshot_bytes",
    "snapshot_digest",
    "write_snapshot",
]

# 2: job records end with claim_lease_ms; key_expiry holds finish times.
# 3: queue records end with the tally (outcome totals, wait and run histograms, recent
#    workers); job records end with claimed_ms.
# 4: request records hold the command's digest, and a claim's answer as job id and token
#    pairs instead of the leases (payloads were stored twice). Version 3 is still read.
# 5: the head record ends with enabled_version (written only when it is above 1).
# 6: the head also counts schedules and fired jobs, their records follow the requests, then the
#    dependency and batch tables (``flow_snapshot.py``); queue records end with the job groups
#    (job id, group, ...) and the limits record (``fair.Limiter.record``, or None); written
#    only once log version 3 is enabled. Job records end with the long-job fields
#    (``[progress, checkpoint, cancel_requested]``, or None for a job with none of them).
SNAPSHOT_VERSION = 6
_V4 = 4  # what the release before log version 2 reads: written while enabled_version is 1
_V5 = 5  # what the release before log version 3 reads: written while enabled_version is 2
_READABLE = (3, _V4, _V5, SNAPSHOT_VERSION)
_MAGIC = "raftq-snapshot"
_STATES = list(JobState)
_STATE_CODE = {s: i for i, s in enumerate(_STATES)}
# Records packed per msgpack call (and per ``write``). A chunk's record lists are alive
# together, so it stays below the cyclic GC's first threshold (700 net allocations): 2048
# set the collector off about once per 1000 jobs, and its full passes over a 1M-job state
# took a third of the snapshot time. 256 records are ~40 KiB for 100-byte payloads.
_CHUNK = 256
_SUM_SIZE = 32  # the trailer: hashlib.sha256 of everything before it


class Checksum(Protocol):
    """A running SHA-256 (``hashlib.sha256()``, or one that does not use OpenSSL:
    ``raftq.raft.snapshot_file.builtin_sha256``)."""

    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


# ``_read_into`` fills every slot of ``Job`` from a job record without calling
# ``Job.__init__`` (``_run`` from worker, claim_lease_ms and claimed_ms; ``_outcome`` from
# result and error, and in version 6 the long-job fields of the last item): a new slot must be
# added to the record format too.
_JOB_SLOTS = (
    "_outcome",
    "_run",
    "attempts",
    "created_ms",
    "finished_ms",
    "id",
    "key",
    "lease_expires_ms",
    "lease_ms",
    "max_attempts",
    "payload",
    "priority",
    "queue",
    "ready_at_ms",
    "state",
    "token",
)
if Job.__slots__ != _JOB_SLOTS:
    raise RuntimeError("Job has new slots: extend the snapshot's job record (and its version)")


def _pack_many(records: list[Any]) -> bytes:
    """The records packed one after the other: one msgpack array minus its header.

    A stream of objects is the concatenation of their encodings, and an array is a header
    followed by its items, so packing the chunk as an array and dropping the header (1, 3 or 5
    bytes by length, per the msgpack spec) gives the same bytes in one C call.
    """
    n = len(records)
    packed: bytes = msgpack.packb(records)
    return packed[1 if n < 16 else 3 if n < 1 << 16 else 5 :]


def _chunks(records: Iterator[list[Any]]) -> Iterator[list[list[Any]]]:
    while chunk := list(islice(records, _CHUNK)):
        yield chunk


def _head_records(m: Machine) -> list[list[Any]]:
    head = [
        m.clock_ms,
        m.applied,
        m.digest,
        m.next_id,
        m.last_token,
        len(m.queues),
        len(m.jobs),
        len(m.requests),
    ]
    version = _version_of(m)
    if version == _V4:
        return [[_MAGIC, _V4], head]
    if version == _V5:
        return [[_MAGIC, _V5], [*head, m.enabled_version]]
    counts = [m.enabled_version, len(m.schedules), len(m.fired)]
    return [[_MAGIC, SNAPSHOT_VERSION], [*head, *counts]]


def _version_of(m: Machine) -> int:
    """4 and 5 (what the previous releases read) until log version 3 is enabled: the
    schedule, limit, group, dependency and batch commands are refused before, so nothing of
    version 6 exists."""
    return _V4 if m.enabled_version == 1 else _V5 if m.enabled_version == 2 else SNAPSHOT_VERSION


def _queue_records(m: Machine, index: dict[str, int]) -> Iterator[list[Any]]:
    v6 = _version_of(m) == SNAPSHOT_VERSION
    for i, q in enumerate(m.queues.values()):
        index[q.name] = i
        extra: list[Any] = []
        if v6:
            groups = [x for kv in q.group_of.items() for x in kv]
            extra = [groups, None if q.lim is None else q.lim.record()]
        yield [
            q.name,
            q.paused,
            q.dedup_window_ms,
            q.retention_ms,
            [x for kv in q.keys.items() for x in kv],
            [x for e in q.key_expiry for x in e],
            list(q.dead),
            list(q.finished),
            *_tally_record(q.tally),
            *extra,
        ]


def _tally_record(t: Tally) -> list[Any]:
    workers = [x for kv in t.workers.items() for x in kv]
    return [t.totals, t.wait.counts, t.wait.sum_ms, t.run.counts, t.run.sum_ms, workers]


def _read_tally(t: Tally, record: list[Any]) -> None:
    totals, wait_counts, wait_sum, run_counts, run_sum, workers = record
    if len(totals) != len(t.totals) or len(wait_counts) != len(t.wait.counts):
        raise CodecError("corrupt snapshot: tally of the wrong size")
    if len(run_counts) != len(t.run.counts):
        raise CodecError("corrupt snapshot: tally of the wrong size")
    t.totals = list(totals)
    t.wait.counts, t.wait.sum_ms = list(wait_counts), wait_sum
    t.run.counts, t.run.sum_ms = list(run_counts), run_sum
    t.workers = dict(zip(workers[::2], workers[1::2], strict=True))


def _request_records(m: Machine) -> Iterator[list[Any]]:
    for expires_ms, rid in m.request_order:
        _, digest, answer = m.requests[rid]
        yield [rid, expires_ms, digest, *answer_record(answer)]


def _job_records(m: Machine, index: dict[str, int]) -> Iterator[list[Any]]:
    """Job records in chunks of ``_CHUNK``, in id order (dict order == id order: ids only grow)."""
    code = _STATE_CODE
    jobs = iter(m.jobs.values())
    v6 = _version_of(m) == SNAPSHOT_VERSION
    while batch := list(islice(jobs, _CHUNK)):
        chunk: list[list[Any]] = [
            [
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
                j.claim_lease_ms,
                j.claimed_ms,
            ]
            for j in batch
        ]
        if v6:
            for record, j in zip(chunk, batch, strict=True):
                record.append(_long_record(j))
        yield chunk


def _long_record(j: Job) -> list[Any] | None:
    if j.progress is None and j.checkpoint is None and not j.cancel_requested:
        return None
    return [j.progress, j.checkpoint, j.cancel_requested]


def write_snapshot(
    m: Machine,
    write: Callable[[bytes], object],
    sha256: Callable[[], Checksum] = hashlib.sha256,
) -> None:
    """Stream the snapshot of ``m`` to ``write``, a chunk of records per call (``sha256``:
    what computes the trailer's SHA-256; the snapshot writer's forked child passes one that
    does not use OpenSSL)."""
    checksum = sha256()

    def out(data: bytes) -> None:
        checksum.update(data)
        write(data)

    out(_pack_many(_head_records(m)))
    index: dict[str, int] = {}
    for chunk in _chunks(_queue_records(m, index)):
        out(_pack_many(chunk))
    for chunk in _job_records(m, index):  # after the queues: they fill ``index``
        out(_pack_many(chunk))
    for chunk in _chunks(_request_records(m)):
        out(_pack_many(chunk))
    if _version_of(m) == SNAPSHOT_VERSION:  # the head counted them
        for chunk in _chunks(schedule_records(m)):
            out(_pack_many(chunk))
        for chunk in _chunks(fired_records(m)):
            out(_pack_many(chunk))
        for chunk in _chunks(flow_records(m)):
            out(_pack_many(chunk))
    write(checksum.digest())


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
    """The snapshot's records; the trailer is held back from the unpacker and checked once
    the stream ends (``_read_into`` reads to the end before it returns)."""
    checksum = hashlib.sha256()
    tail = b""
    while True:
        yield from unpacker
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        data = tail + chunk
        tail, body = data[-_SUM_SIZE:], data[:-_SUM_SIZE]
        checksum.update(body)
        unpacker.feed(body)
    if tail != checksum.digest():
        raise CodecError("corrupt snapshot: checksum mismatch (damaged or truncated)")


def _read_head(m: Machine, it: Iterator[Any]) -> tuple[int, list[int]]:
    """The version, and the counts of queues, jobs, requests, schedules and fired jobs."""
    head = next(it)
    if type(head) is not list or len(head) != 2 or head[0] != _MAGIC:
        raise CodecError(f"not a raftq snapshot: {head!r:.80}")
    version = head[1]
    if version not in _READABLE:
        newer = type(version) is int and version > SNAPSHOT_VERSION
        raise CodecError(
            f"snapshot version {version!r:.20} is not one this raftq reads (3 to "
            f"{SNAPSHOT_VERSION})"
            + (": a newer raftq wrote it, upgrade this node" if newer else "")
        )
    fields = next(it)
    n_sched = n_fired = 0
    if version == SNAPSHOT_VERSION:
        *fields, m.enabled_version, n_sched, n_fired = fields
    elif version == _V5:
        *fields, m.enabled_version = fields
    (m.clock_ms, m.applied, m.digest, m.next_id, m.last_token, n_q, n_jobs, n_req) = fields
    return version, [n_q, n_jobs, n_req, n_sched, n_fired]


def _read_into(m: Machine, it: Iterator[Any]) -> None:
    version, (n_q, n_jobs, n_req, n_sched, n_fired) = _read_head(m, it)
    queues: list[QueueState] = []
    lim_records: list[list[Any] | None] = []
    for _ in range(n_q):
        name, paused, window, retention, keys, expiry, dead, finished, *tally = next(it)
        q = QueueState(name)
        lim_record = None
        if version == SNAPSHOT_VERSION:
            *tally, groups, lim_record = tally
            q.group_of = dict(zip(groups[::2], groups[1::2], strict=True))
        lim_records.append(lim_record)
        _read_tally(q.tally, tally)
        q.paused, q.dedup_window_ms, q.retention_ms = bool(paused), window, retention
        q.keys = dict(zip(keys[::2], keys[1::2], strict=True))
        q.key_expiry = deque(zip(expiry[::3], expiry[1::3], expiry[2::3], strict=True))
        q.dead = dict.fromkeys(dead)
        q.finished = deque(finished)
        queues.append(q)
        m.queues[name] = q
    members: list[list[Job]] = [[] for _ in queues]
    names = [q.name for q in queues]
    table, states, new = m.jobs, _STATES, Job.__new__
    last_created = -1
    for _ in range(n_jobs):
        r = next(it)
        # Every slot set here, no Job.__init__ (see _JOB_SLOTS): a third of the restore time.
        job = new(Job)
        job.id = r[0]
        job.queue = names[r[1]]
        job.payload = r[2]
        job.priority = r[3]
        job.state = states[r[4]]
        job.attempts = r[5]
        job.max_attempts = r[6]
        job.lease_ms = DEFAULT_LEASE_MS if r[7] == DEFAULT_LEASE_MS else r[7]
        # Equal ints as one object, as the apply path leaves them (32 bytes each per job):
        # ready_at_ms is created_ms for a job enqueued due, consecutive jobs mostly share
        # created_ms, and lease_ms is mostly a default.
        created = r[9]
        if created == last_created:
            created = last_created
        job.created_ms = last_created = created
        job.ready_at_ms = created if r[8] == created else r[8]
        job.key = r[10]
        job.token = r[11]
        job.lease_expires_ms = r[12]
        job.set_run(r[13], r[17], r[18])
        job.restore_outcome(r[14], r[15], r[19] if version == SNAPSHOT_VERSION else None)
        job.finished_ms = r[16]
        table[job.id] = job
        members[r[1]].append(job)
    for q, jobs, lim_record in zip(queues, members, lim_records, strict=True):
        q.rebuild(jobs)
        if lim_record is not None:
            lim = Limiter(q, m, limits_from_record(lim_record))
            ready, q.ready = q.ready, []
            lim.restore(lim_record, ready, [j for j in jobs if j.state is JobState.LEASED])
            q.lim = lim
    read_request = _read_v3_request if version == 3 else _read_request
    for _ in range(n_req):
        rid, expires_ms, digest, answer = read_request(next(it))
        if isinstance(answer, Enqueued):  # the jobs' own id objects, not a copy of each
            existing = all_new(len(answer.ids)) if not any(answer.existing) else answer.existing
            answer = Enqueued(tuple(_same_ids(table, answer.ids)), existing)
        m.requests[rid] = (expires_ms, digest, answer)
        m.request_order.append((expires_ms, rid))
    read_schedule_records(m, it, n_sched, n_fired)
    if version == SNAPSHOT_VERSION:
        read_flow(m, it)
    if next(it, None) is not None:
        raise CodecError("corrupt snapshot: trailing data")


def _same_ids(table: dict[int, Job], ids: tuple[int, ...]) -> Iterator[int]:
    for i in ids:
        job = table.get(i)
        yield i if job is None else job.id


def _read_request(record: list[Any]) -> tuple[str, int, bytes, Answer]:
    rid, expires_ms, digest, refs, wire = record
    if type(rid) is not str or type(expires_ms) is not int or type(digest) is not bytes:
        raise CodecError("corrupt snapshot: bad request record")
    if len(digest) not in (len(LEGACY_DIGEST), DIGEST_SIZE):
        raise CodecError("corrupt snapshot: bad request digest")
    return rid, expires_ms, digest, answer_from_record(refs, wire)


def _read_v3_request(record: list[Any]) -> tuple[str, int, bytes, Answer]:
    """A version-3 request record, ``[id, expires_ms, first result]``: no digest was kept (the
    id answers any command until it expires, as it did then), and a claim's leases become
    references like any claim remembered now (their payloads are in the job records)."""
    rid, expires_ms, wire = record
    if type(rid) is not str or type(expires_ms) is not int:
        raise CodecError("corrupt snapshot: bad request record")
    return rid, expires_ms, LEGACY_DIGEST, remember(result_from_wire(wire))
