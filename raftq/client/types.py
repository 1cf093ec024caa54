"""Values the client hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ClaimedJob", "LeaseExtended", "heartbeat_body"]


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
        parents: for a job enqueued with ``depends_on`` (once released) or a batch callback,
            each parent's id -> its result; ``None`` for any other job.
        parent_states: each parent's id -> its final state (``succeeded``; ``dead`` or
            ``cancelled`` for a job that runs on failure, or an ``on_complete`` callback).
        checkpoint: the last checkpoint an earlier attempt saved with ``heartbeat``
            (``None``: none, as on a first attempt).
    """

    id: int
    queue: str
    payload: Any
    priority: int
    attempt: int
    token: int
    lease_expires_ms: int
    parents: dict[int, Any] | None = None
    parent_states: dict[int, str] | None = None
    checkpoint: Any = None

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
            parents=_by_id(d.get("parents")),
            parent_states=_by_id(d.get("parent_states")),
            checkpoint=d.get("checkpoint"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseExtended:
    """A heartbeat's answer.

    Attributes:
        lease_expires_ms: cluster time when the lease now ends.
        cancel_requested: the job was cancelled while this lease held it: stop working on
            it (its ack and nack are refused; nothing was extended, and ``lease_expires_ms``
            is when the cancel happened).
    """

    lease_expires_ms: int
    cancel_requested: bool = False

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> LeaseExtended:
        """Build from a heartbeat answer (an older node's has no ``cancel_requested``)."""
        return cls(
            lease_expires_ms=int(d["lease_expires_ms"]),
            cancel_requested=d.get("cancel_requested") is True,
        )


def heartbeat_body(
    token: int, lease_ms: int | None, progress: Any, checkpoint: Any
) -> dict[str, Any]:
    """A heartbeat's body (or stream frame fields): what is ``None`` is left out."""
    body: dict[str, Any] = {"token": token}
    for name, value in (("lease_ms", lease_ms), ("progress", progress), ("checkpoint", checkpoint)):
        if value is not None:
            body[name] = value
    return body


def _by_id(m: Mapping[str, Any] | None) -> dict[int, Any] | None:
    return None if m is None else {int(k): v for k, v in m.items()}
