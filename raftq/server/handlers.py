"""Route handlers of the v1 API (DESIGN.md section 4).

Writes (every POST) go through ``_write``: read the body (size-capped), forward it untouched to
the leader when this node is a follower that knows the leader, else validate, build the command
(``now_ms`` from this node's clock, ``request_id`` from ``X-Request-Id``) and submit it. A
``NotLeader`` raised by ``submit`` (leadership moved meanwhile) forwards too, unless the request
was already forwarded once. While no leader is known (an election), a write waits up to
``leader_wait_ms`` for one before answering 503 ``no_leader``. Reads are local, except
``GET /v1/jobs/{id}?consistency=linearizable``, which the leader serves after a barrier.

Errors are raised (``ApiError``, or cluster errors from ``raftq.errors``) and turned into the
``{"error": ...}`` body by ``app._endpoint``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from raftq._version import __version__
from raftq.core import (
    Ack,
    Acked,
    Cancel,
    Cancelled,
    Claim,
    Claimed,
    Command,
    Enqueue,
    Enqueued,
    Extended,
    Heartbeat,
    Lease,
    Nack,
    Nacked,
    NewJob,
    Pause,
    Paused,
    Purge,
    Purged,
    Refusal,
    Requeued,
    RequeueDead,
    Result,
    Resume,
    Resumed,
)
from raftq.core.limits import (
    MAX_BATCH_JOBS,
    MAX_CLAIM,
    MAX_CLAIM_QUEUES,
    MAX_DELAY_MS,
    MAX_ERROR_CHARS,
    MAX_KEY_CHARS,
    MAX_LEASE_MS,
    MAX_MAX_ATTEMPTS,
    MAX_TIME_MS,
    MAX_WORKER_CHARS,
)
from raftq.errors import ClusterError, NoLeader, NotLeader, OutcomeUnknown
from raftq.raft.api import NodeAPI, NodeStatus
from raftq.server import testfaults
from raftq.server.audit import audit
from raftq.server.auth import allowed_queue, require_job, require_jobs, require_queues
from raftq.server.errors import ApiError, from_rejected, invalid
from raftq.server.fields import (
    INT64_MAX,
    Fields,
    check_int,
    check_queue,
    parse_job_id,
    parse_query,
    parse_queue,
    query_int,
)
from raftq.server.forward import Forwarder, relayed
from raftq.server.render import render_cluster, render_job, render_lease, render_queue
from raftq.server.request_ids import request_id_of
from raftq.server.settings import ServerSettings
from raftq.server.wire import Format, decode_body, pack_value, request_format, respond
from raftq.service.claims import claim_rounds

__all__ = ["Api", "new_job", "read_body"]

# The success result of each command the API submits (a replayed request id can answer with
# the result of another kind of command: see Api._submit).
_RESULT_OF: dict[type[Command], type[Result]] = {
    Enqueue: Enqueued,
    Claim: Claimed,
    Heartbeat: Extended,
    Ack: Acked,
    Nack: Nacked,
    Cancel: Cancelled,
    Pause: Paused,
    Resume: Resumed,
    Purge: Purged,
    RequeueDead: Requeued,
}

logger = logging.getLogger(__name__)


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 ``body_too_large`` beyond).

    Read from the stream rather than ``request.read()`` so the limit holds whatever
    ``client_max_size`` the hosting application was built with.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, "body_too_large", f"body of {length} bytes, the limit is {limit}")
    buf = bytearray()
    while chunk := await request.content.read(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            raise ApiError(413, "body_too_large", f"body larger than {limit} bytes")
    return bytes(buf)


def new_job(f: Fields, fmt: Format, max_payload_bytes: int) -> NewJob:
    """One job of an enqueue from its fields (``payload``, ``priority``, ``delay_ms``,
    ``run_at_ms``, ``key``, ``max_attempts``, ``lease_ms``), validated; ``f`` must hold no
    other field. ``raftq.embed`` validates ``Node.enqueue`` with it too."""
    payload = pack_value(f.required("payload"), fmt, f.name("payload"), max_payload_bytes)
    priority = f.int_default("priority", 0, 9, default=0)
    delay_ms = f.opt_int("delay_ms", 0, MAX_DELAY_MS)
    run_at_ms = f.opt_int("run_at_ms", 0, MAX_TIME_MS)
    if delay_ms is not None and run_at_ms is not None:
        raise invalid(f.name("delay_ms"), "give delay_ms or run_at_ms, not both")
    job = NewJob(
        payload=payload,
        priority=priority,
        delay_ms=delay_ms,
        run_at_ms=run_at_ms,
        key=f.opt_str("key", MAX_KEY_CHARS),
        max_attempts=f.opt_int("max_attempts", 1, MAX_MAX_ATTEMPTS),
        lease_ms=f.opt_int("lease_ms", 1, MAX_LEASE_MS),
    )
    f.done()
    return job


def _plain_ack(item: Any) -> tuple[int, int, Any] | None:
    """``(id, token, result)`` of an ack item that ``Fields`` would accept as is (an object of
    ``id`` (1..), ``token`` (0..) and optionally ``result``), or ``None``: then ``Fields``
    takes it apart and names the field at fault. A shortcut for the usual item only."""
    if type(item) is not dict or not 2 <= len(item) <= 3:
        return None
    job_id = item.get("id")
    token = item.get("token")
    if type(job_id) is not int or type(token) is not int:
        return None
    if not (1 <= job_id <= INT64_MAX and 0 <= token <= INT64_MAX):
        return None
    if len(item) == 3 and "result" not in item:
        return None
    return job_id, token, item.get("result")


@dataclass(frozen=True, slots=True)
class _Write:
    """One write request after its body was read: what the handler needs to build commands."""

    request: web.Request
    body: bytes
    request_id: str | None

    @property
    def fmt(self) -> Format:
        """The body's format (an empty body has none: its Content-Type is not checked)."""
        if not self.body.strip():
            return "json"
        return request_format(self.request.headers.get("Content-Type", ""))

    def fields(self) -> Fields:
        return Fields(decode_body(self.body, self.fmt))


