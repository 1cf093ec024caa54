"""raftq's exception tree (one root: ``RaftqError``).

Every exception raftq raises derives from ``RaftqError`` (``raftq.core.errors``)::

    RaftqError
    +-- CodecError, CorruptStateError   (raftq.core: undecodable bytes, a broken state)
    +-- ConfigError                     (a bad configuration: every problem, one per line)
    +-- DataError                       (a damaged data file: the node refuses to start)
    +-- StartRefused                    (the node cannot start here: exit 2, nothing touched)
    |   +-- PortUnavailable, DataDirLocked    (a port it cannot bind, a data dir in use)
    +-- ClusterError                    (a command not carried through the cluster)
    |   +-- NotLeader, NoLeader, Overloaded   (definite: not applied)
    |   +-- OutcomeUnknown                    (maybe applied: retry with the same request id)
    +-- Rejected                        (refused: reason + HTTP status; validation too)
    +-- AuthError                       (401 missing/unknown credentials, 403 not allowed)
    +-- TimeNotKnownError               (a peer's signature cannot be timed yet: retry)
    +-- TransportError                  (the client reached no node / unreadable answer)
    |   +-- TlsError                    (the TLS handshake with a node failed: certificates)
    +-- Retry                           (a job handler asks for another attempt)
    +-- JobFailed                       (a waited-for job ended without success)
    |   +-- JobDead, JobCancelled
    +-- WaitTimeout                     (also a TimeoutError)

The operations (``raftq.service``) raise only these; the HTTP edge (``raftq.server``) maps them
to statuses and error codes in one place (``raftq.server.errors.api_error``), and its own
``ApiError`` never leaves it.

Cluster outcomes are split by what the caller may conclude:
- definite (``NotLeader``, ``NoLeader``, ``Overloaded``): the command was NOT applied; retry
  anywhere.
- ``OutcomeUnknown``: it may or may not have been applied; retry with the same request id, and
  the machine answers the retry with the first answer if there was one.
"""

from __future__ import annotations

from typing import Any

from raftq.core.errors import CodecError, CorruptStateError, RaftqError

__all__ = [
    "AuthError",
    "ClusterError",
    "CodecError",
    "ConfigError",
    "CorruptStateError",
    "DataDirLocked",
    "DataError",
    "JobCancelled",
    "JobDead",
    "JobFailed",
    "MembershipError",
    "NewerVersionError",
    "NoLeader",
    "NotLeader",
    "OutcomeUnknown",
    "Overloaded",
    "PortUnavailable",
    "RaftqError",
    "Rejected",
    "Retry",
    "StartRefused",
    "TimeNotKnownError",
    "TlsError",
    "TransferRefused",
    "TransportError",
    "WaitTimeout",
]


class ConfigError(RaftqError):
    """An invalid configuration; the message lists every problem found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


class DataError(RaftqError):
    """A node's data file (snapshot, journal, term/vote file) is damaged, truncated or of an
    unknown format: the node refuses to start on it rather than serve wrong data.

    ``str()`` is one line naming the file, the problem and what to do. ``path`` is the file,
    ``problem`` what is wrong with it, ``kind`` which file it is.
    """

    RECOVERY = "docs/operations.md#start-up-refusals"

    def __init__(self, path: str, problem: str, kind: str = "data") -> None:
        self.path = path
        self.problem = problem
        self.kind = kind
        super().__init__(
            f"{kind} file {path}: {problem}; refusing to start on it. Move this node's data "
            f"dir aside and start the node empty to recover from its peers, or restore a "
            f"backup ({self.RECOVERY})"
        )


class StartRefused(RaftqError):
    """A node cannot start on this machine as configured, found before it touched its data
    dir (``raftq serve`` exits 2 with the one-line message, which names what to do)."""


class PortUnavailable(StartRefused):
    """A port of the node cannot be bound (another process listens on it, or the address is
    not one of this machine's). ``which`` is ``"raft"`` or ``"API"``, ``address`` the
    configured ``host:port``, ``reason`` the system's error text."""

    def __init__(self, node_id: str, which: str, address: str, reason: str, in_use: bool) -> None:
        self.node_id = node_id
        self.which = which
        self.address = address
        self.reason = reason
        port = address.rpartition(":")[2]
        todo = (
            f"stop the process that holds it (`ss -ltnp 'sport = :{port}'` names it) or give "
            f"node {node_id} another {which} port in the config"
            if in_use
            else f"check node {node_id}'s {which} address in the config"
        )
        super().__init__(
            f"node {node_id}: cannot bind its {which} port {address} ({reason}): {todo}"
        )


class DataDirLocked(StartRefused):
    """Another process holds the node's data dir (its lock file): a node runs on it already.
    ``pid`` is the holder's process id when it could be read."""

    def __init__(self, node_id: str, path: str, pid: int | None) -> None:
        self.node_id = node_id
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"node {node_id}: data dir {path} is in use by another process ({holder}): node "
            f"{node_id} runs already; stop that process first, or give this node its own "
            f"data dir"
        )


class ClusterError(RaftqError):
    """A command could not be carried through the cluster."""


class MembershipError(ClusterError):
    """This node cannot take part in the cluster: it was removed from it, or it cannot join
    it (``raftq serve`` exits 2 with the one-line message)."""


