"""Core refusals as ``raftq.errors.Rejected``: the reason, its message, and its HTTP status."""

from __future__ import annotations

from raftq.core import Reason, Refusal
from raftq.errors import Rejected

__all__ = ["REASON_STATUS", "rejected"]

# Core refusal -> HTTP status. Every Reason must be here (a test checks it).
REASON_STATUS: dict[Reason, int] = {
    Reason.MALFORMED: 400,
    Reason.UNSUPPORTED_VERSION: 400,
    Reason.INVALID: 400,
    Reason.NOT_FOUND: 404,
    Reason.STALE_TOKEN: 409,
    Reason.LEASE_EXPIRED: 409,
    Reason.FINISHED: 409,
    Reason.TOO_MANY_QUEUES: 409,
    Reason.REQUEST_ID_REUSED: 409,
    Reason.VERSION_NOT_ENABLED: 409,
    Reason.STALE_SLOT: 409,
    Reason.SCHEDULE_PAUSED: 409,
    Reason.TOO_MANY_SCHEDULES: 409,
}


def rejected(r: Refusal) -> Rejected:
    """The exception of a refusal of the state machine (reason, message, HTTP status)."""
    return Rejected(r.reason.value, r.message, REASON_STATUS.get(r.reason, 400))
