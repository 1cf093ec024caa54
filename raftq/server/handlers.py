"""Route handlers of the v1 API (DESIGN.md section 4).

Writes (every POST) go through ``_write``: read the body (size-capped), forward it untouched to
the leader when this node is a follower that knows the leader, else validate, build the command
(``now_ms`` from this node's clock, ``request_id`` from ``X-Request-Id``) and submit it. A
``NotLeader`` raised by ``submit`` (leadership moved meanwhile) forwards too, unless the request
was already forwarded once. While no leader is known (an election), a write waits up to
``leader_wait_ms`` for one before answering 503 ``no_leader``. Reads are local, except
``GET /v1/jobs/{id}?consistency=linearizable``, which the leader serves after a barrier.

Each handler parses the request, runs the operation of ``raftq.service.operations.Service``
(validation, command, submit and answer are written there, once, for HTTP and the embedded
node alike) and renders the answer. Errors are raised (``raftq.errors``, or ``ApiError`` for
what only HTTP can get wrong) and turned into the ``{"error": ...}`` body by ``app._endpoint``
(``raftq.server.errors.api_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from raftq._version import __version__
from raftq.core.codec import LOG_VERSION
from raftq.core.limits import MAX_CLAIM, MAX_LOG_VERSION
from raftq.errors import ClusterError, NoLeader, NotLeader, OutcomeUnknown, Overloaded
from raftq.raft.api import NodeAPI, NodeStatus
from raftq.retry import Attempts, RetryPolicy
from raftq.server.audit import audit
from raftq.server.drain import DRAIN_KEY
from raftq.server.errors import ApiError, invalid
from raftq.server.forward import Forwarder, relayed
from raftq.server.settings import ServerSettings
from raftq.server.stream import serve as serve_stream
from raftq.server.wire import Format, decode_body, request_format, respond
from raftq.service.fields import (
    INT64_MAX,
    Fields,
    parse_job_id,
    parse_query,
    parse_queue,
    query_int,
)
from raftq.service.operations import Service
from raftq.service.request_ids import request_id_of

__all__ = ["Api", "node_ready", "read_body"]

logger = logging.getLogger(__name__)

# The content type of a backup (``POST /v1/cluster/backup``): raftq's snapshot file.
BACKUP_TYPE = "application/octet-stream"


def node_ready(node: NodeAPI) -> bool:
    """What ``GET /readyz`` answers (and ``raftq serve`` tells systemd): a leader is known and
    this node has applied the log up to the leader's commit index."""
    try:
        return node.status().ready
    except ClusterError:
        return False


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


