"""Request and response bodies of the client: msgpack or JSON, and bytes inside JSON.

JSON has no bytes type: the API writes a bytes value as ``{"$bytes": "<base64>"}`` (see
``docs/http-api.md``), and this module converts both ways so callers always see ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import msgpack

__all__ = ["JSON_TYPE", "MSGPACK_TYPE", "decode", "encode"]

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"
OCTET_TYPE = "application/octet-stream"  # a file (a backup), returned as bytes


def _to_json(v: Any) -> Any:
    if isinstance(v, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, dict):
        return {k: _to_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_to_json(x) for x in v]
    return v


def _from_json(v: Any) -> Any:
    if isinstance(v, dict):
        if len(v) == 1 and isinstance(v.get("$bytes"), str):
            try:
                return base64.b64decode(v["$bytes"].encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                return v
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def encode(body: Any, use_msgpack: bool) -> tuple[bytes, str]:
    """``body`` encoded, and its content type."""
    if use_msgpack:
        raw: bytes = msgpack.packb(body, use_bin_type=True)
        return raw, MSGPACK_TYPE
    text = json.dumps(_to_json(body), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8"), JSON_TYPE


def decode(raw: bytes, content_type: str) -> Any:
    """A response body by its content type (``ValueError`` if it does not decode)."""
    if not raw:
        return None
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct == OCTET_TYPE:  # a file (a backup): the bytes as they are
        return raw
    if ct in (MSGPACK_TYPE, "application/x-msgpack"):
        try:
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception as e:  # msgpack raises many unrelated types for bad input
            raise ValueError(f"not valid msgpack: {e}") from e
    return _from_json(json.loads(raw))
