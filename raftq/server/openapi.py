"""The OpenAPI 3.0 document of the v1 API, as implemented (``GET /v1/openapi.json``).

The schemas are written here by hand; each route's operation is a row of the routes table
(``raftq.server.routes.ROUTES``), which the app mounts too. Kept honest by tests: the routes
of a running app and the document's operations must be the same set, and a fuzzer
(schemathesis) checks live answers against the documented statuses and bodies. Limits that
depend on the node's settings (body, payload, batch size, long-poll cap) are filled in from
its ``ServerSettings``.
"""

from __future__ import annotations

from typing import Any, Final

from raftq._version import __version__
from raftq.core.limits import (
    MAX_CLAIM,
    MAX_CLAIM_QUEUES,
    MAX_DEDUP_WINDOW_MS,
    MAX_DELAY_MS,
    MAX_ERROR_CHARS,
    MAX_KEY_CHARS,
    MAX_LEASE_MS,
    MAX_LOG_VERSION,
    MAX_MAX_ATTEMPTS,
    MAX_RATE_LIMIT,
    MAX_RATE_PERIOD_MS,
    MAX_RETENTION_MS,
    MAX_SCHEDULE_TEXT_CHARS,
    MAX_SLOTS,
    MAX_TIME_MS,
    MAX_WORKER_CHARS,
)
from raftq.server.settings import ServerSettings
from raftq.service.fields import INT64_MAX, REQUEST_ID_RE

__all__ = [
    "AUTH_ERRORS",
    "JSON",
    "P_ID",
    "P_QUEUE",
    "P_REQUEST_ID",
    "WRITE_ERRORS",
    "int_schema",
    "obj_schema",
    "openapi_document",
    "operation",
    "plain",
    "ref",
    "responses",
]

JSON: Final = "application/json"
_MSGPACK: Final = "application/msgpack"
_QUEUE_PATTERN: Final = "^[A-Za-z0-9_.:-]{1,128}$"

