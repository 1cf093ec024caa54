"""Audit lines: one per admin action (pause, resume, purge, dead-letter requeue, membership),
logged by the node that executed it (the leader; a follower only relays), on the
``raftq.audit`` logger, with who did it.

Who: ``actor(request)``. There is no auth yet, so it is the client's address: the TCP peer,
or, on a request a follower relayed (``X-Raftq-Forwarded``), the client address the follower
put in ``X-Raftq-Client``. **Auth hook:** once an auth middleware identifies the caller, it
stores the token's name as ``request[PRINCIPAL_KEY]`` and every audit line names it instead
(the address stays in ``remote``). Until peers authenticate at the HTTP level, ``X-Raftq-Client``
is only as trustworthy as the loopback network the API is restricted to.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from raftq.log_context import AUDIT_LOGGER, FIELDS_ATTR
from raftq.server.forward import CLIENT_HEADER, FORWARDED_HEADER

__all__ = ["PRINCIPAL_KEY", "actor", "audit", "client_address"]

PRINCIPAL_KEY: Final = "raftq.principal"  # set by the (future) auth middleware: token name

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
    principal = request.get(PRINCIPAL_KEY)
    return str(principal) if principal else client_address(request)


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
