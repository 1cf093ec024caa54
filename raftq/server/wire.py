"""Wire codecs of the HTTP API: JSON by default, msgpack on request.

Format choice:
- request body: msgpack when ``Content-Type`` is ``application/msgpack`` (or
  ``application/x-msgpack``), JSON when it is ``application/json``, absent or ``text/plain``;
  anything else is 415. An empty body is ``{}``.
- response body: msgpack when ``Accept`` names msgpack, or when ``Accept`` is absent or ``*/*``
  and the request body was msgpack; JSON otherwise.

User values (job payloads and ack results) are stored in the core as opaque bytes:
``msgpack.packb(value)``. So a value is any JSON value, or bytes (native in msgpack). JSON has
no bytes: there a bytes value is written as the object ``{"$bytes": "<base64>"}``, in
responses and in requests alike (an object whose only key is ``"$bytes"`` with a base64 string
is read as bytes, at any depth of a payload or result). Map keys must be strings; floats must
be finite; integers must fit in 64 bits; nesting is at most ``MAX_DEPTH`` deep.

Nothing here uses pickle: untrusted input only ever meets ``json.loads`` and
``msgpack.unpackb`` (ext types refused).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgpack
from aiohttp import web

from raftq.server.errors import ApiError
from raftq.service.values import MAX_DEPTH, Format, no_ext, pack_value, short, unpack_value

__all__ = [
    "JSON_TYPE",
    "MAX_DEPTH",
    "MSGPACK_TYPE",
    "Format",
    "decode_body",
    "encode",
    "error_response",
    "pack_value",
    "request_format",
    "respond",
    "response_format",
    "unpack_value",
]

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"
_MSGPACK_TYPES = frozenset({MSGPACK_TYPE, "application/x-msgpack"})
_JSON_TYPES = frozenset({JSON_TYPE, "text/plain", ""})


# -- format negotiation -------------------------------------------------------------------


def request_format(content_type: str) -> Format:
    """The format of a request body from its ``Content-Type`` (415 if unsupported)."""
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct in _MSGPACK_TYPES:
        return "msgpack"
    if ct in _JSON_TYPES or ct.endswith("+json"):
        return "json"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"Content-Type must be {JSON_TYPE} or {MSGPACK_TYPE}, got {ct[:100]!r}",
    )


def response_format(request: web.BaseRequest) -> Format:
    """The format to answer ``request`` in (see the module docstring)."""
    accept = request.headers.get("Accept", "").lower()
    if any(t in accept for t in _MSGPACK_TYPES):
        return "msgpack"
    if accept.strip() in ("", "*/*"):
        ct = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ct in _MSGPACK_TYPES:
            return "msgpack"
    return "json"


# -- bodies ---------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_body(raw: bytes, fmt: Format) -> Any:
    """Decode an untrusted request body; 400 ``malformed`` on any failure. Empty is ``{}``."""
    if not raw.strip():
        return {}
    try:
        if fmt == "msgpack":
            return msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=no_ext)
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError as e:
        raise ApiError(400, "malformed", "body: nested too deeply") from e
    except Exception as e:  # the decoders raise many unrelated types for bad input
        what = "msgpack" if fmt == "msgpack" else "JSON"
        raise ApiError(400, "malformed", f"body: not valid {what} ({short(e)})") from e


def _json_default(v: Any) -> Any:
    return str(v)  # only reachable for stored values not written through this API


def _json_ready(v: Any) -> Any:
    """``v`` with every bytes value replaced by ``{"$bytes": "<base64>"}``."""
    if isinstance(v, bytes):
        return {"$bytes": base64.b64encode(v).decode("ascii")}
    if isinstance(v, dict):
        return {k if isinstance(k, str) else str(k): _json_ready(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_ready(x) for x in v]
    return v


def encode(obj: Any, fmt: Format) -> bytes:
    """Encode a response body."""
    if fmt == "msgpack":
        raw: bytes = msgpack.packb(obj, use_bin_type=True)
        return raw
    return json.dumps(
        _json_ready(obj),
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
        default=_json_default,
    ).encode("utf-8")


def respond(
    request: web.BaseRequest,
    obj: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A response holding ``obj`` in the format the request asked for."""
    fmt = response_format(request)
    return web.Response(
        body=encode(obj, fmt),
        status=status,
        content_type=MSGPACK_TYPE if fmt == "msgpack" else JSON_TYPE,
        headers=headers,
    )


def error_response(request: web.BaseRequest, err: ApiError) -> web.Response:
    """``{"error": {"code", "message"}}`` with the error's status (and ``Retry-After``)."""
    headers = {} if err.retry_after_s is None else {"Retry-After": str(err.retry_after_s)}
    body = {"error": {"code": err.code, "message": err.message}}
    return respond(request, body, err.status, headers)
