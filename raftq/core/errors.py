"""The root of raftq's exception tree and the errors the core itself can raise.

``raftq.errors`` extends this tree with cluster and client outcomes; the core lives at the
bottom of the import graph, so the root is defined here.
"""

from __future__ import annotations

from raftq.core.results import Reason

__all__ = ["CodecError", "CorruptStateError", "RaftqError"]


class RaftqError(Exception):
    """Base class of every error raftq raises."""


class CodecError(RaftqError):
    """Bytes that do not decode to a valid entry, command, result or snapshot."""

    def __init__(self, message: str, reason: Reason = Reason.MALFORMED) -> None:
        super().__init__(message)
        self.reason = reason


class CorruptStateError(RaftqError):
    """The state or a snapshot breaks an invariant: the node must stop (fail-stop)."""
