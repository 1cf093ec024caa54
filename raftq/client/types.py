"""Values the client hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ClaimedJob"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedJob:
    """A job leased by ``claim``.

    Attributes:
        id: the job id.
        queue: its queue.
        payload: the value given at enqueue (bytes stay bytes).
        priority: 0..9.
        attempt: 1 on the first claim, counting every lease.
        token: the fencing token of this lease: pass it to ``ack``/``nack``/``heartbeat`` and
            to downstream systems that must refuse a stale worker.
        lease_expires_ms: cluster time when the lease ends unless extended by ``heartbeat``.
    """

    id: int
    queue: str
    payload: Any
    priority: int
    attempt: int
    token: int
    lease_expires_ms: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ClaimedJob:
        """Build from one element of a claim answer's ``jobs``."""
        return cls(
            id=d["id"],
            queue=d["queue"],
            payload=d.get("payload"),
            priority=d["priority"],
            attempt=d["attempt"],
            token=d["token"],
            lease_expires_ms=d["lease_expires_ms"],
        )
