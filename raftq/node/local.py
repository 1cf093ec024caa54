"""The leader side of ``raftq.Node``: validate arguments, build core commands, submit them to
the local raft node, and turn results into what ``raftq.client.Client`` returns.

Validation is the HTTP API's own (``raftq.server.fields`` and ``wire.pack_value``), so a call
is refused here exactly when the same request would be refused over HTTP, with the same
``reason`` and ``status`` (an ``ApiError`` becomes ``raftq.errors.Rejected``). Payloads and
results are stored as the server stores them (msgpack), so HTTP readers see the same values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from raftq.client.types import ClaimedJob
from raftq.core import Claim, Claimed, Command, Lease, NewJob, Refusal, Result
from raftq.core.limits import (
    MAX_CLAIM,
    MAX_CLAIM_QUEUES,
    MAX_LEASE_MS,
    MAX_WORKER_CHARS,
)
from raftq.errors import Rejected
from raftq.raft.api import NodeAPI
from raftq.server.errors import REASON_STATUS, ApiError, invalid
from raftq.server.fields import INT64_MAX, Fields, check_int, check_queue, check_str
from raftq.server.handlers import new_job as api_new_job
from raftq.server.wire import pack_value, unpack_value
from raftq.service import claims

__all__ = [
    "check_claim",
    "check_job_id",
    "claim_rounds",
    "new_job",
    "pack_result",
    "submit",
    "validating",
]


@contextmanager
def validating() -> Iterator[None]:
    """Turn the API's validation errors into ``Rejected`` (same code and status)."""
    try:
        yield
    except ApiError as e:
        raise Rejected(e.code, e.message, e.status) from None


def new_job(spec: Mapping[str, Any], where: str, max_payload_bytes: int) -> NewJob:
    """One job from ``{payload, priority?, delay_ms?, run_at_ms?, key?, max_attempts?,
    lease_ms?}`` (``None`` values count as absent), validated as the API does."""
    if not isinstance(spec, Mapping):
        raise invalid(where, "expected a mapping with a payload")
    f = Fields({k: v for k, v in spec.items() if v is not None or k == "payload"}, where)
    return api_new_job(f, "msgpack", max_payload_bytes)


def pack_result(result: Any, max_payload_bytes: int) -> bytes | None:
    """An ack's result as stored bytes (``None``: no result)."""
    return None if result is None else pack_value(result, "msgpack", "result", max_payload_bytes)


def check_job_id(job_id: int) -> int:
    return check_int(job_id, "job_id", 1, INT64_MAX)


def check_claim(
    queues: str | Sequence[str],
    *,
    worker: str,
    mx: int,
    lease_ms: int | None,
    wait_ms: int,
    max_wait_ms: int,
) -> tuple[tuple[str, ...], int]:
    """Validated ``(queues, wait_ms)`` of a claim (``wait_ms`` lowered to the cap)."""
    if isinstance(queues, str):
        names: tuple[str, ...] = (check_queue(queues, "queue"),)
    else:
        items = list(queues)
        if not 1 <= len(items) <= MAX_CLAIM_QUEUES:
            raise invalid("queues", f"must hold 1..{MAX_CLAIM_QUEUES} items, got {len(items)}")
        names = tuple(check_queue(q, f"queues[{i}]") for i, q in enumerate(items))
    check_str(worker, "worker", MAX_WORKER_CHARS)
    check_int(mx, "max", 1, MAX_CLAIM)
    if lease_ms is not None:
        check_int(lease_ms, "lease_ms", 1, MAX_LEASE_MS)
    return names, min(check_int(wait_ms, "wait_ms", 0, INT64_MAX), max_wait_ms)


async def submit(node: NodeAPI, command: Command, timeout_ms: int) -> Result:
    """Submit on the local node; a core refusal raises ``Rejected`` with the API's status."""
    return _accepted(await node.submit(command, timeout_ms))


def _accepted(result: Result) -> Result:
    if isinstance(result, Refusal):
        status = REASON_STATUS.get(result.reason, 400)
        raise Rejected(result.reason.value, result.message, status)
    return result


async def claim_rounds(
    node: NodeAPI, first: Claim, wait_ms: int, timeout_ms: int
) -> list[ClaimedJob]:
    """Claim, and while nothing is ready and ``wait_ms`` remains, wait for work and claim again
    (``raftq.service.claims.claim_rounds``, as the HTTP long-poll does)."""
    leases = await claims.claim_rounds(node, first, wait_ms, timeout_ms, check=_claimed)
    return [claimed_job(x) for x in leases]


def _claimed(result: Result) -> Claimed:
    result = _accepted(result)
    if not isinstance(result, Claimed):
        raise TypeError(f"unexpected result {type(result).__name__}")
    return result


def claimed_job(x: Lease) -> ClaimedJob:
    return ClaimedJob(
        id=x.id,
        queue=x.queue,
        payload=unpack_value(x.payload),
        priority=x.priority,
        attempt=x.attempt,
        token=x.token,
        lease_expires_ms=x.lease_expires_ms,
    )
