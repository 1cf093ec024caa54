"""Validation of request fields: bodies, path segments, query strings and headers.

Every problem raises ``raftq.errors.Rejected`` with reason ``invalid`` (HTTP 400) whose message
starts with the field's name
(``jobs[3].priority: ...``). Integers are exact: bools, floats and strings are refused where an
integer is expected, so ``true`` never becomes ``1`` and ``1.5`` never becomes ``1``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from raftq.core.limits import QUEUE_NAME_RE
from raftq.errors import Rejected

__all__ = [
    "INT64_MAX",
    "REQUEST_ID_RE",
    "Fields",
    "check_address",
    "check_int",
    "check_list",
    "check_queue",
    "check_str",
    "invalid",
    "parse_job_id",
    "parse_query",
    "parse_queue",
    "parse_request_id",
    "query_int",
]

INT64_MAX = 2**63 - 1
# Client request ids: short and plain, so derived ids (``<id>.<n>`` for the rounds of a
# long-poll claim) stay within the machine's MAX_REQUEST_ID_CHARS (128).
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_DIGITS_RE = re.compile(r"[0-9]{1,19}")


def invalid(field: str, message: str) -> Rejected:
    """A refusal ``invalid`` (HTTP 400) naming ``field`` (``"jobs[2].priority"``...)."""
    return Rejected("invalid", f"{field}: {message}", 400)


class Fields:
    """The fields of one JSON/msgpack object, taken one by one; ``done()`` refuses leftovers.

    Args:
        body: the decoded object (anything else is refused).
        where: the name of the object in messages, and the prefix of its fields' names.
    """

    def __init__(self, body: Any, where: str = "body") -> None:
        if not isinstance(body, dict):
            raise invalid(where, "expected an object")
        self._body: dict[Any, Any] = dict(body)
        self._prefix = "" if where == "body" else f"{where}."

    def name(self, field: str) -> str:
        """The full name of ``field`` in messages."""
        return self._prefix + field

    def has(self, field: str) -> bool:
        """True if ``field`` is present (even as null)."""
        return field in self._body

    def raw(self, field: str) -> Any:
        """Take ``field`` as is (``None`` if absent)."""
        return self._body.pop(field, None)

    def required(self, field: str) -> Any:
        """Take ``field``, which must be present (it may be null)."""
        if field not in self._body:
            raise invalid(self.name(field), "required")
        return self._body.pop(field)

    def opt_int(self, field: str, lo: int = 0, hi: int = INT64_MAX) -> int | None:
        """An optional integer in ``lo..hi`` (absent or null: ``None``)."""
        v = self._body.pop(field, None)
        if v is None:
            return None
        return check_int(v, self.name(field), lo, hi)

    def int_default(self, field: str, lo: int = 0, hi: int = INT64_MAX, *, default: int) -> int:
        """An integer in ``lo..hi``, ``default`` when absent or null."""
        v = self.opt_int(field, lo, hi)
        return default if v is None else v

    def req_int(self, field: str, lo: int = 0, hi: int = INT64_MAX) -> int:
        """A required integer in ``lo..hi``."""
        return check_int(self.required(field), self.name(field), lo, hi)

    def opt_str(self, field: str, max_chars: int, min_chars: int = 1) -> str | None:
        """An optional string of ``min_chars..max_chars`` characters."""
        v = self._body.pop(field, None)
        if v is None:
            return None
        return check_str(v, self.name(field), max_chars, min_chars)

    def req_str(self, field: str, max_chars: int, min_chars: int = 1) -> str:
        """A required string of ``min_chars..max_chars`` characters."""
        return check_str(self.required(field), self.name(field), max_chars, min_chars)

    def opt_list(self, field: str, max_items: int, min_items: int = 0) -> list[Any] | None:
        """An optional array of ``min_items..max_items`` elements."""
        v = self._body.pop(field, None)
        if v is None:
            return None
        return check_list(v, self.name(field), max_items, min_items)

    def req_list(self, field: str, max_items: int, min_items: int = 0) -> list[Any]:
        """A required array of ``min_items..max_items`` elements."""
        return check_list(self.required(field), self.name(field), max_items, min_items)

    def done(self) -> None:
        """Refuse any field not taken."""
        if self._body:
            names = sorted(str(k)[:64] for k in self._body)
            shown = ", ".join(self.name(n) for n in names[:5])
            raise Rejected("invalid", f"unknown field(s): {shown}", 400)


def check_int(v: Any, field: str, lo: int = 0, hi: int = INT64_MAX) -> int:
    """``v`` as an integer in ``lo..hi`` (bools and floats refused)."""
    if type(v) is not int:
        raise invalid(field, f"expected an integer, got {_type_name(v)}")
    if not lo <= v <= hi:
        raise invalid(field, f"must be in {lo}..{hi}, got {v}")
    return v


def check_str(v: Any, field: str, max_chars: int, min_chars: int = 1) -> str:
    """``v`` as a string of ``min_chars..max_chars`` characters."""
    if type(v) is not str:
        raise invalid(field, f"expected a string, got {_type_name(v)}")
    if not min_chars <= len(v) <= max_chars:
        raise invalid(field, f"must be {min_chars}..{max_chars} characters, got {len(v)}")
    return v


def check_list(v: Any, field: str, max_items: int, min_items: int = 0) -> list[Any]:
    """``v`` as an array of ``min_items..max_items`` elements."""
    if type(v) is not list:
        raise invalid(field, f"expected an array, got {_type_name(v)}")
    if not min_items <= len(v) <= max_items:
        raise invalid(field, f"must hold {min_items}..{max_items} items, got {len(v)}")
    return v


def check_address(v: str, field: str) -> str:
    """A ``host:port`` address (port 1-65535)."""
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid(field, f"expected host:port, got {v!r}")
    return v


def check_queue(v: Any, field: str) -> str:
    """``v`` as a queue name (``[A-Za-z0-9_.:-]{1,128}``)."""
    if type(v) is not str:
        raise invalid(field, f"expected a queue name, got {_type_name(v)}")
    if QUEUE_NAME_RE.fullmatch(v) is None:
        raise invalid(field, f"queue names match [A-Za-z0-9_.:-]{{1,128}}, got {v[:140]!r}")
    return v


def _type_name(v: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "an object", bytes: "bytes", type(None): "null"}
    return names.get(type(v), type(v).__name__)


def parse_queue(segment: str) -> str:
    """The ``{queue}`` path segment."""
    return check_queue(segment, "queue")


def parse_job_id(segment: str) -> int:
    """The ``{id}`` path segment: a decimal integer in 1..2**63-1."""
    if _DIGITS_RE.fullmatch(segment) is None or not 1 <= int(segment) <= INT64_MAX:
        raise invalid("id", f"expected a job id (a positive integer), got {segment[:40]!r}")
    return int(segment)


def parse_query(query: Mapping[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, refusing unknown and repeated ones."""
    out: dict[str, str] = {}
    for key, value in query.items():
        if key not in allowed:
            raise invalid(f"query.{key[:64]}", "unknown query parameter")
        if key in out:
            raise invalid(f"query.{key}", "given more than once")
        out[key] = value
    return out


def query_int(query: Mapping[str, str], key: str, lo: int, hi: int, default: int) -> int:
    """An integer query parameter in ``lo..hi``."""
    v = query.get(key)
    if v is None:
        return default
    if _DIGITS_RE.fullmatch(v) is None:
        raise invalid(f"query.{key}", f"expected a non-negative integer, got {v[:40]!r}")
    return check_int(int(v), f"query.{key}", lo, hi)


def parse_request_id(header: str | None) -> str | None:
    """The ``X-Request-Id`` header: ``[A-Za-z0-9_.:-]{1,100}`` or absent."""
    if header is None:
        return None
    if REQUEST_ID_RE.fullmatch(header) is None:
        raise invalid("X-Request-Id", "must match [A-Za-z0-9_.:-]{1,100}")
    return header
