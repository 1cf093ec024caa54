"""Domain objects as the JSON/msgpack shapes of DESIGN.md section 4 (more fields welcome).

Payloads and results are decoded back to the user's value here
(``raftq.service.values.unpack_value``).
"""

from __future__ import annotations

from typing import Any

from raftq._version import __version__
from raftq.core import JobInfo, Lease, LimitsSet, LimitsView, QueueStats
from raftq.core.codec import LOG_VERSION
from raftq.raft.api import NodeStatus
from raftq.service.values import unpack_value

__all__ = [
    "render_cluster",
    "render_job",
    "render_lease",
    "render_limits",
    "render_limits_set",
    "render_queue",
]


def render_job(j: JobInfo) -> dict[str, Any]:
    """``GET /v1/jobs/{id}``."""
    return {
        "id": j.id,
        "queue": j.queue,
        "state": j.state.value,
        "priority": j.priority,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "payload": unpack_value(j.payload),
        "result": unpack_value(j.result),
        "error": j.error,
        "run_at_ms": j.run_at_ms,
        "created_ms": j.created_ms,
        "key": j.key,
        "lease_ms": j.lease_ms,
        "token": j.token,
        "worker": j.worker,
        "lease_expires_ms": j.lease_expires_ms,
        "finished_ms": j.finished_ms,
        "group": j.group,
        "schedule": j.schedule,
        "fire_ms": j.fire_ms,
        "progress": unpack_value(j.progress),
        "checkpoint": unpack_value(j.checkpoint),
        "cancel_requested": j.cancel_requested,
    }


def render_lease(x: Lease) -> dict[str, Any]:
    """One job of a claim answer."""
    return {
        "id": x.id,
        "queue": x.queue,
        "payload": unpack_value(x.payload),
        "priority": x.priority,
        "attempt": x.attempt,
        "token": x.token,
        "lease_expires_ms": x.lease_expires_ms,
        "checkpoint": unpack_value(x.checkpoint),
    } | _parents(x)


def _parents(x: Lease) -> dict[str, Any]:
    """A released dependant's or a batch callback's view of its parents: ``parents`` maps
    each id to its result, ``parent_states`` to its final state (``succeeded``, or ``dead``
    / ``cancelled`` for a job that runs on failure)."""
    if x.parents is None:
        return {}
    return {
        "parents": {str(pid): unpack_value(res) for pid, _, res in x.parents},
        "parent_states": {str(pid): st for pid, st, _ in x.parents},
    }


def render_queue(s: QueueStats) -> dict[str, Any]:
    """``GET /v1/queues/{queue}``: depth by state, ready jobs by priority, windows, and the
    outcome counters (``totals``: the same numbers as ``raftq_jobs_total``; a client computes
    rates from two readings)."""
    depth = dict(s.depth)
    return {
        "queue": s.queue,
        "paused": s.paused,
        "depth": depth,
        "by_priority": dict(s.by_priority),
        "in_flight": s.in_flight,
        "keys": s.keys,
        "dedup_window_ms": s.dedup_window_ms,
        "retention_ms": s.retention_ms,
        "totals": dict(s.totals),
        "limits": render_limits(s.queue, s.limits),
    }


def _rate(limit: int | None, period_ms: int | None) -> dict[str, int] | None:
    return None if limit is None or period_ms is None else {"limit": limit, "period_ms": period_ms}


def render_limits_set(r: LimitsSet) -> dict[str, Any]:
    """``PUT /v1/queues/{queue}/limits``: the limits as applied (``null``: no such limit)."""
    return {
        "queue": r.queue,
        "concurrency": r.concurrency,
        "rate": _rate(r.rate_limit, r.rate_period_ms),
        "group_concurrency": r.group_concurrency,
        "group_rate": _rate(r.group_rate_limit, r.group_rate_period_ms),
    }


def render_limits(queue: str, v: LimitsView | None) -> dict[str, Any]:
    """``GET /v1/queues/{queue}/limits`` (and ``limits`` in ``GET /v1/queues/{queue}``): the
    limits and their use (``usage`` is ``null`` when the queue has none)."""
    if v is None:
        return {
            "queue": queue,
            "concurrency": None,
            "rate": None,
            "group_concurrency": None,
            "group_rate": None,
            "usage": None,
        }
    return {
        "queue": queue,
        "concurrency": v.concurrency,
        "rate": _rate(v.rate_limit, v.rate_period_ms),
        "group_concurrency": v.group_concurrency,
        "group_rate": _rate(v.group_rate_limit, v.group_rate_period_ms),
        "usage": {
            "slots_used": v.leased,
            "starts_in_window": v.starts_in_window,
            "rate_blocked": v.rate_blocked,
            "groups": v.groups,
            "groups_ready": v.groups_ready,
            "groups_waiting": v.groups_waiting,
            "at_ms": v.at_ms,
        },
    }


def render_cluster(st: NodeStatus, leader_api: str | None) -> dict[str, Any]:
    """``GET /v1/cluster``, from the answering node's own view."""
    return {
        "self": {
            "id": st.id,
            "role": st.role,
            "term": st.term,
            "commit_index": st.commit_index,
            "applied_index": st.applied_index,
            "digest": st.digest,
            "clock_ms": st.clock_ms,
            "ready": st.ready,
            "log_entries": st.log_entries,
            # This node's code: its release, and the highest log version it applies.
            "version": __version__,
            "log_version": LOG_VERSION,
        },
        "leader": st.leader,
        "leader_api": leader_api,
        "nodes": [
            {"id": p.id, "api": p.api, "raft": p.raft, "reachable": p.reachable} for p in st.nodes
        ],
        # The replicated membership (the config's nodes above are where to find them).
        "members": [
            {"id": m.id, "api": m.api, "raft": m.raft, "voter": m.voter} for m in st.members
        ],
        "membership_mismatch": st.membership_mismatch,
        "cluster_id": st.cluster_id,
    }