_WriteHandler = Callable[[_Write], Awaitable[web.StreamResponse]]


class Api:
    """The handlers of one mounting of the API on one node.

    Args:
        node: the local raft node.
        settings: limits and deadlines.
        forwarder: relays requests to the leader.
    """

    def __init__(self, node: NodeAPI, settings: ServerSettings, forwarder: Forwarder) -> None:
        self.node = node
        self.settings = settings
        self.forwarder = forwarder
        # TEST ONLY (positive controls, raftq/server/testfaults.py): None in any real use.
        self._fault = testfaults.active_fault()
        testfaults.apply_process_faults(self._fault)

    # -- plumbing ---------------------------------------------------------------------------

    def _retry_after(self) -> int:
        return self.settings.retry_after_s

    def leader_address(self) -> str | None:
        """``host:port`` of the leader's API, if known."""
        leader = self.node.leader_id()
        return None if leader is None else self.node.api_address(leader)

    def _forward_target(self, request: web.Request, leader: str | None) -> str | None:
        """The address to forward to, or None to serve here."""
        if relayed(request):
            return None  # one hop at most
        if leader is None or leader == self.node.node_id:
            return None
        return self.node.api_address(leader)

    def _not_leader(self, leader: str | None) -> ApiError:
        if leader is None:
            return ApiError(
                503, "no_leader", "no leader is known; retry", retry_after_s=self._retry_after()
            )
        return ApiError(
            503,
            "not_leader",
            f"this node is not the leader (leader: {leader}); retry",
            retry_after_s=self._retry_after(),
        )

    async def _write(
        self, request: web.Request, handler: _WriteHandler, *, extra_ms: int = 0
    ) -> web.StreamResponse:
        body = await read_body(request, self.settings.max_body_bytes)
        # Never give up on the leader before its own submit deadline could answer.
        base_ms = max(self.settings.forward_timeout_ms, self.settings.submit_timeout_ms + 1000)
        timeout_ms = base_ms + extra_ms
        loop = asyncio.get_running_loop()
        leader_deadline = loop.time() + self.settings.leader_wait_ms / 1000
        while True:
            if not self.node.is_leader():
                target = self._forward_target(request, self.node.leader_id())
                if target is not None:
                    return await self.forwarder.forward(
                        request, body, target, timeout_ms=timeout_ms, mutating=True
                    )
            rid = request_id_of(request.headers.get("X-Request-Id"))  # the caller's scope
            try:
                return await handler(_Write(request, body, rid))
            except NotLeader as e:
                target = self._forward_target(request, e.leader)
                if target is not None:
                    return await self.forwarder.forward(
                        request, body, target, timeout_ms=timeout_ms, mutating=True
                    )
                if e.leader is not None or not await self._await_leader(leader_deadline):
                    raise self._not_leader(e.leader) from e
            except NoLeader:
                if not await self._await_leader(leader_deadline):
                    raise

    async def _await_leader(self, deadline: float) -> bool:
        """During an election: wait (checking every 50 ms) until a leader is known; False once
        ``deadline`` (loop time) passed. Only after definite failures: retrying is safe."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
            if self.node.leader_id() is not None:
                return True
        return False

    async def _submit(self, command: Command) -> Result:
        """Submit and return a success result; a core refusal becomes its ApiError.

        Another command under a known request id is refused by the machine (409
        ``request_id_reused``). A result of another kind than the command's is the first
        answer to an id restored from a version-3 snapshot, which kept no digest of its
        command: 409 ``request_id_reused`` too.
        """
        return self._accepted(
            command, await self.node.submit(command, self.settings.submit_timeout_ms)
        )

    def _accepted(self, command: Command, result: Result) -> Result:
        if isinstance(result, Refusal):
            raise from_rejected(result)
        expected = _RESULT_OF.get(type(command))
        if expected is not None and not isinstance(result, expected):
            raise ApiError(
                409,
                "request_id_reused",
                f"X-Request-Id {command.request_id!r} was already used for another operation "
                "within the deduplication window; use a fresh id per operation",
            )
        return result

    async def _require_job(self, job_id: int) -> None:
        """The queue check of a ``/v1/jobs/{id}`` write, right before its submit: this node is
        the leader, or the barrier raises ``NotLeader`` and ``_write`` forwards."""
        await require_job(self.node, job_id, self.settings.submit_timeout_ms)

    def _unexpected(self, result: Result) -> ApiError:
        logger.error("unexpected result from the state machine: %r", result)
        return ApiError(500, "internal", f"unexpected result {type(result).__name__}")

    # -- enqueue ----------------------------------------------------------------------------

    async def enqueue(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/jobs``: one job, or ``{"jobs": [...]}``."""
        return await self._write(request, self._enqueue)

    async def _enqueue(self, w: _Write) -> web.StreamResponse:
        queue = parse_queue(w.request.match_info["queue"])
        f = w.fields()
        batch = f.has("jobs")
        max_bytes = self.settings.max_payload_bytes
        if batch:
            items = f.req_list("jobs", self.settings.max_batch_jobs, 1)
            f.done()
            jobs = tuple(
                new_job(Fields(item, f"jobs[{i}]"), w.fmt, max_bytes)
                for i, item in enumerate(items)
            )
        else:
            jobs = (new_job(f, w.fmt, max_bytes),)
        cmd = Enqueue(now_ms=self.node.now_ms(), request_id=w.request_id, queue=queue, jobs=jobs)
        try:
            result = await self._submit(cmd)
        except (OutcomeUnknown, NoLeader):
            if self._fault != "ack-before-commit":
                raise
            with self.node.read() as m:  # TEST ONLY: acknowledge what did not commit
                result = testfaults.pretend_enqueued(m, cmd)
        if not isinstance(result, Enqueued):
            raise self._unexpected(result)
        if batch:
            body: dict[str, Any] = {"ids": list(result.ids), "existing": list(result.existing)}
        else:
            body = {"id": result.ids[0], "existing": result.existing[0]}
        return respond(w.request, body, 201)

    # -- claim (long-poll) ------------------------------------------------------------------

    async def claim_one(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/claim``."""
        if self._fault == "follower-claims" and not self.node.is_leader():
            return await self._claim(await self._test_write(request))  # TEST ONLY
        return await self._write(request, self._claim, extra_ms=self.settings.max_wait_ms)

    async def claim_many(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/claim`` with ``{"queues": [...]}``."""
        if self._fault == "follower-claims" and not self.node.is_leader():
            return await self._claim(await self._test_write(request))  # TEST ONLY
        return await self._write(request, self._claim, extra_ms=self.settings.max_wait_ms)

    async def _test_write(self, request: web.Request) -> _Write:
        body = await read_body(request, self.settings.max_body_bytes)
        return _Write(request, body, request_id_of(request.headers.get("X-Request-Id")))

    async def _claim(self, w: _Write) -> web.StreamResponse:
        f = w.fields()
        if "queue" in w.request.match_info:
            queues: tuple[str, ...] = (parse_queue(w.request.match_info["queue"]),)
        else:
            names = f.req_list("queues", MAX_CLAIM_QUEUES, 1)
            queues = tuple(check_queue(q, f"queues[{i}]") for i, q in enumerate(names))
            require_queues(w.request, queues)  # the path's queue was checked by the guard
        worker = f.req_str("worker", MAX_WORKER_CHARS)
        mx = f.int_default("max", 1, MAX_CLAIM, default=1)
        lease_ms = f.opt_int("lease_ms", 1, MAX_LEASE_MS)
        wait_ms = min(f.int_default("wait_ms", 0, INT64_MAX, default=0), self.settings.max_wait_ms)
        f.done()
        first = Claim(
            now_ms=self.node.now_ms(),
            request_id=w.request_id,
            queues=queues,
            worker=worker,
            max=mx,
            lease_ms=lease_ms,
        )
        if self._fault == "follower-claims" and not self.node.is_leader():
            with self.node.read() as m:  # TEST ONLY: claims served from this replica's state
                local = testfaults.local_leases(m, queues, mx)
            return respond(w.request, {"jobs": [render_lease(x) for x in local]})
        leases = await self._long_poll(w.request, first, wait_ms)
        return respond(w.request, {"jobs": [render_lease(x) for x in leases]})

    async def _long_poll(self, request: web.Request, first: Claim, wait_ms: int) -> Sequence[Lease]:
        """Claim; while nothing is ready and time remains, wait for work (woken by applied
        entries and by enqueues on this node, never polling) and claim again
        (``raftq.service.claims.claim_rounds``)."""

        def check(result: Result) -> Claimed:
            result = self._accepted(first, result)
            if not isinstance(result, Claimed):
                raise self._unexpected(result)
            return result

        def wanted() -> bool:  # the client left: do not lease jobs nobody will receive
            transport = request.transport
            return transport is not None and not transport.is_closing()

        timeout_ms = self.settings.submit_timeout_ms
        return await claim_rounds(self.node, first, wait_ms, timeout_ms, check=check, wanted=wanted)

    # -- lease operations -------------------------------------------------------------------

    async def heartbeat(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/heartbeat`` with ``{token, lease_ms?}``."""
        return await self._write(request, self._heartbeat)

    async def _heartbeat(self, w: _Write) -> web.StreamResponse:
        job_id = parse_job_id(w.request.match_info["id"])
        f = w.fields()
        token = f.req_int("token")
        lease_ms = f.opt_int("lease_ms", 1, MAX_LEASE_MS)
        f.done()
        await self._require_job(job_id)
        cmd = Heartbeat(
            now_ms=self.node.now_ms(),
            request_id=w.request_id,
            job_id=job_id,
            token=token,
            lease_ms=lease_ms,
        )
        result = await self._submit(cmd)
        if not isinstance(result, Extended):
            raise self._unexpected(result)
        return respond(w.request, {"id": job_id, "lease_expires_ms": result.lease_expires_ms})

    async def ack(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/ack`` with ``{token, result?}``."""
        return await self._write(request, self._ack)

    async def _ack(self, w: _Write) -> web.StreamResponse:
        job_id = parse_job_id(w.request.match_info["id"])
        f = w.fields()
        token = f.req_int("token")
        value = f.raw("result")
        f.done()
        await self._require_job(job_id)
        if self._fault == "skip-token-check":
            with self.node.read() as m:  # TEST ONLY: any token acks the current lease
                token = testfaults.current_token(m, job_id, token)
        result_bytes = (
            None
            if value is None
            else pack_value(value, w.fmt, "result", self.settings.max_payload_bytes)
        )
        cmd = Ack(
            now_ms=self.node.now_ms(),
            request_id=w.request_id,
            job_id=job_id,
            token=token,
            result=result_bytes,
        )
        result = await self._submit(cmd)
        if not isinstance(result, Acked):
            raise self._unexpected(result)
        return respond(w.request, {"id": job_id, "state": "succeeded"})

    async def ack_many(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/ack`` with ``{"acks": [{id, token, result?}, ...]}``."""
        return await self._write(request, self._ack_many)

    async def _ack_many(self, w: _Write) -> web.StreamResponse:
        """Each ack is its own ``Ack`` command with its own outcome (one stale token refuses
        only its own item); submitted together, they share log entries by group commit.

        Every item is validated before any is submitted (a malformed item: 400, nothing
        applied). Item ``i`` carries the request id ``<X-Request-Id>.<i>``, so a retry of the
        whole request (same header) is answered per item with the first outcome. A cluster
        failure of any item (not leader, outcome unknown) fails the request as a whole, to be
        retried or forwarded with the same request id.
        """
        f = w.fields()
        items = f.req_list("acks", self.settings.max_batch_jobs, 1)
        f.done()
        now = self.node.now_ms()
        commands: list[Ack] = []
        for i, item in enumerate(items):
            fast = _plain_ack(item)
            if fast is not None:
                job_id, token, value = fast
            else:  # anything unusual, with the error message of the field at fault
                g = Fields(item, f"acks[{i}]")
                job_id = g.req_int("id", 1)
                token = g.req_int("token")
                value = g.raw("result")
                g.done()
            result_bytes = (
                None
                if value is None
                else pack_value(value, w.fmt, f"acks[{i}].result", self.settings.max_payload_bytes)
            )
            rid = None if w.request_id is None else f"{w.request_id}.{i}"
            commands.append(
                Ack(now_ms=now, request_id=rid, job_id=job_id, token=token, result=result_bytes)
            )
        # Each job's queue, on the leader right before submitting (auth.require_jobs): a
        # restricted caller's items on jobs unknown even after a barrier are not submitted.
        unknown = await require_jobs(
            w.request, self.node, (c.job_id for c in commands), self.settings.submit_timeout_ms
        )
        submitted = [c for c in commands if c.job_id not in unknown]
        # One submission of all the items (one deadline); a cluster failure of any raises.
        outcomes = iter(
            await self.node.submit_many(submitted, self.settings.submit_timeout_ms)
            if submitted
            else []
        )
        answers: list[dict[str, Any]] = []
        for cmd in commands:
            if cmd.job_id in unknown:
                error = {"code": "not_found", "message": f"no job {cmd.job_id}", "status": 404}
                answers.append({"id": cmd.job_id, "error": error})
                continue
            outcome = next(outcomes)
            if isinstance(outcome, Refusal):
                err = from_rejected(outcome)
                error = {"code": err.code, "message": err.message, "status": err.status}
                answers.append({"id": cmd.job_id, "error": error})
            elif isinstance(outcome, Acked):
                answers.append({"id": cmd.job_id, "state": "succeeded"})
            else:
                raise self._unexpected(outcome)
        return respond(w.request, {"results": answers})

    async def nack(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/nack`` with ``{token, error?, retry_in_ms?}``."""
        return await self._write(request, self._nack)

    async def _nack(self, w: _Write) -> web.StreamResponse:
        job_id = parse_job_id(w.request.match_info["id"])
        f = w.fields()
        token = f.req_int("token")
        error = f.raw("error")
        if error is not None and type(error) is not str:
            raise invalid("error", "expected a string")
        retry_in_ms = f.opt_int("retry_in_ms", 0, MAX_DELAY_MS)
        f.done()
        await self._require_job(job_id)
        if self._fault == "nack-drops":  # TEST ONLY: the nack completes the job
            ack = Ack(now_ms=self.node.now_ms(), request_id=w.request_id, job_id=job_id,
                      token=token, result=None)  # fmt: skip
            acked = await self._submit(ack)
            if not isinstance(acked, Acked):
                raise self._unexpected(acked)
            return respond(w.request, {"id": job_id, "state": "queued", "run_at_ms": 0})
        cmd = Nack(
            now_ms=self.node.now_ms(),
            request_id=w.request_id,
            job_id=job_id,
            token=token,
            error=None if error is None else error[:MAX_ERROR_CHARS],
            retry_in_ms=retry_in_ms,
        )
        result = await self._submit(cmd)
        if not isinstance(result, Nacked):
            raise self._unexpected(result)
        body = {"id": job_id, "state": result.state, "run_at_ms": result.run_at_ms}
        return respond(w.request, body)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/cancel``."""
        return await self._write(request, self._cancel)

    async def _cancel(self, w: _Write) -> web.StreamResponse:
        job_id = parse_job_id(w.request.match_info["id"])
        w.fields().done()
        await self._require_job(job_id)
        cmd = Cancel(now_ms=self.node.now_ms(), request_id=w.request_id, job_id=job_id)
        result = await self._submit(cmd)
        if not isinstance(result, Cancelled):
            raise self._unexpected(result)
        return respond(w.request, {"id": job_id, "state": "cancelled"})

    # -- queue admin ------------------------------------------------------------------------

    async def pause(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/pause``."""
        return await self._write(request, self._pause_resume)

    async def resume(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/resume``."""
        return await self._write(request, self._pause_resume)

    async def _pause_resume(self, w: _Write) -> web.StreamResponse:
        queue = parse_queue(w.request.match_info["queue"])
        w.fields().done()
        now, rid = self.node.now_ms(), w.request_id
        pausing = w.request.path.endswith("/pause")
        cmd: Pause | Resume = (
            Pause(now_ms=now, request_id=rid, queue=queue)
            if pausing
            else Resume(now_ms=now, request_id=rid, queue=queue)
        )
        result = await self._submit(cmd)
        if not isinstance(result, Paused | Resumed):
            raise self._unexpected(result)
        audit(w.request, "pause" if pausing else "resume", queue=queue)
        return respond(w.request, {"queue": queue, "paused": pausing})

    async def purge(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/purge``."""
        return await self._write(request, self._purge)

    async def _purge(self, w: _Write) -> web.StreamResponse:
        queue = parse_queue(w.request.match_info["queue"])
        w.fields().done()
        cmd = Purge(now_ms=self.node.now_ms(), request_id=w.request_id, queue=queue)
        result = await self._submit(cmd)
        if not isinstance(result, Purged):
            raise self._unexpected(result)
        audit(w.request, "purge", queue=queue, purged=result.count)
        return respond(w.request, {"queue": queue, "purged": result.count})

    async def requeue_dead(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/dead/requeue`` with ``{ids?}`` (absent: all)."""
        return await self._write(request, self._requeue_dead)

    async def _requeue_dead(self, w: _Write) -> web.StreamResponse:
        queue = parse_queue(w.request.match_info["queue"])
        f = w.fields()
        ids = f.opt_list("ids", MAX_BATCH_JOBS, 1)
        f.done()
        job_ids = (
            None
            if ids is None
            else tuple(check_int(v, f"ids[{i}]", 1, INT64_MAX) for i, v in enumerate(ids))
        )
        cmd = RequeueDead(
            now_ms=self.node.now_ms(), request_id=w.request_id, queue=queue, job_ids=job_ids
        )
        result = await self._submit(cmd)
        if not isinstance(result, Requeued):
            raise self._unexpected(result)
        audit(
            w.request,
            "requeue_dead",
            queue=queue,
            ids="all" if job_ids is None else ",".join(map(str, job_ids[:20])),
            requeued=result.count,
        )
        return respond(w.request, {"queue": queue, "requeued": result.count})

    # -- reads ------------------------------------------------------------------------------

    async def get_job(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/jobs/{id}[?consistency=local|linearizable]``."""
        job_id = parse_job_id(request.match_info["id"])
        query = parse_query(request.query, ("consistency",))
        consistency = query.get("consistency", "local")
        if consistency not in ("local", "linearizable"):
            raise invalid("query.consistency", "must be local or linearizable")
        if consistency == "linearizable":
            forwarded = await self._linearizable(request)
            if forwarded is not None:
                return forwarded
        with self.node.read() as m:
            info = m.job_info(job_id)
        if info is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        require_queues(request, (info.queue,))  # the queue of the job answered with
        return respond(request, render_job(info))

    async def _linearizable(self, request: web.Request) -> web.StreamResponse | None:
        """Make a following local read linearizable (barrier on the leader), or forward."""
        leader: str | None
        if self.node.is_leader():
            try:
                await self.node.barrier(self.settings.submit_timeout_ms)
                return None
            except NotLeader as e:
                leader = e.leader
        else:
            leader = self.node.leader_id()
        target = self._forward_target(request, leader)
        if target is None:
            raise self._not_leader(None if leader == self.node.node_id else leader)
        return await self.forwarder.forward(
            request, b"", target, timeout_ms=self.settings.forward_timeout_ms, mutating=False
        )

    async def list_queues(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/queues``: every queue's stats, by name."""
        parse_query(request.query, ())
        visible = allowed_queue(request)  # a token sees the queues its patterns match
        with self.node.read() as m:
            stats = [m.queue_stats(name) for name in sorted(m.queue_names()) if visible(name)]
        return respond(request, {"queues": [render_queue(s) for s in stats if s is not None]})

    async def get_queue(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/queues/{queue}``."""
        queue = parse_queue(request.match_info["queue"])
        parse_query(request.query, ())
        with self.node.read() as m:
            stats = m.queue_stats(queue)
        if stats is None:
            raise ApiError(404, "not_found", f"no queue {queue}")
        return respond(request, render_queue(stats))

    async def dead(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/queues/{queue}/dead[?limit=100&after=<id>]``: oldest first."""
        queue = parse_queue(request.match_info["queue"])
        query = parse_query(request.query, ("limit", "after"))
        limit = query_int(query, "limit", 1, MAX_CLAIM, 100)
        after = query_int(query, "after", 0, INT64_MAX, 0)
        with self.node.read() as m:
            known = m.queue_stats(queue) is not None
            infos = m.dead_letters(queue, limit, after)
        if not known:
            raise ApiError(404, "not_found", f"no queue {queue}")
        jobs = [render_job(j) for j in infos]
        next_after = infos[-1].id if len(infos) == limit else None
        return respond(request, {"queue": queue, "jobs": jobs, "next_after": next_after})

    async def cluster(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/cluster[?peers=true]``: this node's view; with ``peers``, also each other
        node's own ``self`` (``null`` when it does not answer within a second), for the
        dashboard, which can only talk to the node that served it."""
        query = parse_query(request.query, ("peers",))
        peers = query.get("peers", "false")
        if peers not in ("true", "false"):
            raise invalid("query.peers", "must be true or false")
        st = self.node.status()
        leader_api = None if st.leader is None else self.node.api_address(st.leader)
        body = render_cluster(st, leader_api)
        if peers == "true":
            body["peers"] = await self._peer_views(st)
        return respond(request, body)

    async def _peer_views(self, st: NodeStatus) -> dict[str, Any]:
        others = [p for p in st.nodes if p.id != st.id]

        async def one(api: str) -> Any:
            view = await self.forwarder.fetch_json(api, "/v1/cluster", timeout_ms=1000)
            return view.get("self") if isinstance(view, dict) else None

        views = await asyncio.gather(*(one(p.api) for p in others))
        return {p.id: v for p, v in zip(others, views, strict=True)}

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """``GET /healthz``: the process serves HTTP."""
        return respond(request, {"ok": True, "node": self.node.node_id})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        """``GET /readyz``: 200 once the node knows a leader and has caught up, else 503."""
        try:
            ready = self.node.status().ready
        except ClusterError:
            ready = False
        if not ready:
            raise ApiError(
                503,
                "not_ready",
                "no leader known, or not caught up with the log yet",
                retry_after_s=self._retry_after(),
            )
        return respond(request, {"ready": True, "node": self.node.node_id})

    async def index(self, request: web.Request, routes: list[str]) -> web.StreamResponse:
        """``GET /`` for API clients: a small JSON index (browsers get the dashboard)."""
        body: dict[str, Any] = {
            "service": "raftq",
            "version": __version__,
            "node": self.node.node_id,
            "routes": routes,
        }
        return respond(request, body)
