"""Who the caller is, and the operation rules that depend on it (queue patterns).

The HTTP edge authenticates a request (``raftq.server.auth.Guard``) and sets ``CALLER`` while
the operation runs; the operations (``raftq.service.operations``) check here what only they
can decide: the queues named in a body, and the queue of a job named by id, on the node that
executes the request. With ``CALLER`` unset (auth off, or an embedded node's own calls) every
check passes.

The queue of a job is decided where the answer is made, never "allowed" because the job is
unknown: ``require_job`` runs on the leader right before the command is submitted (after a
barrier if the job is unknown there: its enqueue may be in the log but not applied yet; still
unknown: 404). Callers whose patterns cover every queue (``*``) and admins skip it.
"""

from __future__ import annotations

import contextvars
import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from raftq.config import Role
from raftq.errors import AuthError, Rejected
from raftq.raft.api import NodeAPI

__all__ = [
    "CALLER",
    "Principal",
    "allowed_queue",
    "forbidden_queue",
    "queue_of",
    "require_job",
    "require_jobs",
    "require_queues",
]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: Role
    queues: tuple[str, ...]  # fnmatch patterns; ignored for admin

    def may_touch(self, queue: str) -> bool:
        if self.role is Role.ADMIN:
            return True
        return any(fnmatch.fnmatchcase(queue, p) for p in self.queues)

    @property
    def restricted(self) -> bool:
        """Whether some queue is outside this caller's reach (so a job's queue matters)."""
        return self.role is not Role.ADMIN and "*" not in self.queues


# The caller of the request being served (set by the guard around its handler; None: auth off).
CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "raftq_caller", default=None
)


def forbidden_queue(principal: Principal, queue: str) -> AuthError:
    """The 403 of a queue outside ``principal``'s patterns."""
    return AuthError(
        f"token {principal.name!r} may not use queue {queue[:200]!r} "
        f"(its patterns: {', '.join(principal.queues)})",
        403,
    )


def queue_of(node: NodeAPI, job_id: int) -> str | None:
    """The queue of job ``job_id`` in this node's state (``None``: unknown here)."""
    with node.read() as m:
        return m.job_queue(job_id)


async def require_job(node: NodeAPI, job_id: int, timeout_ms: int) -> None:
    """Before the leader submits a command on job ``job_id``: 403 unless the caller may use
    the job's queue, 404 ``not_found`` when the job is unknown even after a barrier (no-op for
    unrestricted callers and with auth off).

    A job unknown here may be one whose enqueue is in the log but not applied yet; the barrier
    applies everything proposed before it, so what is still unknown afterwards was not
    enqueued before this command, and the command is not submitted.

    Raises:
        NotLeader: (from the barrier) this node does not lead: the caller forwards.
    """
    principal = CALLER.get()
    if principal is None or not principal.restricted:
        return
    queue = queue_of(node, job_id)
    if queue is None:
        await node.barrier(timeout_ms)
        queue = queue_of(node, job_id)
    if queue is None:
        raise Rejected("not_found", f"no job {job_id}", 404)
    if not principal.may_touch(queue):
        raise forbidden_queue(principal, queue)


async def require_jobs(node: NodeAPI, job_ids: Iterable[int], timeout_ms: int) -> frozenset[int]:
    """``require_job`` for the jobs of a batch (``POST /v1/ack``): 403 unless the caller may
    use the queue of every known one; returns the ids still unknown after one barrier, which
    the caller answers ``not_found`` without submitting them (empty for unrestricted callers
    and with auth off, whose commands the state machine answers as usual)."""
    principal = CALLER.get()
    if principal is None or not principal.restricted:
        return frozenset()
    wanted = set(job_ids)

    def queues() -> dict[int, str]:
        with node.read() as m:
            return {j: q for j in wanted if (q := m.job_queue(j)) is not None}

    known = queues()
    if len(known) < len(wanted):
        await node.barrier(timeout_ms)
        known = queues()
    require_queues(sorted(set(known.values())))
    return frozenset(wanted - known.keys())


def require_queues(queues: Iterable[str]) -> None:
    """403 unless the caller may use every one of ``queues`` (no-op with auth off)."""
    principal = CALLER.get()
    if principal is None:
        return
    for q in queues:
        if not principal.may_touch(q):
            raise forbidden_queue(principal, q)


def allowed_queue() -> Callable[[str], bool]:
    """A filter of the queues the caller may see (everything with auth off)."""
    principal = CALLER.get()
    if principal is None:
        return lambda _q: True
    return principal.may_touch
