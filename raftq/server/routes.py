"""The routes of the v1 API: one table (``ROUTES``), one row per route.

A row names the method, the path template (without the mounting prefix), the handler, who may
call it (``Rule``: roles and where the queue comes from, checked by ``raftq.server.auth``) and
its OpenAPI operation. ``raftq.server.app.add_routes`` mounts the rows, ``auth.RULES`` and the
OpenAPI document's ``paths`` (``raftq.server.openapi``) are read from them, so a route cannot
be served without a rule or be missing from the document.

The handler is a method of ``raftq.server.handlers.Api``, or one the app serves itself
(``index``, ``clock``, ``metrics``, ``openapi``: ``APP_HANDLERS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from raftq.config import Role
from raftq.core.limits import MAX_CLAIM, MAX_PROGRESS_BYTES
from raftq.server.openapi import (
    AUTH_ERRORS,
    JSON,
    P_ID,
    P_QUEUE,
    P_REQUEST_ID,
    WRITE_ERRORS,
    int_schema,
    obj_schema,
    operation,
    plain,
    ref,
    responses,
)
from raftq.server.settings import ServerSettings
from raftq.service.fields import INT64_MAX

__all__ = ["APP_HANDLERS", "ROUTES", "QueueFrom", "Route", "Rule"]


class QueueFrom(StrEnum):
    """Where a route's queue comes from, for the pattern check."""

    NONE = "none"  # not queue-specific
    PATH = "path"  # {queue} in the path
    JOB = "job"  # the queue of the job {id} in the path
    BODY = "body"  # the body's queues (checked by the operation, access.require_queues)


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may call a route: ``roles`` (admin always may); ``None`` roles = open to all."""

    roles: frozenset[Role] | None
    queue: QueueFrom = QueueFrom.NONE


@dataclass(frozen=True, slots=True)
class Route:
    """One route: ``method path`` served by ``handler`` under ``rule``; ``doc(settings)`` is
    its OpenAPI operation (limits filled in from the node's settings)."""

    method: str
    path: str
    handler: str
    rule: Rule
    doc: Callable[[ServerSettings], dict[str, Any]]


_R, _P, _W, _A = Role.READER, Role.PRODUCER, Role.WORKER, Role.ADMIN
_OPEN: Final = Rule(None)
_ADMIN: Final = Rule(frozenset({_A}))
_RID: Final = (P_REQUEST_ID,)  # the header of every write
P_MEMBER: Final = {
    "name": "member",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "a member's id or raft address (host:port)",
}
_READ: Final = (400, *AUTH_ERRORS, 404)
P_SCHEDULE: Final = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
}
# Schedules: admin or producer may write (the operation checks the schedule's queue against the
# token's patterns); reader too may read.
_SCHEDULE_WRITE: Final = Rule(frozenset({_P, _A}), QueueFrom.BODY)
_SCHEDULE_READ: Final = Rule(frozenset({_R, _P, _A}), QueueFrom.BODY)


def _schedule_write(summary: str, ok: str) -> Callable[[ServerSettings], dict[str, Any]]:
    return lambda s: operation(
        f"{summary} (producer, admin)",
        [P_SCHEDULE, *_RID],
        {**responses(200, None, WRITE_ERRORS), "200": plain(ok)},
        "Empty",
    )


# The handlers the app serves itself (not methods of ``Api``).
APP_HANDLERS: Final = frozenset({"index", "clock", "metrics", "openapi"})

