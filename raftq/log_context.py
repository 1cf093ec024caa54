"""What log lines carry besides their message: the request being served, audit fields.

The library only *sets* context here; it never configures logging (``raftq.logs``, called by
the CLI, does, and prints these values on every line). An application embedding raftq can
read ``current_request_id()`` in its own formatter the same way.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["AUDIT_LOGGER", "FIELDS_ATTR", "current_request_id", "request_scope"]

# Admin actions are logged on this logger, one line each, with their fields under FIELDS_ATTR.
AUDIT_LOGGER: Final = "raftq.audit"
# ``logger.info(msg, extra={FIELDS_ATTR: {...}})``: structured fields of a line (JSON keys).
FIELDS_ATTR: Final = "raftq_fields"

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "raftq_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the HTTP request being served by this task, if any."""
    return _REQUEST_ID.get()


@contextmanager
def request_scope(request_id: str) -> Iterator[None]:
    """Lines logged inside the block (by this task) carry ``request_id``."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)
