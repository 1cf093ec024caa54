"""User values (job payloads, ack results) as the opaque bytes the core stores, and back.

A value is any JSON value, or bytes: ``msgpack.packb(value)`` is what the core keeps. From
JSON an object whose only key is ``"$bytes"`` (a base64 string) is read as bytes, at any depth
(``raftq.server.wire`` writes bytes that way in JSON answers). Map keys must be strings; floats
must be finite; integers must fit in 64 bits; nesting is at most ``MAX_DEPTH`` deep. A value
that breaks a rule raises ``raftq.errors.Rejected`` (``invalid``, or ``payload_too_large``
beyond the size limit), naming the field.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Literal

import msgpack

from raftq.errors import Rejected
from raftq.service.fields import invalid

__all__ = ["MAX_DEPTH", "Format", "no_ext", "pack_value", "short", "unpack_value"]

Format = Literal["json", "msgpack"]

MAX_DEPTH = 64  # nesting of a payload or result, and of a request body
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def short(e: Exception) -> str:
    """The first line of ``e``'s message, at most 200 characters (for error messages)."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def no_ext(code: int, data: bytes) -> Any:
    """msgpack's ``ext_hook``: ext types are refused."""
    raise ValueError(f"msgpack ext type {code} is not supported")


def _check_value(v: Any, fmt: Format, field: str, depth: int) -> Any:
    """``v`` checked (and, from JSON, ``{"$bytes"}`` turned into bytes); 400 if unusable."""
    if depth > MAX_DEPTH:
        raise invalid(field, f"nested deeper than {MAX_DEPTH}")
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        if not _INT_MIN <= v <= _INT_MAX:
            raise invalid(field, "integer outside the 64-bit range")
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise invalid(field, "NaN and infinities are not allowed")
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
                raise invalid(field, "map keys must be strings")
            out[k] = _check_value(x, fmt, field, depth + 1)
        return out
    raise invalid(field, f"unsupported value type {type(v).__name__}")


def _from_base64(s: Any, field: str) -> bytes:
    if not isinstance(s, str):
        raise invalid(field, "$bytes must be a base64 string")
    try:
        return base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise invalid(field, "$bytes is not valid base64") from e


def pack_value(value: Any, fmt: Format, field: str, max_bytes: int) -> bytes:
    """A user value as the opaque bytes the core stores; 400 if unusable, 413 if too large."""
    checked = _check_value(value, fmt, field, 0)
    try:
        raw: bytes = msgpack.packb(checked, use_bin_type=True)
    except (OverflowError, ValueError, TypeError) as e:  # guarded above; kept as a backstop
        raise invalid(field, f"cannot be encoded ({short(e)})") from e
    if len(raw) > max_bytes:
        raise Rejected(
            "payload_too_large",
            f"{field}: {len(raw)} bytes encoded, the limit is {max_bytes}",
            413,
        )
    return raw


def unpack_value(raw: bytes | None) -> Any:
    """A stored payload or result back as the user's value (bytes that are not one value of
    msgpack, e.g. written by other code, come back as bytes)."""
    if raw is None:
        return None
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=no_ext)
    except Exception:  # not our encoding: hand the bytes back as they are
        return raw
