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
import binascii
import json
import math
from typing import Any, Literal

import msgpack
from aiohttp import web

from raftq.server.errors import ApiError

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

Format = Literal["json", "msgpack"]

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"
_MSGPACK_TYPES = frozenset({MSGPACK_TYPE, "application/x-msgpack"})
_JSON_TYPES = frozenset({JSON_TYPE, "text/plain", ""})

MAX_DEPTH = 64  # nesting of a payload or result, and of a request body
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


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
            return msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_no_ext)
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError as e:
        raise ApiError(400, "malformed", "body: nested too deeply") from e
    except Exception as e:  # the decoders raise many unrelated types for bad input
        what = "msgpack" if fmt == "msgpack" else "JSON"
        raise ApiError(400, "malformed", f"body: not valid {what} ({_short(e)})") from e


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack ext type {code} is not supported")


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


# -- user values (payloads, results) --------------------------------------------------------


def _check_value(v: Any, fmt: Format, field: str, depth: int) -> Any:
    """``v`` checked (and, from JSON, ``{"$bytes"}`` turned into bytes); 400 if unusable."""
    if depth > MAX_DEPTH:
        raise ApiError(400, "invalid", f"{field}: nested deeper than {MAX_DEPTH}")
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        if not _INT_MIN <= v <= _INT_MAX:
            raise ApiError(400, "invalid", f"{field}: integer outside the 64-bit range")
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ApiError(400, "invalid", f"{field}: NaN and infinities are not allowed")
        return v
    if isinstance(v, bytes):
        return v
    if isinstance(v, list):
        return [_check_value(x, fmt, field, depth + 1) for x in v]
    if isinstance(v, dict):
        if fmt == "json" and len(v) == 1 and "$bytes" in v:
            return _from_base64(v["$bytes"], field)
        out: dict[str, Any] = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise ApiError(400, "invalid", f"{field}: map keys must be strings")
            out[k] = _check_value(x, fmt, field, depth + 1)
        return out
    raise ApiError(400, "invalid", f"{field}: unsupported value type {type(v).__name__}")


def _from_base64(s: Any, field: str) -> bytes:
    if not isinstance(s, str):
        raise ApiError(400, "invalid", f"{field}: $bytes must be a base64 string")
    try:
        return base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ApiError(400, "invalid", f"{field}: $bytes is not valid base64") from e


def pack_value(value: Any, fmt: Format, field: str, max_bytes: int) -> bytes:
    """A user value as the opaque bytes the core stores; 400 if unusable, 413 if too large."""
    checked = _check_value(value, fmt, field, 0)
    try:
        raw: bytes = msgpack.packb(checked, use_bin_type=True)
    except (OverflowError, ValueError, TypeError) as e:  # guarded above; kept as a backstop
        raise ApiError(400, "invalid", f"{field}: cannot be encoded ({_short(e)})") from e
    if len(raw) > max_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"{field}: {len(raw)} bytes encoded, the limit is {max_bytes}",
        )
    return raw


def unpack_value(raw: bytes | None) -> Any:
    """A stored payload or result back as the user's value (bytes that are not one value of
    msgpack, e.g. written by other code, come back as bytes)."""
    if raw is None:
        return None
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except Exception:  # not our encoding: hand the bytes back as they are
        return raw
