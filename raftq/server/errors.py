"""HTTP errors of the API: one exception type, and how core refusals map to statuses.

Every error leaves the server as ``{"error": {"code": "...", "message": "..."}}``. Codes are
stable strings (``docs/http-api.md`` lists them); messages are for humans and name the field.
"""

from __future__ import annotations

from raftq.core import Reason, Refusal

__all__ = ["REASON_STATUS", "ApiError", "from_rejected", "invalid"]

# Core refusal -> HTTP status. Every Reason must be here (a test checks it).
REASON_STATUS: dict[Reason, int] = {
    Reason.MALFORMED: 400,
    Reason.UNSUPPORTED_VERSION: 400,
    Reason.INVALID: 400,
    Reason.NOT_FOUND: 404,
    Reason.STALE_TOKEN: 409,
    Reason.LEASE_EXPIRED: 409,
    Reason.FINISHED: 409,
    Reason.TOO_MANY_QUEUES: 409,
    Reason.REQUEST_ID_REUSED: 409,
}


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
    """A 400 ``invalid`` naming ``field`` (``"jobs[2].priority"``, ``"query.limit"``...)."""
    return ApiError(400, "invalid", f"{field}: {message}")


def from_rejected(r: Refusal) -> ApiError:
    """The HTTP answer to a refusal of the state machine."""
    return ApiError(REASON_STATUS.get(r.reason, 400), r.reason.value, r.message)
