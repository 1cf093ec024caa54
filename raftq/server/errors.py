"""HTTP errors of the API: the edge's one exception type, and the one mapping of raftq's
errors to statuses and codes.

Every error leaves the server as ``{"error": {"code": "...", "message": "..."}}``. Codes are
stable strings (``docs/http-api.md`` lists them); messages are for humans and name the field.
The operations below HTTP (``raftq.service``) raise ``raftq.errors`` only; ``api_error`` turns
those into answers, and ``ApiError`` (what only HTTP can go wrong with: the body, the media
type, the route, the rate limit) never leaves ``raftq.server``.
"""

from __future__ import annotations

from raftq.errors import (
    AuthError,
    ClusterError,
    NoLeader,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    RaftqError,
    Rejected,
    TransferRefused,
)
from raftq.service.refusals import REASON_STATUS

__all__ = ["REASON_STATUS", "ApiError", "api_error", "invalid"]


class ApiError(Exception):
    """An answer other than success: ``status``, a stable ``code`` and a human ``message``.

    ``retry_after_s`` adds a ``Retry-After`` header (503 answers: nothing was applied, or the
    outcome is unknown and the client should retry with the same request id).
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


def invalid(field: str, message: str) -> ApiError:
    """A 400 ``invalid`` naming ``field`` (``"query.nonce"``...), for checks of the edge."""
    return ApiError(400, "invalid", f"{field}: {message}")


def api_error(e: RaftqError, retry_after_s: int) -> ApiError | None:
    """The HTTP answer to one of raftq's errors (``None``: not one the API answers; a bug).

    ``Rejected``: its status and reason; ``AuthError``: 401 ``unauthorized`` or 403
    ``forbidden``; cluster outcomes: 503 with ``Retry-After`` (all are retryable; the code
    says whether the command applied).
    """
    if isinstance(e, Rejected):
        return ApiError(e.status, e.reason, e.message)
    if isinstance(e, AuthError):
        return ApiError(e.status, e.code, e.message)
    if not isinstance(e, ClusterError):
        return None
    if isinstance(e, TransferRefused):
        return ApiError(409, "transfer_refused", str(e))
    if isinstance(e, OutcomeUnknown):
        code = "outcome_unknown"
    elif isinstance(e, Overloaded):
        code = "overloaded"
    elif isinstance(e, NotLeader) and e.leader is not None:
        code = "not_leader"
    elif isinstance(e, NoLeader | NotLeader):
        code = "no_leader"
    else:
        code = "unavailable"
    return ApiError(503, code, str(e) or code, retry_after_s=retry_after_s)