# Set on a claim request while its long-poll runs on this node (not forwarded): see
# ``Api._claim_until_drained``.
_LOCAL_CLAIM: web.RequestKey[bool] = web.RequestKey("raftq_local_claim", bool)


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
        service: the operations (``raftq.service.operations.Service``) on ``node``.
    """

    def __init__(
        self, node: NodeAPI, settings: ServerSettings, forwarder: Forwarder, service: Service
    ) -> None:
        self.node = node
        self.settings = settings
        self.forwarder = forwarder
        self.service = service
        # A write waits for an election this long, checking for a leader every 50 ms.
        self._election_wait = RetryPolicy(
            settings.leader_wait_ms, base_s=0.05, cap_s=0.05, retry_on=(NoLeader, NotLeader)
        )

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
        election = self._election_wait.start()  # one wait per request, however many NoLeader
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
                if e.leader is not None or not await self._await_leader(election):
                    raise self._not_leader(e.leader) from e
            except NoLeader:
                if not await self._await_leader(election):
                    raise

    async def _await_leader(self, election: Attempts) -> bool:
        """During an election: wait (checking every 50 ms) until a leader is known; False once
        the request's wait (``leader_wait_ms``) is spent. Only after definite failures:
        retrying is safe."""
        while (delay := election.next_delay()) is not None:
            await asyncio.sleep(delay)
            if self.node.leader_id() is not None:
                return True
        return False

    # -- producing --------------------------------------------------------------------------

    async def enqueue(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/jobs``: one job, or ``{"jobs": [...]}``."""

        async def op(w: _Write) -> web.StreamResponse:
            queue = w.request.match_info["queue"]
            answer = await self.service.enqueue(queue, w.fields(), w.fmt)(w.request_id)
            return respond(w.request, answer, 201)

        return await self._write(request, op)

    # -- claim (long-poll) ------------------------------------------------------------------

    async def claim_one(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/claim``."""
        self._refuse_if_draining(request)
        return await self._claim_until_drained(request)

    async def claim_many(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/claim`` with ``{"queues": [...]}``."""
        self._refuse_if_draining(request)
        return await self._claim_until_drained(request)

    async def _claim_until_drained(self, request: web.Request) -> web.StreamResponse:
        """A long-poll claim that a drain of this node ends at once. Run here (``_claim``),
        it ends by itself: the drain wakes its wait and it answers 503 ``draining`` if it
        leased nothing, its jobs if a round in flight leased some. Forwarded to the leader
        (or waiting for one), it is dropped, answered 503 ``draining``: the leader leases
        nothing for a caller that left, but a round already in flight there may lease jobs
        the caller never sees (they come back when their lease expires). The client retries
        elsewhere with the same request id, so a round that was applied is replayed, never
        applied twice."""
        work = self._write(request, self._claim, extra_ms=self.settings.max_wait_ms)
        drain = request.config_dict.get(DRAIN_KEY)
        if drain is None:
            return await work
        task = asyncio.ensure_future(work)
        drained = asyncio.ensure_future(drain.started.wait())
        try:
            await asyncio.wait((task, drained), return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not request.get(_LOCAL_CLAIM, False):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise self._draining()
            return await task
        finally:
            drained.cancel()
            if not task.done():
                task.cancel()

    async def _claim(self, w: _Write) -> web.StreamResponse:
        request = w.request
        drain = request.config_dict.get(DRAIN_KEY)

        def wanted() -> bool:  # the client left, or this node drains: lease nothing more
            transport = request.transport
            alive = transport is not None and not transport.is_closing()
            return alive and (drain is None or not drain.draining)

        queue = request.match_info.get("queue")
        op = self.service.claim(queue, w.fields(), wanted)
        request[_LOCAL_CLAIM] = True  # runs here: a drain lets it end by itself
        try:
            answer = await op(w.request_id)
        finally:
            request[_LOCAL_CLAIM] = False
        if drain is not None and drain.draining and not answer.get("jobs"):
            raise self._draining()  # nothing leased: the client retries on another node
        return respond(request, answer)

    # -- the worker stream -------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/stream``: the worker stream (a WebSocket; ``raftq.server.stream``)."""
        return await serve_stream(self, request)

    # -- lease operations -------------------------------------------------------------------

    async def heartbeat(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/heartbeat`` with ``{token, lease_ms?, progress?, checkpoint?}``."""

        async def op(w: _Write) -> web.StreamResponse:
            job_id = parse_job_id(w.request.match_info["id"])
            answer = await self.service.heartbeat(job_id, w.fields(), w.fmt)(w.request_id)
            return respond(w.request, answer)

        return await self._write(request, op)

    async def ack(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/ack`` with ``{token, result?}``."""

        async def op(w: _Write) -> web.StreamResponse:
            job_id = parse_job_id(w.request.match_info["id"])
            answer = await self.service.ack(job_id, w.fields(), w.fmt)(w.request_id)
            return respond(w.request, answer)

        return await self._write(request, op)

    async def ack_many(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/ack`` with ``{"acks": [{id, token, result?}, ...]}``: one outcome per
        item (``raftq.service.operations.Service.ack_many``)."""

        async def op(w: _Write) -> web.StreamResponse:
            answer = await self.service.ack_many(w.fields(), w.fmt)(w.request_id)
            return respond(w.request, answer)

        return await self._write(request, op)

    async def nack(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/nack`` with ``{token, error?, retry_in_ms?}``."""

        async def op(w: _Write) -> web.StreamResponse:
            job_id = parse_job_id(w.request.match_info["id"])
            answer = await self.service.nack(job_id, w.fields())(w.request_id)
            return respond(w.request, answer)

        return await self._write(request, op)

    async def release(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/release`` with ``{token}``."""

        async def op(w: _Write) -> web.StreamResponse:
            job_id = parse_job_id(w.request.match_info["id"])
            answer = await self.service.release(job_id, w.fields())(w.request_id)
            return respond(w.request, answer)

        return await self._write(request, op)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/cancel``."""

        async def op(w: _Write) -> web.StreamResponse:
            job_id = parse_job_id(w.request.match_info["id"])
            answer = await self.service.cancel(job_id, w.fields())(w.request_id)
            return respond(w.request, answer)

        return await self._write(request, op)

    # -- queue admin ------------------------------------------------------------------------

    async def pause(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/pause``."""

        async def op(w: _Write) -> web.StreamResponse:
            queue = w.request.match_info["queue"]
            answer = await self.service.pause(queue, w.fields())(w.request_id)
            audit(w.request, "pause", queue=answer["queue"])
            return respond(w.request, answer)

        return await self._write(request, op)

    async def resume(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/resume``."""

        async def op(w: _Write) -> web.StreamResponse:
            queue = w.request.match_info["queue"]
            answer = await self.service.resume(queue, w.fields())(w.request_id)
            audit(w.request, "resume", queue=answer["queue"])
            return respond(w.request, answer)

        return await self._write(request, op)

    async def purge(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/purge``."""

        async def op(w: _Write) -> web.StreamResponse:
            queue = w.request.match_info["queue"]
            answer = await self.service.purge(queue, w.fields())(w.request_id)
            audit(w.request, "purge", queue=answer["queue"], purged=answer["purged"])
            return respond(w.request, answer)

        return await self._write(request, op)

    async def configure(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/configure`` with ``{dedup_window_ms?, retention_ms?}``."""

        async def op(w: _Write) -> web.StreamResponse:
            queue = w.request.match_info["queue"]
            answer = await self.service.configure(queue, w.fields())(w.request_id)
            audit(w.request, "configure", queue=answer["queue"],
                  dedup_window_ms=answer["dedup_window_ms"],
                  retention_ms=answer["retention_ms"])  # fmt: skip
            return respond(w.request, answer)

        return await self._write(request, op)

    async def requeue_dead(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/queues/{queue}/dead/requeue`` with ``{ids?}`` (absent: all)."""

        async def op(w: _Write) -> web.StreamResponse:
            queue = w.request.match_info["queue"]
            body = decode_body(w.body, w.fmt)
            ids = body.get("ids") if isinstance(body, dict) else None  # validated below
            answer = await self.service.requeue_dead(queue, Fields(body))(w.request_id)
            shown = "all" if ids is None else ",".join(map(str, ids[:20]))
            audit(w.request, "requeue_dead", queue=answer["queue"], ids=shown,
                  requeued=answer["requeued"])  # fmt: skip
            return respond(w.request, answer)

        return await self._write(request, op)

    # -- schedules (raftq.service.schedules) -------------------------------------------------

    async def put_schedule(self, request: web.Request) -> web.StreamResponse:
        """``PUT /v1/schedules/{name}``."""

        async def op(w: _Write) -> web.StreamResponse:
            name = w.request.match_info["name"]
            answer = await self.service.schedules.put(name, w.fields(), w.fmt)(w.request_id)
            audit(w.request, "put_schedule", schedule=name, queue=answer["queue"])
            return respond(w.request, answer)

        return await self._write(request, op)

    async def delete_schedule(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /v1/schedules/{name}``."""
        return await self._schedule_write(request, "delete")

    async def trigger_schedule(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/schedules/{name}/trigger``."""
        return await self._schedule_write(request, "trigger")

    async def pause_schedule(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/schedules/{name}/pause``."""
        return await self._schedule_write(request, "pause")

    async def resume_schedule(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/schedules/{name}/resume``."""
        return await self._schedule_write(request, "resume")

    async def _schedule_write(self, request: web.Request, what: str) -> web.StreamResponse:
        async def op(w: _Write) -> web.StreamResponse:
            name = w.request.match_info["name"]
            ops, fields = self.service.schedules, w.fields()
            if what == "delete":
                run = ops.delete(name, fields)
            elif what == "trigger":
                run = ops.trigger(name, fields)
            else:
                run = ops.set_paused(name, fields, paused=what == "pause")
            answer = await run(w.request_id)
            audit(w.request, f"{what}_schedule", schedule=name)
            return respond(w.request, answer)

        return await self._write(request, op)

    async def get_schedule(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/schedules/{name}``."""
        parse_query(request.query, ())
        return respond(request, self.service.schedules.get(request.match_info["name"]))

    async def list_schedules(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/schedules``."""
        parse_query(request.query, ())
        return respond(request, {"schedules": self.service.schedules.list()})

    # -- reads ------------------------------------------------------------------------------

    # -- batches --------------------------------------------------------------------------

    async def create_batch(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/batches``."""

        async def op(w: _Write) -> web.StreamResponse:
            answer = await self.service.create_batch(w.fields(), w.fmt)(w.request_id)
            return respond(w.request, answer, 201)

        return await self._write(request, op)

    async def get_batch(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/batches/{id}`` (this node's replica)."""
        batch_id = parse_job_id(request.match_info["id"])
        return respond(request, self.service.get_batch(batch_id))

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
        return respond(request, self.service.get_job(job_id))

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
        return respond(request, {"queues": self.service.queues()})

    async def get_queue(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/queues/{queue}``."""
        queue = request.match_info["queue"]
        parse_query(request.query, ())
        return respond(request, self.service.queue(queue))

    async def get_limits(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/queues/{queue}/limits``."""
        queue = request.match_info["queue"]
        parse_query(request.query, ())
        return respond(request, self.service.queue_limits(queue))

    async def set_limits(self, request: web.Request) -> web.StreamResponse:
        """``PUT /v1/queues/{queue}/limits`` with ``{concurrency?, rate?, group_concurrency?,
        group_rate?}`` (absent or null: no such limit)."""

        async def op(w: _Write) -> web.StreamResponse:
            queue = w.request.match_info["queue"]
            answer = await self.service.set_limits(queue, w.fields())(w.request_id)
            audit(w.request, "set_limits", **answer)
            return respond(w.request, answer)

        return await self._write(request, op)

    async def dead(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/queues/{queue}/dead[?limit=100&after=<id>]``: oldest first."""
        queue = parse_queue(request.match_info["queue"])
        query = parse_query(request.query, ("limit", "after"))
        limit = query_int(query, "limit", 1, MAX_CLAIM, 100)
        after = query_int(query, "after", 0, INT64_MAX, 0)
        return respond(request, self.service.dead(queue, limit, after))

    async def transfer_leadership(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/cluster/leader {to?}``: served by the leader (a follower forwards)."""

        async def op(w: _Write) -> web.StreamResponse:
            answer = await self.service.transfer_leadership(w.fields())(w.request_id)
            audit(w.request, "transfer_leadership", to=answer["leader"])
            return respond(w.request, answer)

        return await self._write(request, op)

    async def enable_version(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/cluster/version {version?}`` (default: the leader's log version): served
        by the leader once every node of the cluster says it applies that version."""

        async def op(w: _Write) -> web.StreamResponse:
            f = w.fields()
            version = f.opt_int("version", 1, MAX_LOG_VERSION) or LOG_VERSION
            f.done()
            await self._require_log_version(version)
            answer = await self.service.enable_version(version)(w.request_id)
            audit(w.request, "enable_version", version=answer["enabled_version"])
            return respond(w.request, answer)

        return await self._write(request, op)

    async def _require_log_version(self, version: int) -> None:
        """409 ``version_not_supported`` unless this node and every other one (asked now)
        applies log ``version``: a node that does not would stop at the next entry."""
        if version > LOG_VERSION:
            raise ApiError(
                409,
                "version_not_supported",
                f"this node ({self.node.node_id}) applies log versions up to {LOG_VERSION}",
            )
        st = self.node.status()
        # The replicated membership (a member added at runtime at the API address its
        # membership entry carries), not the config's nodes; the config's for a node without
        # one (an engine that reports no membership).
        members = st.members or st.nodes
        others = [m for m in members if m.id != st.id]

        async def view_of(api: str | None) -> object:
            if not api:
                return None
            return await self.forwarder.fetch_json(api, "/v1/cluster", timeout_ms=2000)

        views = await asyncio.gather(*(view_of(m.api) for m in others))
        for peer, view in zip(others, views, strict=True):
            me = view.get("self") if isinstance(view, dict) else None
            found = me.get("log_version") if isinstance(me, dict) else None
            if not isinstance(found, int) or found < version:
                if not peer.api:
                    why = "has no known API address (its membership entry did not carry one)"
                elif view is None:
                    why = "did not answer"
                else:
                    why = f"applies log versions up to {found or 1}"
                raise ApiError(
                    409,
                    "version_not_supported",
                    f"node {peer.id} {why}: upgrade it and start it before enabling log "
                    f"version {version}",
                )

    async def drain_node(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/node/drain``: this node (never forwarded) stops taking claims, hands
        leadership over, and its process exits 0 once its requests in flight finished."""
        body = await read_body(request, 4096)
        if body.strip():  # no fields; an empty body or {} is fine
            Fields(
                decode_body(body, request_format(request.headers.get("Content-Type", "")))
            ).done()
        drain = request.config_dict.get(DRAIN_KEY)
        if drain is None:
            raise ApiError(
                409,
                "not_drainable",
                "this node is embedded, not a `raftq serve` process: stop it where it runs",
            )
        leader = await drain.start(self.node)
        audit(request, "drain", leader=leader)
        return respond(request, {"node": self.node.node_id, "draining": True, "leader": leader})

    async def backup(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/cluster/backup``: the leader (a follower answers 503 ``not_leader`` with
        the leader's address: the client goes there, the file is not relayed) writes the state
        as of now, after a barrier, and streams the snapshot file; ``X-Raftq-Backup-Index`` /
        ``-Term`` name the log entry it ends with."""
        body = await read_body(request, 4096)
        if body.strip():  # no fields; an empty body or {} is fine
            Fields(
                decode_body(body, request_format(request.headers.get("Content-Type", "")))
            ).done()
        write = getattr(self.node, "backup", None)  # a RaftNode has it; a test double may not
        if write is None:
            raise ApiError(409, "not_backupable", "this node keeps no snapshot files")
        if not self.node.is_leader():
            raise self._not_leader(self.node.leader_id())
        try:
            info, f = await write(self.settings.submit_timeout_ms)
        except NotLeader as e:  # leadership moved before the barrier
            raise self._not_leader(e.leader) from e
        except (NoLeader, OutcomeUnknown, Overloaded):
            raise  # the barrier's: 503, retried
        except ClusterError as e:  # the writer failed or ran past its deadline: not retried
            raise ApiError(409, "backup_failed", str(e)) from e
        with f:
            _, index, term = info.header.last
            resp = web.StreamResponse(
                headers={
                    "Content-Type": BACKUP_TYPE,
                    "Content-Length": str(info.file_size),
                    "X-Raftq-Backup-Index": str(index),
                    "X-Raftq-Backup-Term": str(term),
                }
            )
            await resp.prepare(request)
            f.seek(0)
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                await resp.write(chunk)
            await resp.write_eof()
        audit(request, "backup", index=index, bytes=info.file_size)
        return resp

    def _refuse_if_draining(self, request: web.Request) -> None:
        drain = request.config_dict.get(DRAIN_KEY)
        if drain is not None and drain.draining:
            raise self._draining()

    def _draining(self) -> ApiError:
        return ApiError(
            503,
            "draining",
            f"node {self.node.node_id} is draining before a stop: claim from another node",
            retry_after_s=self._retry_after(),
        )

    async def cluster(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/cluster[?peers=true]``: this node's view; with ``peers``, also each other
        node's own ``self`` (``null`` when it does not answer within a second), for the
        dashboard, which can only talk to the node that served it."""
        query = parse_query(request.query, ("peers",))
        peers = query.get("peers", "false")
        if peers not in ("true", "false"):
            raise invalid("query.peers", "must be true or false")
        st = self.node.status()
        body = self.service.cluster()
        if peers == "true":
            body["peers"] = await self._peer_views(st)
        return respond(request, body)

    async def members(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/cluster/members``: the replicated membership as this node knows it."""
        return respond(request, self.service.members())

    async def add_member(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/cluster/members`` ``{id, api, raft}``."""

        async def op(w: _Write) -> web.StreamResponse:
            answer = await self.service.add_member(w.fields())(w.request_id)
            audit(w.request, "add_member", member=answer["added"]["id"])
            return respond(w.request, answer)

        return await self._write(request, op)

    async def remove_member(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /v1/cluster/members/{member}`` (id or raft address)."""

        async def op(w: _Write) -> web.StreamResponse:
            member = w.request.match_info["member"]
            answer = await self.service.remove_member(member)(w.request_id)
            audit(w.request, "remove_member", member=member)
            return respond(w.request, answer)

        return await self._write(request, op)

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
        if not node_ready(self.node):
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
