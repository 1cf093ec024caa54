"""Audit lines: one per admin action (pause, resume, purge, dead-letter requeue, membership),
logged by the node that executed it (the leader; a follower only relays), on the
``raftq.audit`` logger, with who did it.

Who: ``actor(request)``: the token's name when auth is on (``raftq.server.auth`` sets
``PRINCIPAL`` for the request it serves), else the client's address: the TCP peer, or, on a
request a follower relayed (``X-Raftq-Forwarded``), the client address the follower put in
``X-Raftq-Client``; the address is logged as ``remote`` either way. The auth guard refuses
``X-Raftq-Forwarded`` unless a node signed the request, so ``X-Raftq-Client`` is trustworthy.

``PRINCIPAL`` is a context variable, not request storage: set by the guard around its
handler, it holds exactly while that request is served (aiohttp runs each in its own task).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from aiohttp import web

from raftq.log_context import AUDIT_LOGGER, FIELDS_ATTR
from raftq.server.forward import CLIENT_HEADER, FORWARDED_HEADER

__all__ = ["PRINCIPAL", "actor", "audit", "client_address"]

# The authenticated caller's name (a token's name) while a request is served; None: auth off.
PRINCIPAL: ContextVar[str | None] = ContextVar("raftq_principal", default=None)

_audit = logging.getLogger(AUDIT_LOGGER)


def client_address(request: web.BaseRequest) -> str:
    """The address of the client the request comes from, through at most one forward."""
    if FORWARDED_HEADER in request.headers:
        relayed = request.headers.get(CLIENT_HEADER)
        if relayed:
            return relayed[:100]
    return request.remote or "unknown"


def actor(request: web.BaseRequest) -> str:
    """Who did it: the authenticated principal when auth exists, else the client address."""
    principal = PRINCIPAL.get()
    return principal if principal else client_address(request)


def audit(request: web.BaseRequest, action: str, **fields: object) -> None:
    """Log one audit line for ``action`` (``fields``: queue, counts, ids...)."""
    who = actor(request)
    entry: dict[str, object] = {
        "audit": action,
        "who": who,
        "remote": client_address(request),
        **fields,
    }
    details = " ".join(f"{k}={v}" for k, v in fields.items())
    _audit.info("%s by %s %s", action, who, details, extra={FIELDS_ATTR: entry})
