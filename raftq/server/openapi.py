"""The OpenAPI 3.0 document of the v1 API, as implemented (``GET /v1/openapi.json``).

Written by hand next to the handlers (not generated from them), and kept honest by tests:
the routes of a running app and the document's operations must be the same set, and a fuzzer
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
    MAX_DELAY_MS,
    MAX_ERROR_CHARS,
    MAX_KEY_CHARS,
    MAX_LEASE_MS,
    MAX_MAX_ATTEMPTS,
    MAX_TIME_MS,
    MAX_WORKER_CHARS,
)
from raftq.server.settings import ServerSettings
from raftq.service.fields import INT64_MAX, REQUEST_ID_RE

__all__ = ["openapi_document"]

_JSON: Final = "application/json"
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


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _int(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(props: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool) -> dict[str, Any]:
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


def _schemas(s: ServerSettings) -> dict[str, Any]:
    new_job = _obj(
        {
            "payload": _ANY,
            "priority": _int(0, 9),
            "delay_ms": _int(0, MAX_DELAY_MS),
            "run_at_ms": _int(0, MAX_TIME_MS),
            "key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
            "max_attempts": _int(1, MAX_MAX_ATTEMPTS),
            "lease_ms": _int(1, MAX_LEASE_MS),
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
        "max": _int(1, MAX_CLAIM),
        "lease_ms": _int(1, MAX_LEASE_MS),
        "wait_ms": {
            **_int(0, INT64_MAX),
            "description": f"long-poll; this node caps it at {s.max_wait_ms} ms",
        },
    }
    queue_name = {"type": "string", "pattern": _QUEUE_PATTERN}
    integer = {"type": "integer"}
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {"code": {"type": "string"}, "message": {"type": "string"}},
                    ("code", "message"),
                    closed=True,
                )
            },
            ("error",),
            closed=True,
        ),
        "NewJob": new_job,
        "EnqueueBody": {
            "oneOf": [
                new_job,
                _obj(
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
                _obj(
                    {"id": integer, "existing": {"type": "boolean"}},
                    ("id", "existing"),
                    closed=True,
                ),
                _obj(
                    {
                        "ids": {"type": "array", "items": integer},
                        "existing": {"type": "array", "items": {"type": "boolean"}},
                    },
                    ("ids", "existing"),
                    closed=True,
                ),
            ]
        },
        "ClaimBody": _obj(claim_fields, ("worker",), closed=True),
        "ClaimManyBody": _obj(
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
        "Lease": _obj(
            {
                "id": integer,
                "queue": {"type": "string"},
                "payload": _ANY,
                "priority": integer,
                "attempt": integer,
                "token": integer,
                "lease_expires_ms": integer,
            },
            ("id", "queue", "payload", "priority", "attempt", "token", "lease_expires_ms"),
            closed=False,
        ),
        "Claimed": _obj(
            {"jobs": {"type": "array", "items": _ref("Lease")}}, ("jobs",), closed=True
        ),
        "HeartbeatBody": _obj(
            {"token": _int(0, INT64_MAX), "lease_ms": _int(1, MAX_LEASE_MS)},
            ("token",),
            closed=True,
        ),
        "AckBody": _obj({"token": _int(0, INT64_MAX), "result": _ANY}, ("token",), closed=True),
        "AckManyBody": _obj(
            {
                "acks": {
                    "type": "array",
                    "items": _obj(
                        {"id": _int(1, INT64_MAX), "token": _int(0, INT64_MAX), "result": _ANY},
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
        "AckedMany": _obj(
            {
                "results": {
                    "type": "array",
                    "items": _obj(
                        {
                            "id": integer,
                            "state": {"type": "string", "enum": ["succeeded"]},
                            "error": _obj(
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
        "NackBody": _obj(
            {
                "token": _int(0, INT64_MAX),
                "error": _nullable(
                    {"type": "string", "description": f"kept up to {MAX_ERROR_CHARS} characters"}
                ),
                "retry_in_ms": _int(0, MAX_DELAY_MS),
            },
            ("token",),
            closed=True,
        ),
        "Empty": _obj({}, closed=True),
        "RequeueBody": _obj(
            {"ids": {"type": "array", "items": _int(1, INT64_MAX), "minItems": 1}},
            closed=True,
        ),
        "Job": _obj(
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
        "Queue": _obj(
            {
                "queue": {"type": "string"},
                "paused": {"type": "boolean"},
                "depth": {"type": "object", "additionalProperties": integer},
                "by_priority": {"type": "object", "additionalProperties": integer},
            },
            ("queue", "paused", "depth", "by_priority"),
            closed=False,
        ),
        "Cluster": _obj(
            {
                "self": _obj(
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
            },
            ("self", "leader", "nodes"),
            closed=False,
        ),
    }


def _body(schema: str, *, required: bool) -> dict[str, Any]:
    return {
        "required": required,
        "description": "JSON, or msgpack with Content-Type: application/msgpack; an empty "
        "body is read as {}",
        "content": {_JSON: {"schema": _ref(schema)}, _MSGPACK: {"schema": _ref(schema)}},
    }


def _responses(ok: int, schema: str | None, errors: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if schema is not None:
        content = {_JSON: {"schema": _ref(schema)}, _MSGPACK: {"schema": _ref(schema)}}
        out[str(ok)] = {"description": "success", "content": content}
    err = {_JSON: {"schema": _ref("Error")}, _MSGPACK: {"schema": _ref("Error")}}
    for status in errors:
        out[str(status)] = {"description": _ERRORS[status], "content": err}
    return out


_P_QUEUE: Final = {
    "name": "queue",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": _QUEUE_PATTERN},
}
_P_ID: Final = {"name": "id", "in": "path", "required": True, "schema": _int(1, INT64_MAX)}
_P_REQUEST_ID: Final = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "makes a write idempotent: a retry with the same id is applied once",
    "schema": {"type": "string", "pattern": f"^{REQUEST_ID_RE.pattern}$"},
}

_AUTH: Final = (401, 403, 429)
# Any write may answer 404 and 409 too: a repeated X-Request-Id answers with the first answer
# to that id, and 409 request_id_reused when the same caller used it for another operation.
_WRITE: Final = (400, *_AUTH, 404, 409, 413, 415, 503)


def _op(
    summary: str,
    params: list[dict[str, Any]],
    responses: dict[str, Any],
    body: str | None = None,
    *,
    open_route: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    if body is not None:  # bodies with required fields are required; the others may be empty
        op["requestBody"] = _body(body, required=body not in ("Empty", "RequeueBody"))
    if open_route:
        op["security"] = []
    return op


def _paths(s: ServerSettings) -> dict[str, dict[str, Any]]:
    w = [_P_REQUEST_ID]
    read = (400, *_AUTH, 404)
    return {
        "/": {
            "get": _op(
                "JSON index of the routes (browsers get the dashboard)",
                [],
                {
                    "200": {
                        "description": "index",
                        "content": {
                            _JSON: {"schema": {"type": "object"}},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    }
                },
                open_route=True,
            )
        },
        "/healthz": {
            "get": _op(
                "liveness",
                [],
                {
                    "200": {
                        "description": "serving",
                        "content": {_JSON: {"schema": {"type": "object"}}},
                    }
                },
                open_route=True,
            )
        },
        "/readyz": {
            "get": _op(
                "has a leader and caught up",
                [],
                {
                    **_responses(200, None, (503,)),
                    "200": {
                        "description": "ready",
                        "content": {_JSON: {"schema": {"type": "object"}}},
                    },
                },
                open_route=True,
            )
        },
        "/v1/clock": {
            "get": _op(
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
                    **_responses(200, None, (400,)),
                    "200": {
                        "description": "node id, wall_ms, mac (HMAC with the cluster secret)",
                        "content": {_JSON: {"schema": {"type": "object"}}},
                    },
                },
                open_route=True,
            )
        },
        "/v1/openapi.json": {
            "get": _op(
                "this document",
                [],
                {
                    "200": {
                        "description": "OpenAPI 3.0",
                        "content": {_JSON: {"schema": {"type": "object"}}},
                    }
                },
                open_route=True,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus text format (reader or admin, or open by config)",
                [],
                {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_responses(200, None, _AUTH),
                },
            )
        },
        "/v1/queues/{queue}/jobs": {
            "post": _op(
                f"enqueue one job or up to {s.max_batch_jobs} (producer, admin); payloads up to "
                f"{s.max_payload_bytes} bytes, bodies up to {s.max_body_bytes}",
                [_P_QUEUE, *w],
                _responses(201, "Enqueued", _WRITE),
                "EnqueueBody",
            )
        },
        "/v1/queues/{queue}/claim": {
            "post": _op(
                "lease ready jobs of a queue, long-polling up to wait_ms (worker, admin)",
                [_P_QUEUE, *w],
                _responses(200, "Claimed", _WRITE),
                "ClaimBody",
            )
        },
        "/v1/claim": {
            "post": _op(
                "lease ready jobs of several queues (worker, admin)",
                [*w],
                _responses(200, "Claimed", _WRITE),
                "ClaimManyBody",
            )
        },
        "/v1/jobs/{id}/heartbeat": {
            "post": _op(
                "extend a lease (worker, admin)",
                [_P_ID, *w],
                {**_responses(200, None, _WRITE), "200": _plain("lease extended")},
                "HeartbeatBody",
            )
        },
        "/v1/jobs/{id}/ack": {
            "post": _op(
                "complete a leased job (worker, admin)",
                [_P_ID, *w],
                {**_responses(200, None, _WRITE), "200": _plain("succeeded")},
                "AckBody",
            )
        },
        "/v1/ack": {
            "post": _op(
                "complete several leased jobs, each with its own outcome (worker, admin)",
                [*w],
                _responses(200, "AckedMany", _WRITE),
                "AckManyBody",
            )
        },
        "/v1/jobs/{id}/nack": {
            "post": _op(
                "fail a leased job: retried later or dead (worker, admin)",
                [_P_ID, *w],
                {**_responses(200, None, _WRITE), "200": _plain("queued or dead")},
                "NackBody",
            )
        },
        "/v1/jobs/{id}/cancel": {
            "post": _op(
                "cancel a job that is not finished (producer, admin)",
                [_P_ID, *w],
                {**_responses(200, None, _WRITE), "200": _plain("cancelled")},
                "Empty",
            )
        },
        "/v1/jobs/{id}": {
            "get": _op(
                "a job (reader, producer, admin)",
                [
                    _P_ID,
                    {
                        "name": "consistency",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["local", "linearizable"]},
                    },
                ],
                _responses(200, "Job", (*read, 503)),
            )
        },
        "/v1/queues": {
            "get": _op(
                "every queue the token may see (reader, admin)",
                [],
                {
                    **_responses(200, None, (400, *_AUTH)),
                    "200": {
                        "description": "queues",
                        "content": {
                            _JSON: {
                                "schema": _obj(
                                    {"queues": {"type": "array", "items": _ref("Queue")}},
                                    ("queues",),
                                    closed=True,
                                )
                            }
                        },
                    },
                },
            )
        },
        "/v1/queues/{queue}": {
            "get": _op(
                "a queue's depth and counters (reader, admin)",
                [_P_QUEUE],
                _responses(200, "Queue", read),
            )
        },
        "/v1/queues/{queue}/dead": {
            "get": _op(
                "dead letters, oldest first (reader, admin)",
                [
                    _P_QUEUE,
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": _int(1, MAX_CLAIM),
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": _int(0, INT64_MAX),
                    },
                ],
                {**_responses(200, None, read), "200": _plain("a page of dead jobs")},
            )
        },
        "/v1/queues/{queue}/pause": {
            "post": _op(
                "pause claims (admin)",
                [_P_QUEUE, *w],
                {**_responses(200, None, _WRITE), "200": _plain("paused")},
                "Empty",
            )
        },
        "/v1/queues/{queue}/resume": {
            "post": _op(
                "resume claims (admin)",
                [_P_QUEUE, *w],
                {**_responses(200, None, _WRITE), "200": _plain("resumed")},
                "Empty",
            )
        },
        "/v1/queues/{queue}/purge": {
            "post": _op(
                "drop every unfinished job (admin)",
                [_P_QUEUE, *w],
                {**_responses(200, None, _WRITE), "200": _plain("purged")},
                "Empty",
            )
        },
        "/v1/queues/{queue}/dead/requeue": {
            "post": _op(
                "requeue dead letters, all or by id (admin)",
                [_P_QUEUE, *w],
                {**_responses(200, None, _WRITE), "200": _plain("requeued")},
                "RequeueBody",
            )
        },
        "/v1/cluster": {
            "get": _op(
                "this node's view of the cluster (reader, admin)",
                [
                    {
                        "name": "peers",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                ],
                _responses(200, "Cluster", (400, *_AUTH)),
            )
        },
    }


def _plain(description: str) -> dict[str, Any]:
    schema = {"type": "object"}
    return {
        "description": description,
        "content": {_JSON: {"schema": schema}, _MSGPACK: {"schema": schema}},
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