class NotLeader(ClusterError):
    """This node is not the leader (definite: not applied). ``leader`` is the known leader id."""

    def __init__(self, leader: str | None, message: str = "") -> None:
        self.leader = leader
        super().__init__(message or f"not the leader (leader: {leader or 'unknown'})")


class NoLeader(ClusterError):
    """No leader is known within the deadline (definite: not applied)."""


class Overloaded(ClusterError):
    """The node refused the command because its queues are full (definite: not applied)."""


class OutcomeUnknown(ClusterError):
    """The command may or may not have been applied (deadline passed, leader changed...)."""


class NewerVersionError(ClusterError):
    """A log entry (or snapshot) needs a newer raftq than this node runs: the node stops
    instead of applying it (exit 76): upgrade the node's raftq and start it again."""


class TransferRefused(ClusterError):
    """Leadership was not handed over (definite: the leader is unchanged): no follower is
    caught up and connected, the target is unknown or not caught up, or no other node took
    over within the deadline. HTTP 409."""


class Rejected(RaftqError):
    """The state machine refused the command (a domain refusal, e.g. a stale token).

    ``reason`` is one of ``raftq.core.Reason``'s values; ``status`` the HTTP status it maps to.
    """

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        self.reason = reason
        self.status = status
        self.message = message
        super().__init__(message)

    @property
    def code(self) -> str:
        """The error code of the HTTP API's answer (the reason)."""
        return self.reason


class AuthError(RaftqError):
    """Missing or refused credentials (HTTP 401/403).

    From the client, ``node`` is the node that answered (``host:port``), ``token_sent``
    whether the request carried a token (a 401 without one means the cluster requires a
    token, a 401 with one that the token is not one of the cluster's), and ``problem`` the
    message without its advice, for a caller that words the fix its own way (the CLI).
    """

    def __init__(
        self,
        message: str,
        status: int = 401,
        *,
        node: str | None = None,
        token_sent: bool | None = None,
        problem: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.node = node
        self.token_sent = token_sent
        self.problem = problem or message
        super().__init__(message)

    @property
    def code(self) -> str:
        """The error code of the HTTP API's answer."""
        return "unauthorized" if self.status == 401 else "forbidden"


class TimeNotKnownError(RaftqError):
    """A node's valid signature whose timestamp is off this node's wall clock while this node
    knows no cluster time yet: not refused for good (the client may retry), not accepted."""


class TransportError(RaftqError):
    """The client could not reach any node, or got an answer it cannot read."""


class TlsError(TransportError):
    """The TLS handshake with ``node`` failed for a reason a retry does not cure (final).

    ``kind`` says which side's certificate is at fault: ``"client_cert"`` (the node requires
    a client certificate it trusts, and the client sent none or another), ``"server_cert"``
    (the client cannot verify the node's certificate: it lacks the CA that signed it), or
    ``"handshake"`` (another failure, e.g. the node does not speak TLS). ``problem`` is the
    message without its advice.
    """

    def __init__(self, message: str, *, node: str, kind: str, problem: str | None = None) -> None:
        self.node = node
        self.kind = kind
        self.problem = problem or message
        super().__init__(message)


class Retry(RaftqError):
    """Raised by a job handler to ask for another attempt later (``raftq.Retry``).

    The worker nacks the job with ``retry_in_ms=delay_ms`` (``None``: the cluster's
    exponential backoff). The attempt counts towards the job's ``max_attempts``: once they are
    used up, the job goes to the dead letters with ``message`` as its error.

    Args:
        delay_ms: how long to wait before the next attempt, in ms (``None``: backoff).
        message: recorded as the job's error (default ``"retry requested"``).
    """

    def __init__(self, delay_ms: int | None = None, message: str = "") -> None:
        if delay_ms is not None and (type(delay_ms) is not int or delay_ms < 0):
            raise ValueError(f"delay_ms must be a non-negative integer or None, got {delay_ms!r}")
        self.delay_ms = delay_ms
        self.message = message or "retry requested"
        super().__init__(self.message)


class JobFailed(RaftqError):
    """A job that was waited for finished without success (``JobHandle.wait``).

    Attributes:
        job_id: the job.
        state: its final state (``dead`` or ``cancelled``).
        error: the error recorded by its last failed attempt (``None`` if none was).
        job: the whole job as ``GET /v1/jobs/{id}`` shows it.
    """

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.job_id = int(job["id"])
        self.state = str(job["state"])
        self.error: str | None = job.get("error")
        first_line = (self.error or "no error recorded").splitlines()[0][:500]
        super().__init__(f"job {self.job_id} is {self.state}: {first_line}")


class JobDead(JobFailed):
    """The job used up its attempts and is in its queue's dead letters."""


class JobCancelled(JobFailed):
    """The job was cancelled before it succeeded."""


class WaitTimeout(RaftqError, TimeoutError):
    """``JobHandle.wait`` gave up before the job finished; ``job`` is its last seen state."""

    def __init__(self, job_id: int, timeout_ms: int, job: dict[str, Any] | None) -> None:
        self.job_id = job_id
        self.timeout_ms = timeout_ms
        self.job = job
        state = "unknown" if job is None else job.get("state")
        super().__init__(f"job {job_id} not finished after {timeout_ms} ms (state: {state})")
