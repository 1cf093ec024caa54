"""The request-id memory: what a repeated request id is answered with.

Each remembered id keeps ``(expires_ms, digest, answer)``:

- ``digest`` (``command_digest``): a hash of what the command asks, its canonical encoding
  without ``now_ms`` and ``request_id``. A repeat with another digest is not the same request:
  it is refused with ``request_id_reused`` and not applied, so an id cannot fetch the answer
  to another command. ``LEGACY_DIGEST`` (empty) marks an id restored from a snapshot of
  version 3, which did not record digests: it answers any command, as ids then did, until its
  window ends.
- ``answer`` (``remember``): the first result, except that a ``Claimed`` is kept as
  ``ClaimRefs``, each lease's (job id, fencing token). Payloads live in the jobs table only:
  the memory and the snapshots do not hold them a second time.

A replayed claim (``replay``) is rebuilt from the jobs table and holds those of its leases that
are still live under their token (the job exists, is leased with that token, and cluster time
is before its lease's end), with the job's current lease end (a heartbeat moves it). A lease
that ended since (acked, nacked, expired, cancelled, purged, collected, or claimed again with a
newer token) is left out: its work is finished or belongs to a newer holder, and a replay must
neither hand out a job it no longer leases nor a token that is not current.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from raftq.core.codec import encode_command, encode_result, result_from_wire
from raftq.core.commands import Command
from raftq.core.errors import CodecError
from raftq.core.job import JobState
from raftq.core.ops import lease_of
from raftq.core.results import Claimed, Lease, Result

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = [
    "DIGEST_SIZE",
    "LEGACY_DIGEST",
    "Answer",
    "ClaimRefs",
    "answer_from_record",
    "answer_record",
    "command_digest",
    "remember",
    "replay",
]

DIGEST_SIZE = 16
LEGACY_DIGEST = b""  # restored from a version-3 snapshot: the command is not known


@dataclass(frozen=True, slots=True)
class ClaimRefs:
    """A ``Claimed`` answer as remembered: ``refs`` is job id, token, job id, token, ..."""

    refs: tuple[int, ...]


Answer = Result | ClaimRefs


def command_digest(cmd: Command) -> bytes:
    """What ``cmd`` asks, as ``DIGEST_SIZE`` bytes: equal for a retry of the same request (its
    ``now_ms`` differs, and a long-poll round's id too), different for any other command."""
    wire = encode_command(cmd)
    wire[1] = wire[2] = None  # request_id, now_ms
    packed: bytes = msgpack.packb(wire)
    return hashlib.blake2b(packed, digest_size=DIGEST_SIZE, person=b"raftq-request").digest()


def remember(result: Result) -> Answer:
    """What the memory keeps of a first ``result``."""
    if isinstance(result, Claimed):
        return ClaimRefs(tuple(x for lease in result.jobs for x in (lease.id, lease.token)))
    return result


def replay(m: Machine, answer: Answer) -> Result:
    """The answer to a repeat (see the module docstring for claims). Never mutates ``m``."""
    if not isinstance(answer, ClaimRefs):
        return answer
    leases: list[Lease] = []
    refs, jobs, clock = answer.refs, m.jobs, m.clock_ms
    for i in range(0, len(refs), 2):
        job = jobs.get(refs[i])
        if (
            job is None
            or job.token != refs[i + 1]
            or job.state is not JobState.LEASED
            or clock >= job.lease_expires_ms
        ):
            continue
        leases.append(lease_of(m, job))
    return Claimed(tuple(leases))


def answer_record(answer: Answer) -> list[Any]:
    """``[refs, None]`` for a claim, ``[None, encoded result]`` otherwise (snapshot v4)."""
    if isinstance(answer, ClaimRefs):
        return [list(answer.refs), None]
    return [None, encode_result(answer)]


def answer_from_record(refs: Any, wire: Any) -> Answer:
    """``answer_record`` read back; ``CodecError`` if malformed."""
    if refs is None:
        return result_from_wire(wire)
    if wire is not None or type(refs) is not list or len(refs) % 2:
        raise CodecError("corrupt snapshot: bad claim references")
    for x in refs:
        if type(x) is not int:
            raise CodecError("corrupt snapshot: bad claim references")
    return ClaimRefs(tuple(refs))
