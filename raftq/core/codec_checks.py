"""Type checks of decoded msgpack values, for the codecs: each returns the value or raises
``CodecError`` naming the field (bool is not an int here)."""

from __future__ import annotations

from typing import Any

from raftq.core.errors import CodecError

__all__ = [
    "check_bool",
    "check_bytes",
    "check_fields",
    "check_int",
    "check_list",
    "check_opt_bytes",
    "check_opt_int",
    "check_opt_str",
    "check_str",
]


def check_int(v: Any, what: str) -> int:
    if type(v) is not int:
        raise CodecError(f"{what}: expected an integer")
    return v


def check_opt_int(v: Any, what: str) -> int | None:
    return None if v is None else check_int(v, what)


def check_str(v: Any, what: str) -> str:
    if type(v) is not str:
        raise CodecError(f"{what}: expected a string")
    return v


def check_opt_str(v: Any, what: str) -> str | None:
    return None if v is None else check_str(v, what)


def check_bool(v: Any, what: str) -> bool:
    if type(v) is not bool:
        raise CodecError(f"{what}: expected a boolean")
    return v


def check_bytes(v: Any, what: str) -> bytes:
    if type(v) is not bytes:
        raise CodecError(f"{what}: expected bytes")
    return v


def check_opt_bytes(v: Any, what: str) -> bytes | None:
    return None if v is None else check_bytes(v, what)


def check_list(v: Any, what: str, n: int | None = None) -> list[Any]:
    if type(v) is not list or (n is not None and len(v) != n):
        raise CodecError(f"{what}: expected an array" + ("" if n is None else f" of {n}"))
    return v


def check_fields(f: list[Any], n: int, what: str) -> list[Any]:
    if len(f) != n:
        raise CodecError(f"{what}: expected {n} fields, got {len(f)}")
    return f