_ERRORS: Final = {
    400: "bad input: malformed body, unknown or invalid field (`malformed`, `invalid`)",
    401: "no token, or an unknown one; or node-to-node headers without a node's signature "
    "(`unauthorized`)",
    403: "the token's role or queue patterns do not allow this (`forbidden`)",
    404: "no such job or queue (`not_found`)",
    409: "stale fencing token, lease expired, job finished, too many queues, or an "
    "X-Request-Id already used for another operation (`request_id_reused`)",
    413: "body, payload or result larger than the node's limit (`body_too_large`, "
    "`payload_too_large`)",
    415: "a body neither JSON nor msgpack (`unsupported_media_type`)",
    429: "more requests than the token's rate (`rate_limited`, with Retry-After)",
    503: "no leader, not the leader, overloaded, outcome unknown, not ready (with Retry-After)",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def int_schema(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def obj_schema(
    props: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool
) -> dict[str, Any]:
    """An object schema. In a request (``closed``), an optional field may also be null: the
    handlers read null as absent."""
    if closed:
        props = {k: v if k in required else _nullable(v) for k, v in props.items()}
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


_ANY: Final[dict[str, Any]] = {
    "description": 'any JSON value (msgpack: any value; JSON bytes as {"$bytes": base64})',
    "nullable": True,
}


# Dependencies (docs/http-api.md): job ids, or "@N" for the N-th job of the same request.
_FLOW_FIELDS: Final[dict[str, Any]] = {
    "depends_on": {
        "type": "array",
        "items": {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^@[0-9]+$"}]},
    },
    "on_dependency_failure": {"type": "string", "enum": ["cancel", "run"]},
}


def _batch_schemas(new_job: dict[str, Any], max_jobs: int) -> dict[str, Any]:
    """``POST /v1/batches``: jobs (each with its ``queue``, or the body's) and callbacks."""
    callback = obj_schema(
        {"queue": {"type": "string", "pattern": _QUEUE_PATTERN}, "payload": _ANY},
        ("queue", "payload"),
        closed=True,
    )
    job = {**new_job, "properties": {**new_job["properties"], "queue": {"type": "string"}}}
    return {
        "BatchBody": obj_schema(
            {
                "queue": {"type": "string", "pattern": _QUEUE_PATTERN},
                "jobs": {"type": "array", "items": job, "minItems": 1, "maxItems": max_jobs},
                "on_complete": callback,
                "on_success": callback,
                "on_death": callback,
            },
            ("jobs",),
            closed=True,
        ),
    }


def _schemas(s: ServerSettings) -> dict[str, Any]:
    new_job = obj_schema(
        {
            "payload": _ANY,
            "priority": int_schema(0, 9),
            "delay_ms": int_schema(0, MAX_DELAY_MS),
            "run_at_ms": int_schema(0, MAX_TIME_MS),
            "key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
            "max_attempts": int_schema(1, MAX_MAX_ATTEMPTS),
            "lease_ms": int_schema(1, MAX_LEASE_MS),
            "group": {
                "type": "string",
                "pattern": _QUEUE_PATTERN,
                "description": "the job's fairness group in its queue (log version 3)",
            },
            **_FLOW_FIELDS,
        },
        ("payload",),
        closed=True,
    )
    # delay_ms and run_at_ms exclude each other (400 when both are set)
    new_job["not"] = {
        "properties": {"delay_ms": {"type": "integer"}, "run_at_ms": {"type": "integer"}},
        "required": ["delay_ms", "run_at_ms"],
    }
    claim_fields = {
        "worker": {"type": "string", "minLength": 1, "maxLength": MAX_WORKER_CHARS},
        "max": int_schema(1, MAX_CLAIM),
        "lease_ms": int_schema(1, MAX_LEASE_MS),
        "wait_ms": {
            **int_schema(0, INT64_MAX),
            "description": f"long-poll; this node caps it at {s.max_wait_ms} ms",
        },
    }
    queue_name = {"type": "string", "pattern": _QUEUE_PATTERN}
    rate = obj_schema(
        {
            "limit": int_schema(1, MAX_RATE_LIMIT),
            "period_ms": int_schema(1, MAX_RATE_PERIOD_MS),
        },
        ("limit", "period_ms"),
        closed=True,
    )
    integer = {"type": "integer"}
    return {
        "Error": obj_schema(
            {
                "error": obj_schema(
                    {"code": {"type": "string"}, "message": {"type": "string"}},
                    ("code", "message"),
                    closed=True,
                )
            },
            ("error",),
            closed=True,
        ),
        "NewJob": new_job,
        **_batch_schemas(new_job, s.max_batch_jobs),
        "EnqueueBody": {
            "oneOf": [
                new_job,
                obj_schema(
                    {
                        "jobs": {
                            "type": "array",
                            "items": new_job,
                            "minItems": 1,
                            "maxItems": s.max_batch_jobs,
                        }
                    },
                    ("jobs",),
                    closed=True,
                ),
            ]
        },
        "Enqueued": {
            "oneOf": [
                obj_schema(
                    {"id": integer, "existing": {"type": "boolean"}},
                    ("id", "existing"),
                    closed=True,
                ),
                obj_schema(
                    {
                        "ids": {"type": "array", "items": integer},
                        "existing": {"type": "array", "items": {"type": "boolean"}},
                    },
                    ("ids", "existing"),
                    closed=True,
                ),
            ]
        },
        "ClaimBody": obj_schema(claim_fields, ("worker",), closed=True),
        "ClaimManyBody": obj_schema(
            {
                "queues": {
                    "type": "array",
                    "items": queue_name,
                    "minItems": 1,
                    "maxItems": MAX_CLAIM_QUEUES,
                },
                **claim_fields,
            },
            ("queues", "worker"),
            closed=True,
        ),
        "Lease": obj_schema(
            {
                "id": integer,
                "queue": {"type": "string"},
                "payload": _ANY,
                "priority": integer,
                "attempt": integer,
                "token": integer,
                "lease_expires_ms": integer,
                "checkpoint": _ANY,
            },
            ("id", "queue", "payload", "priority", "attempt", "token", "lease_expires_ms"),
            closed=False,
        ),
        "Claimed": obj_schema(
            {"jobs": {"type": "array", "items": ref("Lease")}}, ("jobs",), closed=True
        ),
        "HeartbeatBody": obj_schema(
            {
                "token": int_schema(0, INT64_MAX),
                "lease_ms": int_schema(1, MAX_LEASE_MS),
                "progress": _ANY,
                "checkpoint": _ANY,
            },
            ("token",),
            closed=True,
        ),
        "Extended": obj_schema(
            {"id": integer, "lease_expires_ms": integer, "cancel_requested": {"type": "boolean"}},
            ("id", "lease_expires_ms", "cancel_requested"),
            closed=False,
        ),
        "AckBody": obj_schema(
            {"token": int_schema(0, INT64_MAX), "result": _ANY}, ("token",), closed=True
        ),
        "AckManyBody": obj_schema(
            {
                "acks": {
                    "type": "array",
                    "items": obj_schema(
                        {
                            "id": int_schema(1, INT64_MAX),
                            "token": int_schema(0, INT64_MAX),
                            "result": _ANY,
                        },
                        ("id", "token"),
                        closed=True,
                    ),
                    "minItems": 1,
                    "maxItems": s.max_batch_jobs,
                }
            },
            ("acks",),
            closed=True,
        ),
        "AckedMany": obj_schema(
            {
                "results": {
                    "type": "array",
                    "items": obj_schema(
                        {
                            "id": integer,
                            "state": {"type": "string", "enum": ["succeeded"]},
                            "error": obj_schema(
                                {
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                    "status": integer,
                                },
                                ("code", "message", "status"),
                                closed=True,
                            ),
                        },
                        ("id",),
                        closed=True,
                    ),
                }
            },
            ("results",),
            closed=True,
        ),
        "NackBody": obj_schema(
            {
                "token": int_schema(0, INT64_MAX),
                "error": _nullable(
                    {"type": "string", "description": f"kept up to {MAX_ERROR_CHARS} characters"}
                ),
                "retry_in_ms": int_schema(0, MAX_DELAY_MS),
            },
            ("token",),
            closed=True,
        ),
        "ReleaseBody": obj_schema({"token": int_schema(0, INT64_MAX)}, ("token",), closed=True),
        "Empty": obj_schema({}, closed=True),
        "MemberBody": obj_schema(
            {
                "id": {"type": "string"},
                "api": {"type": "string", "description": "host:port of its HTTP API"},
                "raft": {"type": "string", "description": "host:port of its raft port"},
            },
            ("id", "api", "raft"),
            closed=True,
        ),
        "Members": obj_schema(
            {
                "members": {
                    "type": "array",
                    "items": obj_schema(
                        {
                            "id": {"type": "string"},
                            "api": _nullable({"type": "string"}),
                            "raft": {"type": "string"},
                            "voter": {"type": "boolean"},
                        },
                        ("id", "api", "raft", "voter"),
                        closed=False,
                    ),
                }
            },
            ("members",),
            closed=False,
        ),
        "VersionBody": obj_schema(
            {"version": int_schema(1, MAX_LOG_VERSION)},
            closed=True,
        ),
        "LeaderBody": obj_schema(
            {"to": {"type": "string", "description": "a node id; absent: any caught-up node"}},
            closed=True,
        ),
        "ConfigureBody": obj_schema(
            {
                "dedup_window_ms": int_schema(0, MAX_DEDUP_WINDOW_MS),
                "retention_ms": int_schema(0, MAX_RETENTION_MS),
            },
            closed=True,
        ),
        "Configured": obj_schema(
            {
                "queue": {"type": "string"},
                "dedup_window_ms": integer,
                "retention_ms": integer,
            },
            ("queue", "dedup_window_ms", "retention_ms"),
            closed=False,
        ),
        "LimitsBody": obj_schema(
            {
                "concurrency": int_schema(1, MAX_SLOTS),
                "rate": rate,
                "group_concurrency": int_schema(1, MAX_SLOTS),
                "group_rate": rate,
            },
            closed=True,
        ),
        "Limits": obj_schema(
            {
                "queue": {"type": "string"},
                "concurrency": _nullable(integer),
                "rate": _nullable(rate),
                "group_concurrency": _nullable(integer),
                "group_rate": _nullable(rate),
                "usage": _nullable(
                    {
                        "type": "object",
                        "description": "slots_used, starts_in_window, rate_blocked, groups, "
                        "groups_ready, groups_waiting, at_ms",
                    }
                ),
            },
            ("queue", "concurrency", "rate", "group_concurrency", "group_rate"),
            closed=False,
        ),
        "RequeueBody": obj_schema(
            {"ids": {"type": "array", "items": int_schema(1, INT64_MAX), "minItems": 1}},
            closed=True,
        ),
        **_schedule_schemas(queue_name, integer),
        "Job": obj_schema(
            {
                "id": integer,
                "queue": {"type": "string"},
                "state": {"type": "string"},
                "priority": integer,
                "attempts": integer,
                "max_attempts": integer,
                "payload": _ANY,
                "result": _ANY,
                "error": _nullable({"type": "string"}),
                "run_at_ms": integer,
                "created_ms": integer,
                "progress": _ANY,
                "checkpoint": _ANY,
                "cancel_requested": {"type": "boolean"},
            },
            (
                "id",
                "queue",
                "state",
                "priority",
                "attempts",
                "max_attempts",
                "payload",
                "result",
                "error",
                "run_at_ms",
                "created_ms",
            ),
            closed=False,
        ),
        "Queue": obj_schema(
            {
                "queue": {"type": "string"},
                "paused": {"type": "boolean"},
                "depth": {"type": "object", "additionalProperties": integer},
                "by_priority": {"type": "object", "additionalProperties": integer},
            },
            ("queue", "paused", "depth", "by_priority"),
            closed=False,
        ),
        "Cluster": obj_schema(
            {
                "self": obj_schema(
                    {
                        "id": {"type": "string"},
                        "role": {"type": "string"},
                        "term": integer,
                        "commit_index": integer,
                        "applied_index": integer,
                        "digest": {"type": "string"},
                    },
                    ("id", "role", "term", "commit_index", "applied_index", "digest"),
                    closed=False,
                ),
                "leader": _nullable({"type": "string"}),
                "nodes": {"type": "array", "items": {"type": "object"}},
                "members": {"type": "array", "items": {"type": "object"}},
                "membership_mismatch": _nullable({"type": "string"}),
            },
            ("self", "leader", "nodes"),
            closed=False,
        ),
    }


def _schedule_schemas(queue_name: dict[str, Any], integer: dict[str, Any]) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": MAX_SCHEDULE_TEXT_CHARS}
    fields = {
        "queue": queue_name,
        "every_ms": {**int_schema(100, MAX_DELAY_MS), "description": "give every_ms or cron"},
        "cron": {**text, "description": "5 fields: minute hour day-of-month month day-of-week"},
        "tz": {**text, "description": "IANA time zone of cron (default UTC)"},
        "payload": _ANY,
        "priority": int_schema(0, 9),
        "max_attempts": int_schema(1, MAX_MAX_ATTEMPTS),
        "lease_ms": int_schema(1, MAX_LEASE_MS),
        "overlap": {"type": "string", "enum": ["allow", "skip"]},
        "catchup_ms": int_schema(0, MAX_DELAY_MS),
        "paused": {"type": "boolean"},
    }
    nullable_int = _nullable(integer)
    shown = {
        **fields,
        "name": {"type": "string"},
        "every_ms": nullable_int,
        "cron": _nullable({"type": "string"}),
        "tz": _nullable({"type": "string"}),
        "max_attempts": nullable_int,
        "lease_ms": nullable_int,
        "last_fire_ms": nullable_int,
        "next_fire_ms": nullable_int,
        "last_slot_ms": integer,
        "fires": integer,
        "skipped": integer,
    }
    return {
        "ScheduleBody": obj_schema(fields, ("queue", "payload"), closed=True),
        "Schedule": obj_schema(
            shown, ("name", "queue", "paused", "last_fire_ms", "next_fire_ms"), closed=False
        ),
    }


def _body(schema: str, *, required: bool) -> dict[str, Any]:
    return {
        "required": required,
        "description": "JSON, or msgpack with Content-Type: application/msgpack; an empty "
        "body is read as {}",
        "content": {JSON: {"schema": ref(schema)}, _MSGPACK: {"schema": ref(schema)}},
    }


def responses(ok: int, schema: str | None, errors: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if schema is not None:
        content = {JSON: {"schema": ref(schema)}, _MSGPACK: {"schema": ref(schema)}}
        out[str(ok)] = {"description": "success", "content": content}
    err = {JSON: {"schema": ref("Error")}, _MSGPACK: {"schema": ref("Error")}}
    for status in errors:
        out[str(status)] = {"description": _ERRORS[status], "content": err}
    return out


P_QUEUE: Final = {
    "name": "queue",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": _QUEUE_PATTERN},
}
P_ID: Final = {"name": "id", "in": "path", "required": True, "schema": int_schema(1, INT64_MAX)}
P_REQUEST_ID: Final = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "makes a write idempotent: a retry with the same id is applied once",
    "schema": {"type": "string", "pattern": f"^{REQUEST_ID_RE.pattern}$"},
}

AUTH_ERRORS: Final = (401, 403, 429)
# Any write may answer 404 and 409 too: a repeated X-Request-Id answers with the first answer
# to that id, and 409 request_id_reused when the same caller used it for another operation.
WRITE_ERRORS: Final = (400, *AUTH_ERRORS, 404, 409, 413, 415, 503)


# The request bodies without a required field (an empty body is read as {}).
_OPTIONAL_BODIES: Final = (
    "Empty",
    "RequeueBody",
    "LeaderBody",
    "VersionBody",
    "ConfigureBody",
    "LimitsBody",
)


def operation(
    summary: str,
    params: list[dict[str, Any]],
    responses: dict[str, Any],
    body: str | None = None,
    *,
    open_route: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    if body is not None:  # bodies with required fields are required; the others may be empty
        op["requestBody"] = _body(body, required=body not in _OPTIONAL_BODIES)
    if open_route:
        op["security"] = []
    return op


def _paths(s: ServerSettings) -> dict[str, dict[str, Any]]:
    """Every route's operation, from the routes table."""
    from raftq.server.routes import ROUTES  # noqa: PLC0415 - the rows use this module's parts

    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = route.doc(s)
    return paths


def plain(description: str) -> dict[str, Any]:
    schema = {"type": "object"}
    return {
        "description": description,
        "content": {JSON: {"schema": schema}, _MSGPACK: {"schema": schema}},
    }


def openapi_document(prefix: str, settings: ServerSettings) -> dict[str, Any]:
    """The document for the API mounted under ``prefix`` with ``settings``' limits."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "raftq",
            "version": __version__,
            "description": 'Every error is {"error": {"code", "message"}}. Writes reach '
            "any node (a follower forwards to the leader). With tokens configured, send "
            "Authorization: Bearer <token>.",
        },
        "servers": [{"url": prefix or "/"}],
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": _paths(settings),
    }
