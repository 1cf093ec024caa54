"""Request ids as the state machine keys them: scoped by the caller.

The machine remembers each request id's first answer for ``REQUEST_WINDOW_MS``. The ids are
not secret (responses echo them, logs carry them), so with tokens configured the id a caller
sends is prefixed with its principal's scope, ``<16 hex digits of a hash of the token's
name>:``: another principal sending the same ``X-Request-Id`` names another record, and gets
its own answer. The node that executes a request scopes its id: a follower forwards the header
as it came, and the leader derives the same principal from the same token. With auth off
there is one (anonymous) caller, and ids are used as sent.

``raftq.Node`` scopes the ids of the operations it submits on its own leader with the
principal of its forward token, so an operation retried across a leader change (submitted
here, then forwarded) keeps one id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from raftq.config import TokenConfig
from raftq.service.access import CALLER
from raftq.service.fields import parse_request_id

__all__ = ["principal_of_token", "request_id_of", "scoped"]

_SCOPE_BYTES = 8  # 16 hex digits: with ".<round>" suffixes, ids stay within 128 characters


def scoped(request_id: str, principal: str | None) -> str:
    """``request_id`` in ``principal``'s scope (as is without a principal: auth off)."""
    if principal is None:
        return request_id
    h = hashlib.blake2b(principal.encode(), digest_size=_SCOPE_BYTES, person=b"raftq-scope")
    return f"{h.hexdigest()}:{request_id}"


def request_id_of(header: str | None) -> str | None:
    """The request id of a write from its ``X-Request-Id`` header (400 if malformed), in the
    scope of the caller the guard authenticated (``CALLER``)."""
    rid = parse_request_id(header)
    principal = CALLER.get()
    return None if rid is None else scoped(rid, None if principal is None else principal.name)


def principal_of_token(tokens: Sequence[TokenConfig], token: str | None) -> str | None:
    """The name of the configured token ``token`` (``None``: auth off, or no such token)."""
    if not tokens or token is None:
        return None
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    for t in tokens:
        if hmac.compare_digest(t.sha256, digest):
            return t.name
    return None