# In the order of the OpenAPI document's paths.
ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "GET",
        "/",
        "index",
        _OPEN,
        lambda s: operation(
            "JSON index of the routes (browsers get the dashboard)",
            [],
            {
                "200": {
                    "description": "index",
                    "content": {
                        JSON: {"schema": {"type": "object"}},
                        "text/html": {"schema": {"type": "string"}},
                    },
                }
            },
            open_route=True,
        ),
    ),
    Route(
        "GET",
        "/healthz",
        "healthz",
        _OPEN,
        lambda s: operation(
            "liveness",
            [],
            {
                "200": {
                    "description": "serving",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
            open_route=True,
        ),
    ),
    Route(
        "GET",
        "/readyz",
        "readyz",
        _OPEN,
        lambda s: operation(
            "has a leader and caught up",
            [],
            {
                **responses(200, None, (503,)),
                "200": {
                    "description": "ready",
                    "content": {JSON: {"schema": {"type": "object"}}},
                },
            },
            open_route=True,
        ),
    ),
    Route(
        "GET",
        "/v1/clock",
        "clock",
        _OPEN,  # a node's wall clock; the answer is signed (clock_probe)
        lambda s: operation(
            "this node's wall clock, for the leader's question to the other nodes",
            [
                {
                    "name": "nonce",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{16,64}$"},
                }
            ],
            {
                **responses(200, None, (400,)),
                "200": {
                    "description": "node id, wall_ms, mac (HMAC with the cluster secret)",
                    "content": {JSON: {"schema": {"type": "object"}}},
                },
            },
            open_route=True,
        ),
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        "openapi",
        _OPEN,
        lambda s: operation(
            "this document",
            [],
            {
                "200": {
                    "description": "OpenAPI 3.0",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
            open_route=True,
        ),
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        Rule(frozenset({_R, _A})),  # or open: [auth] metrics = "open"
        lambda s: operation(
            "Prometheus text format (reader or admin, or open by config)",
            [],
            {
                "200": {
                    "description": "metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **responses(200, None, AUTH_ERRORS),
            },
        ),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/jobs",
        "enqueue",
        Rule(frozenset({_P, _A}), QueueFrom.PATH),
        lambda s: operation(
            f"enqueue one job or up to {s.max_batch_jobs} (producer, admin); payloads up to "
            f"{s.max_payload_bytes} bytes, bodies up to {s.max_body_bytes}",
            [P_QUEUE, *_RID],
            responses(201, "Enqueued", WRITE_ERRORS),
            "EnqueueBody",
        ),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/claim",
        "claim_one",
        Rule(frozenset({_W, _A}), QueueFrom.PATH),
        lambda s: operation(
            "lease ready jobs of a queue, long-polling up to wait_ms (worker, admin)",
            [P_QUEUE, *_RID],
            responses(200, "Claimed", WRITE_ERRORS),
            "ClaimBody",
        ),
    ),
    Route(
        "POST",
        "/v1/claim",
        "claim_many",
        Rule(frozenset({_W, _A}), QueueFrom.BODY),
        lambda s: operation(
            "lease ready jobs of several queues (worker, admin)",
            [*_RID],
            responses(200, "Claimed", WRITE_ERRORS),
            "ClaimManyBody",
        ),
    ),
    Route(
        "GET",
        "/v1/stream",
        "stream",
        Rule(frozenset({_W, _A})),  # the subscribe frame's queues: checked by the operation
        lambda s: operation(
            "the worker stream, a WebSocket upgrade (worker, admin): msgpack maps in binary "
            "messages. Client: {op: subscribe, queues, worker, lease_ms?, credit} first, then "
            "{op: credit, n}, {op: ack, seq, id, token, result?, request_id?}, {op: acks, seq, "
            "acks: [{id, token, result?}], request_id?} (answered as POST /v1/ack), {op: nack, "
            "seq, id, token, error?, retry_in_ms?, request_id?}, {op: release, seq, id, token, "
            "request_id?}, {op: heartbeat, seq, id, token, "
            "lease_ms?, progress?, checkpoint?, request_id?} (answered as POST "
            "/v1/jobs/{id}/heartbeat). Server: {op: jobs, jobs: [Lease]} (each job uses one "
            "credit; pushed once its lease is committed), {op: reply, seq, ok, answer?, "
            "error?: {reason, message, status}}, and {op: error, error: {reason, message}} "
            f"before it closes. Frames up to {s.max_body_bytes} bytes",
            [],
            {
                "101": {"description": "switching to the WebSocket protocol"},
                **responses(101, None, (400, *AUTH_ERRORS, 404, 503)),
            },
        ),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/heartbeat",
        "heartbeat",
        Rule(frozenset({_W, _A}), QueueFrom.JOB),
        lambda s: operation(
            "extend a lease, and store the job's progress and checkpoint (any JSON value, "
            f"each up to {MAX_PROGRESS_BYTES} bytes encoded: 413 beyond; they need log "
            "version 3) (worker, admin); cancel_requested: the job was cancelled, stop it",
            [P_ID, *_RID],
            responses(200, "Extended", WRITE_ERRORS),
            "HeartbeatBody",
        ),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/ack",
        "ack",
        Rule(frozenset({_W, _A}), QueueFrom.JOB),
        lambda s: operation(
            "complete a leased job (worker, admin)",
            [P_ID, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("succeeded")},
            "AckBody",
        ),
    ),
    Route(
        "POST",
        "/v1/ack",
        "ack_many",
        Rule(frozenset({_W, _A}), QueueFrom.BODY),  # each job's queue
        lambda s: operation(
            "complete several leased jobs, each with its own outcome (worker, admin)",
            [*_RID],
            responses(200, "AckedMany", WRITE_ERRORS),
            "AckManyBody",
        ),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/nack",
        "nack",
        Rule(frozenset({_W, _A}), QueueFrom.JOB),
        lambda s: operation(
            "fail a leased job: retried later or dead (worker, admin)",
            [P_ID, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("queued or dead")},
            "NackBody",
        ),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/release",
        "release",
        Rule(frozenset({_W, _A}), QueueFrom.JOB),
        lambda s: operation(
            "give a leased job back unstarted: queued again in its place, the claim's attempt "
            "not counted (worker, admin; log version 4)",
            [P_ID, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("queued")},
            "ReleaseBody",
        ),
    ),
    Route(
        "POST",
        "/v1/jobs/{id}/cancel",
        "cancel",
        Rule(frozenset({_P, _A}), QueueFrom.JOB),
        lambda s: operation(
            "cancel a job that is not finished (producer, admin); a leased job's heartbeat then "
            "answers cancel_requested: true",
            [P_ID, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("cancelled")},
            "Empty",
        ),
    ),
    Route(
        "GET",
        "/v1/jobs/{id}",
        "get_job",
        Rule(frozenset({_R, _P, _A}), QueueFrom.JOB),
        lambda s: operation(
            "a job (reader, producer, admin)",
            [
                P_ID,
                {
                    "name": "consistency",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["local", "linearizable"]},
                },
            ],
            responses(200, "Job", (*_READ, 503)),
        ),
    ),
    Route(
        "POST",
        "/v1/batches",
        "create_batch",
        Rule(frozenset({_P, _A}), QueueFrom.BODY),  # every job's and callback's queue
        lambda s: operation(
            "create jobs as a batch with on_complete / on_success / on_death callbacks, each "
            "enqueued once when due (producer, admin)",
            [*_RID],
            {**responses(201, None, WRITE_ERRORS), "201": plain("{batch, ids}")},
            "BatchBody",
        ),
    ),
    Route(
        "GET",
        "/v1/batches/{id}",
        "get_batch",
        Rule(frozenset({_R, _P, _A}), QueueFrom.BODY),  # the members' queues
        lambda s: operation(
            "a batch: its jobs, counts by state, callbacks fired (reader, producer, admin)",
            [P_ID],
            {**responses(200, None, _READ), "200": plain("{batch, ids, counts, fired}")},
        ),
    ),
    Route(
        "GET",
        "/v1/queues",
        "list_queues",
        Rule(frozenset({_R, _A})),  # the answer lists matching queues only
        lambda s: operation(
            "every queue the token may see (reader, admin)",
            [],
            {
                **responses(200, None, (400, *AUTH_ERRORS)),
                "200": {
                    "description": "queues",
                    "content": {
                        JSON: {
                            "schema": obj_schema(
                                {"queues": {"type": "array", "items": ref("Queue")}},
                                ("queues",),
                                closed=True,
                            )
                        }
                    },
                },
            },
        ),
    ),
    Route(
        "GET",
        "/v1/queues/{queue}",
        "get_queue",
        Rule(frozenset({_R, _A}), QueueFrom.PATH),
        lambda s: operation(
            "a queue's depth and counters (reader, admin)",
            [P_QUEUE],
            responses(200, "Queue", _READ),
        ),
    ),
    Route(
        "GET",
        "/v1/queues/{queue}/limits",
        "get_limits",
        Rule(frozenset({_R, _A}), QueueFrom.PATH),
        lambda s: operation(
            "a queue's limits and their use now (reader, admin)",
            [P_QUEUE],
            responses(200, "Limits", _READ),
        ),
    ),
    Route(
        "PUT",
        "/v1/queues/{queue}/limits",
        "set_limits",
        _ADMIN,
        lambda s: operation(
            "replace a queue's limits; absent or null: no such limit (admin, log version 3)",
            [P_QUEUE, *_RID],
            responses(200, "Limits", WRITE_ERRORS),
            "LimitsBody",
        ),
    ),
    Route(
        "GET",
        "/v1/queues/{queue}/dead",
        "dead",
        Rule(frozenset({_R, _A}), QueueFrom.PATH),
        lambda s: operation(
            "dead letters, oldest first (reader, admin)",
            [
                P_QUEUE,
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": int_schema(1, MAX_CLAIM),
                },
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "schema": int_schema(0, INT64_MAX),
                },
            ],
            {**responses(200, None, _READ), "200": plain("a page of dead jobs")},
        ),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/pause",
        "pause",
        _ADMIN,
        lambda s: operation(
            "pause claims (admin)",
            [P_QUEUE, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("paused")},
            "Empty",
        ),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/resume",
        "resume",
        _ADMIN,
        lambda s: operation(
            "resume claims (admin)",
            [P_QUEUE, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("resumed")},
            "Empty",
        ),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/purge",
        "purge",
        _ADMIN,
        lambda s: operation(
            "drop every unfinished job (admin)",
            [P_QUEUE, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("purged")},
            "Empty",
        ),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/dead/requeue",
        "requeue_dead",
        _ADMIN,
        lambda s: operation(
            "requeue dead letters, all or by id (admin)",
            [P_QUEUE, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("requeued")},
            "RequeueBody",
        ),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/configure",
        "configure",
        _ADMIN,
        lambda s: operation(
            "set a queue's dedup window and retention; absent fields are kept (admin)",
            [P_QUEUE, *_RID],
            responses(200, "Configured", WRITE_ERRORS),
            "ConfigureBody",
        ),
    ),
    Route(
        "GET",
        "/v1/schedules",
        "list_schedules",
        _SCHEDULE_READ,  # the answer lists the schedules of the token's queues only
        lambda s: operation(
            "every schedule the token may see, with last and next fire (reader, producer, admin)",
            [],
            {
                **responses(200, None, (400, *AUTH_ERRORS)),
                "200": {
                    "description": "schedules",
                    "content": {
                        JSON: {
                            "schema": obj_schema(
                                {"schedules": {"type": "array", "items": ref("Schedule")}},
                                ("schedules",),
                                closed=True,
                            )
                        }
                    },
                },
            },
        ),
    ),
    Route(
        "GET",
        "/v1/schedules/{name}",
        "get_schedule",
        _SCHEDULE_READ,
        lambda s: operation(
            "a schedule; next_fire_ms is computed by the node asked (reader, producer, admin)",
            [P_SCHEDULE],
            responses(200, "Schedule", _READ),
        ),
    ),
    Route(
        "PUT",
        "/v1/schedules/{name}",
        "put_schedule",
        _SCHEDULE_WRITE,
        lambda s: operation(
            "create or replace a schedule; a replaced one keeps its last slot, so no slot "
            "fires twice (producer, admin)",
            [P_SCHEDULE, *_RID],
            responses(200, "Schedule", WRITE_ERRORS),
            "ScheduleBody",
        ),
    ),
    Route(
        "DELETE",
        "/v1/schedules/{name}",
        "delete_schedule",
        _SCHEDULE_WRITE,
        lambda s: operation(
            "delete a schedule; the jobs it made stay (producer, admin)",
            [P_SCHEDULE, *_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("deleted")},
        ),
    ),
    Route(
        "POST",
        "/v1/schedules/{name}/trigger",
        "trigger_schedule",
        _SCHEDULE_WRITE,
        _schedule_write("enqueue the schedule's job now; consumes no slot", "the job"),
    ),
    Route(
        "POST",
        "/v1/schedules/{name}/pause",
        "pause_schedule",
        _SCHEDULE_WRITE,
        _schedule_write("stop firing; slots while paused never fire", "paused"),
    ),
    Route(
        "POST",
        "/v1/schedules/{name}/resume",
        "resume_schedule",
        _SCHEDULE_WRITE,
        _schedule_write("fire again from the next slot", "resumed"),
    ),
    Route(
        "GET",
        "/v1/cluster",
        "cluster",
        Rule(frozenset({_R, _A})),
        lambda s: operation(
            "this node's view of the cluster (reader, admin)",
            [
                {
                    "name": "peers",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["true", "false"]},
                }
            ],
            responses(200, "Cluster", (400, *AUTH_ERRORS)),
        ),
    ),
    Route(
        "POST",
        "/v1/cluster/leader",
        "transfer_leadership",
        _ADMIN,
        lambda s: operation(
            "hand leadership to another node, answered once it moved (admin)",
            [*_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("the new leader")},
            "LeaderBody",
        ),
    ),
    Route(
        "GET",
        "/v1/cluster/members",
        "members",
        Rule(frozenset({_R, _A})),
        lambda s: operation(
            "the replicated membership as this node knows it (reader, admin)",
            [],
            responses(200, "Members", AUTH_ERRORS),
        ),
    ),
    Route(
        "POST",
        "/v1/cluster/members",
        "add_member",
        _ADMIN,
        lambda s: operation(
            "add a voter, one change at a time; 409 while another change is in flight or when "
            "the voters left connected and caught up would not be a majority (admin)",
            [*_RID],
            responses(200, "Members", WRITE_ERRORS),
            "MemberBody",
        ),
    ),
    Route(
        "DELETE",
        "/v1/cluster/members/{member}",
        "remove_member",
        _ADMIN,
        lambda s: operation(
            "remove a voter (id or raft address); a leader removed hands leadership over "
            "first; 409 as for adding (admin)",
            [P_MEMBER, *_RID],
            responses(200, "Members", WRITE_ERRORS),
        ),
    ),
    Route(
        "POST",
        "/v1/node/drain",
        "drain_node",
        _ADMIN,
        lambda s: operation(
            "this node stops taking claims, hands leadership over and exits 0 (admin)",
            [],
            {**responses(200, None, (400, *AUTH_ERRORS, 409, 503)), "200": plain("draining")},
            "Empty",
        ),
    ),
    Route(
        "POST",
        "/v1/cluster/backup",
        "backup",
        _ADMIN,
        lambda s: operation(
            "the state as of now, as a snapshot file for `raftq data restore`: the leader "
            "writes it after a barrier, so it holds every write acknowledged before the call "
            "(a follower answers 503 not_leader naming the leader) (admin)",
            [],
            {
                **responses(200, None, (400, *AUTH_ERRORS, 409, 503)),
                "200": {
                    "description": "the snapshot file; X-Raftq-Backup-Index and "
                    "X-Raftq-Backup-Term name the last log entry it holds",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
            },
            "Empty",
        ),
    ),
    Route(
        "POST",
        "/v1/cluster/version",
        "enable_version",
        _ADMIN,
        lambda s: operation(
            "enable a log version once every node applies it (admin)",
            [*_RID],
            {**responses(200, None, WRITE_ERRORS), "200": plain("the enabled log version")},
            "VersionBody",
        ),
    ),
)
