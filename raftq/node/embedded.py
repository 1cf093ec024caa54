"""``raftq.Node``: a raftq node inside the caller's asyncio application.

On the leader an operation is a core command submitted to the local raft node: no HTTP, no
serialisation beyond the log entry. On a follower it is forwarded over HTTP to the leader's
API, the way a follower's HTTP server forwards. Each mutating operation has one request id,
used on every retry, locally and when forwarded, so it is applied at most once.

Retries (for ``retry_ms``, 50 ms doubling to 800 ms: a ``raftq.retry.RetryPolicy``): no
leader known yet (an election), a definite refusal of the log
(``NotLeader``/``NoLeader``/``Overloaded``), an unknown outcome (``OutcomeUnknown``). A
forwarded call also retries inside the HTTP client (``raftq.client.transport``). Domain
refusals raise ``raftq.errors.Rejected`` at once, with the reason and status the HTTP API
would answer.

Forwarding goes to the other nodes' ``api`` addresses under the prefix this node was mounted
with (``mount(app, prefix)``, default ``/raftq``): every embedded node of a cluster must mount
the API under the same prefix, and each node's ``api`` address in the config is the address of
the service that mounts it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from raftq.client.batch import ack_outcomes
from raftq.client.client import limits_body
from raftq.client.handle import ProducesHandles
from raftq.client.transport import Transport
from raftq.client.types import ClaimedJob, LeaseExtended, heartbeat_body
from raftq.config import ClusterConfig, load_config
from raftq.core.limits import MAX_CLAIM
from raftq.errors import NoLeader, Rejected, TransportError
from raftq.node.claim import NodeClaim, bind_port, claim_node
from raftq.node.process import server_settings
from raftq.raft.api import NodeStatus
from raftq.raft.engine import LogEngine
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.retry import RetryPolicy
from raftq.server import ServerSettings, add_routes, application, testfaults
from raftq.server.auth import security_from_config
from raftq.server.clock_probe import PeerClocks
from raftq.service.fields import INT64_MAX, Fields, check_int, check_queue
from raftq.service.operations import Answer, Op, Service
from raftq.service.request_ids import principal_of_token, scoped
from raftq.service.scheduler import Scheduler
from raftq.tls import server_context

__all__ = ["Node"]

_T = TypeVar("_T")
_Local = Callable[[str], Awaitable[_T]]


def _q(name: str) -> str:
    return quote(name, safe="")


class Node(ProducesHandles):
    """One node of a raftq cluster, run inside the caller's event loop.

    Example::

        node = raftq.Node("cluster.toml", "n1")
        app = web.Application()
        node.mount(app)                       # the HTTP API under /raftq
        async with node:                      # start() ... stop()
            job_id = await node.enqueue("emails", {"to": "ada@example.com"})

    The operations are coroutines with the signatures and errors of
    ``raftq.client.Client``, so a ``raftq.Worker(client=node)`` can run jobs in-process.

    Args:
        config: a ``ClusterConfig``, or the path of the cluster's TOML file.
        node_id: which node of the config this is. Its ``api`` address is where the
            embedding service serves the routes it ``mount``-s.
        settings: HTTP limits and deadlines (default: from ``config``).
        retry_ms: how long an operation keeps retrying through elections and failures.
        forward_ssl: reach the other nodes over HTTPS with this context.
        forward_token: API token sent when forwarding to the leader.
        engine: the Raft engine to run on (``raftq.raft.engine.LogEngine``); default:
            PySyncObj over TCP on the node's raft address, built from ``config``. Tests pass
            one on an in-memory network (``raftq.raft.pysyncobj.memory_transport``).

    Raises:
        ConfigError: the config cannot be read, or has no node ``node_id``.
    """

    def __init__(
        self,
        config: ClusterConfig | str | os.PathLike[str],
        node_id: str,
        *,
        settings: ServerSettings | None = None,
        retry_ms: int = 30_000,
        forward_ssl: ssl.SSLContext | None = None,
        forward_token: str | None = None,
        engine: LogEngine | None = None,
    ) -> None:
        self.config = config if isinstance(config, ClusterConfig) else load_config(config)
        self.config.node(node_id)  # ConfigError if unknown
        self.node_id = node_id
        self.settings = settings or server_settings(self.config)
        self._retry_ms = retry_ms
        # 50 ms doubling to 800 ms, for retry_ms (module docstring).
        self._retry = RetryPolicy(retry_ms, cap_s=0.8)
        self._forward_ssl = forward_ssl
        self._forward_token = forward_token
        # Ids submitted here are scoped as the leader scopes this token's forwarded ones.
        self._principal = principal_of_token(self.config.tokens, forward_token)
        # The raft port is ours to check only on the engine built here (TCP on the node's raft
        # address); a given engine brings its own transport.
        self._tcp_engine = engine is None
        if engine is None:
            engine = new_pysyncobj_engine(self.config, node_id)
        elif engine.node_id != node_id:
            raise ValueError(f"engine is for node {engine.node_id!r}, not {node_id!r}")
        self._raft = RaftNode(self.config, engine)
        self._service = Service(self._raft, self.settings)
        self._scheduler = Scheduler(self._raft, self.config.raft.submit_timeout_ms)
        self._prefix = "/raftq"
        # The other nodes' clocks, asked under the prefix every node mounts the API with.
        self._clocks = PeerClocks(self.config, node_id, ssl_context=forward_ssl, prefix="/raftq")
        self._raft.set_clock_probe(self._clocks)
        self._transport: Transport | None = None
        self._started = False
        self._claim: NodeClaim | None = None
        self._server: web.AppRunner | None = None  # ``serve``'s listener

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def raft(self) -> RaftNode:
        """The underlying raft node (``raftq.raft.api.NodeAPI``)."""
        return self._raft

    @property
    def prefix(self) -> str:
        """The path prefix of the API on every node (set by ``mount``)."""
        return self._prefix

    def mount(self, app: web.Application, prefix: str = "/raftq") -> None:
        """Serve this node's HTTP API on ``app`` under ``prefix`` (see
        ``raftq.server.add_routes``). The other nodes forward to this node under the same
        prefix, and this node forwards to them under it.

        Raises:
            ValueError: a malformed prefix, or a prefix other than the one already used to
                forward.
        """
        if self._transport is not None and prefix != self._prefix:
            raise ValueError(f"this node already forwards under {self._prefix!r}")
        add_routes(
            app,
            self._raft,
            self.settings,
            prefix,
            forward_ssl=self._forward_ssl,
            security=security_from_config(self.config),
            # TEST ONLY: the positive controls' faults, behind their fence (None in real use).
            overrides=testfaults.install(testfaults.active_fault()),
        )
        self._prefix = prefix
        self._clocks.prefix = prefix

    async def serve(self, prefix: str = "") -> str:
        """Serve this node's HTTP API on a listener of its own, at the node's ``api`` address
        in the config (with the config's TLS), until ``stop``: what a service that is not
        aiohttp (FastAPI, Starlette...) calls in its lifespan, after ``start``, since peers,
        workers and the CLI reach the node there. Returns the API's base URL.

        Raises:
            PortUnavailable: the API port is taken.
            RuntimeError: not started, or already serving.
        """
        if not self._started or self._server is not None:
            raise RuntimeError(f"node {self.node_id} is not started, or already serving")
        spec = self.config.node(self.node_id)
        sock = bind_port(self.node_id, "API", spec.api_host, spec.api_port)
        tls = None if self.config.tls is None else server_context(self.config.tls)
        app = application(self.settings)
        self.mount(app, prefix)
        runner = web.AppRunner(app, access_log=None)
        try:
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=tls).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._server = runner
        return self.config.api_url(self.node_id) + prefix

    async def start(self) -> None:
        """Start replicating (binds the raft port; does not wait for a leader).

        The data dir's lock is taken and the raft port checked first, before anything in the
        data dir is touched (``raftq.node.claim``); the lock is held until ``stop``.

        Raises:
            DataDirLocked: another process runs this node on the same data dir.
            PortUnavailable: the raft port cannot be bound (another process listens on it).
        """
        if self._started:
            raise RuntimeError(f"node {self.node_id} is already started")
        claim = claim_node(self.config, self.node_id, api=False, raft=self._tcp_engine)
        try:
            await self._raft.start()
        except BaseException:
            claim.release()
            raise
        self._claim = claim
        self._started = True
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop serving (``serve``), replicating, and close the forwarding connections."""
        self._started = False
        if self._server is not None:
            await self._server.cleanup()
            self._server = None
        await self._scheduler.stop()
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
        await self._raft.stop()
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def is_leader(self) -> bool:
        """True while this node leads the cluster."""
        return self._raft.is_leader()

    @property
    def leader_id(self) -> str | None:
        """The leader's node id, if known."""
        return self._raft.leader_id()

    def status(self) -> NodeStatus:
        """This node's view: role, term, indexes, digest, peers."""
        return self._raft.status()

    async def wait_for_leader(self, timeout_ms: int = 30_000) -> str:
        """Return the leader's id once one is known and this node has caught up.

        Raises:
            NoLeader: none within ``timeout_ms``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            if self._started:
                st = self._raft.status()
                if st.ready and st.leader is not None:
                    return st.leader
            if loop.time() >= deadline:
                raise NoLeader(f"no leader within {timeout_ms} ms")
            await asyncio.sleep(0.05)

    # -- the retry loop -------------------------------------------------------------------

    def _remote(self) -> Transport | None:
        if self._transport is None:
            others = [n for n in self.config.nodes if n.id != self.node_id]
            if not others:
                return None
            scheme = "https" if self._forward_ssl is not None else "http"
            s = self.settings
            self._transport = Transport(
                [f"{scheme}://{n.api}{self._prefix}" for n in others],
                timeout_ms=max(s.forward_timeout_ms, s.submit_timeout_ms + 1000),
                retry_ms=self._retry_ms,
                token=self._forward_token,
                ssl_context=self._forward_ssl,
                use_msgpack=True,
            )
        return self._transport

    async def _op(
        self,
        here: _Local[_T],
        there: Callable[[Transport, str], Awaitable[_T]],
        *,
        extra_ms: int = 0,
    ) -> _T:
        """Run ``here(rid)`` on the leader, or ``there(transport, rid)`` to forward, retrying
        as the module docstring says; the same request id every time."""
        if not self._started:
            raise NoLeader(f"node {self.node_id} is not started")
        rid = uuid.uuid4().hex
        attempts = self._retry.start(extra_ms)
        while True:
            try:
                if self._raft.is_leader():
                    return await here(scoped(rid, self._principal))  # as a forward would be
                remote = self._remote()
                if remote is None or self._raft.leader_id() is None:
                    raise NoLeader("no leader known")
                return await there(remote, rid)
            except Exception as e:
                if not self._retry.retries(e):
                    raise
                error = e
            delay = attempts.next_delay()
            if delay is None or not self._started:
                raise error
            await asyncio.sleep(delay)

    async def _run(self, op: Op, path: str, body: Any = None, method: str = "POST") -> Answer:
        """A validated operation: run here on the leader, else ``method path`` to forward;
        both answer the HTTP API's body."""

        async def here(rid: str) -> Answer:
            return await op(rid)

        async def there(t: Transport, rid: str) -> Answer:
            answer: Answer = await t.request(
                method, path, body, mutating=True, request_id=rid, extra_ms=op.wait_ms
            )
            return answer

        return await self._op(here, there, extra_ms=op.wait_ms)

    # -- producing ------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        priority: int = 0,
        delay_ms: int | None = None,
        run_at_ms: int | None = None,
        key: str | None = None,
        max_attempts: int | None = None,
        lease_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[int] | None = None,
        on_dependency_failure: str | None = None,
    ) -> int:
        """See ``raftq.client.Client.enqueue``."""
        spec = {
            "payload": payload,
            "priority": priority,
            "delay_ms": delay_ms,
            "run_at_ms": run_at_ms,
            "key": key,
            "max_attempts": max_attempts,
            "lease_ms": lease_ms,
            "group": group,
            "depends_on": None if depends_on is None else list(depends_on),
            "on_dependency_failure": on_dependency_failure,
        }
        body = _given(spec)
        op = self._service.enqueue(queue, Fields(body), "msgpack")
        answer = await self._run(op, f"/v1/queues/{_q(queue)}/jobs", body)
        return int(answer["id"])

    async def enqueue_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        """See ``raftq.client.Client.enqueue_many``."""
        body = {"jobs": [_given(s) if isinstance(s, Mapping) else s for s in jobs]}
        op = self._service.enqueue(queue, Fields(body), "msgpack")
        answer = await self._run(op, f"/v1/queues/{_q(queue)}/jobs", body)
        return [int(i) for i in answer["ids"]]

    # -- working --------------------------------------------------------------------------

    async def claim(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        max: int = 1,
        lease_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[ClaimedJob]:
        """See ``raftq.client.Client.claim``."""
        body: dict[str, Any] = {"worker": worker, "max": max, "wait_ms": wait_ms}
        if lease_ms is not None:
            body["lease_ms"] = lease_ms
        if isinstance(queues, str):
            op = self._service.claim(queues, Fields(body))
            path = f"/v1/queues/{_q(queues)}/claim"
        else:
            body["queues"] = list(queues)
            op = self._service.claim(None, Fields(body))
            path = "/v1/claim"
        body["wait_ms"] = op.wait_ms  # lowered to this node's cap, as the leader would
        answer = await self._run(op, path, body)
        return [ClaimedJob.from_wire(j) for j in answer["jobs"]]

    async def heartbeat(
        self,
        job_id: int,
        token: int,
        *,
        lease_ms: int | None = None,
        progress: Any = None,
        checkpoint: Any = None,
    ) -> LeaseExtended:
        """See ``raftq.client.Client.heartbeat``."""
        job_id = _job_id(job_id)
        body = heartbeat_body(token, lease_ms, progress, checkpoint)
        op = self._service.heartbeat(job_id, Fields(body), "msgpack")
        answer = await self._run(op, f"/v1/jobs/{job_id}/heartbeat", body)
        return LeaseExtended.from_wire(answer)

    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        """See ``raftq.client.Client.ack``."""
        job_id = _job_id(job_id)
        body = _given({"token": token, "result": result})
        op = self._service.ack(job_id, Fields(body), "msgpack")
        await self._run(op, f"/v1/jobs/{job_id}/ack", body)

    async def ack_many(self, acks: Sequence[tuple[int, int, Any]]) -> list[Rejected | None]:
        """See ``raftq.client.Client.ack_many`` (the same operation as ``POST /v1/ack``)."""
        body = {"acks": [_given({"id": j, "token": t, "result": r}) for j, t, r in acks]}
        answer = await self._run(self._service.ack_many(Fields(body), "msgpack"), "/v1/ack", body)
        return ack_outcomes(answer)

    async def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        """See ``raftq.client.Client.nack``."""
        job_id = _job_id(job_id)
        body = _given({"token": token, "error": error, "retry_in_ms": retry_in_ms})
        op = self._service.nack(job_id, Fields(body))
        return dict(await self._run(op, f"/v1/jobs/{job_id}/nack", body))

    async def release(self, job_id: int, token: int) -> dict[str, Any]:
        """See ``raftq.client.Client.release``."""
        job_id = _job_id(job_id)
        body = {"token": token}
        op = self._service.release(job_id, Fields(body))
        return dict(await self._run(op, f"/v1/jobs/{job_id}/release", body))

    async def cancel(self, job_id: int) -> None:
        """See ``raftq.client.Client.cancel``."""
        job_id = _job_id(job_id)
        op = self._service.cancel(job_id, Fields({}))
        await self._run(op, f"/v1/jobs/{job_id}/cancel")

    async def create_batch(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        queue: str | None = None,
        on_complete: Mapping[str, Any] | None = None,
        on_success: Mapping[str, Any] | None = None,
        on_death: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """See ``raftq.client.Client.create_batch``."""
        given = {
            "queue": queue,
            "on_complete": None if on_complete is None else dict(on_complete),
            "on_success": None if on_success is None else dict(on_success),
            "on_death": None if on_death is None else dict(on_death),
        }
        body = {"jobs": [_given(j) for j in jobs], **_given(given)}
        op = self._service.create_batch(Fields(body), "msgpack")
        return await self._run(op, "/v1/batches", body)

    async def batch(self, batch_id: int) -> dict[str, Any]:
        """See ``raftq.client.Client.batch`` (a local read of this node's replica)."""
        return self._service.get_batch(_job_id(batch_id))

    # -- reading --------------------------------------------------------------------------

    async def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]:
        """See ``raftq.client.Client.get_job``: a local read of this node's replica, or
        with ``linearizable`` a read after a barrier on the leader."""
        job_id = _job_id(job_id)
        if not linearizable:
            return self._service.get_job(job_id)

        async def here(_rid: str) -> dict[str, Any]:
            await self._raft.barrier(self.settings.submit_timeout_ms)
            return self._service.get_job(job_id)

        async def there(t: Transport, _rid: str) -> dict[str, Any]:
            query = {"consistency": "linearizable"}
            answer: dict[str, Any] = await t.request("GET", f"/v1/jobs/{job_id}", query=query)
            return answer

        return await self._op(here, there)

    async def queues(self) -> list[dict[str, Any]]:
        """See ``raftq.client.Client.queues`` (this node's replica)."""
        return self._service.queues()

    async def queue(self, name: str) -> dict[str, Any]:
        """See ``raftq.client.Client.queue`` (this node's replica)."""
        return self._service.queue(name)

    async def dead(self, queue: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """See ``raftq.client.Client.dead`` (this node's replica)."""
        check_queue(queue, "queue")
        limit = check_int(limit, "limit", 1, MAX_CLAIM)
        jobs: list[dict[str, Any]] = self._service.dead(queue, limit, 0)["jobs"]
        return jobs

    async def cluster(self) -> dict[str, Any]:
        """See ``raftq.client.Client.cluster``: this node's view."""
        return self._service.cluster()

    async def cluster_of(self, node: str) -> dict[str, Any]:
        """See ``raftq.client.Client.cluster_of``: ``node`` is a node id, a ``host:port``
        (reached under the mount prefix) or a URL; this node's own answers locally."""
        apis = {n.id: n.api for n in self.config.nodes}
        if ":" not in node and node not in apis:
            raise TransportError(f"no node {node!r} in the cluster")
        address = apis.get(node, node)
        if address == apis[self.node_id]:
            return await self.cluster()
        remote = self._remote()
        if remote is None:  # a one-node cluster: no other node to ask
            raise TransportError(f"no node {node!r} in the cluster")
        answer: dict[str, Any] = await remote.request(
            "GET", "/v1/cluster", node=remote.base_url(address)
        )
        return answer

    # -- admin ----------------------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        """See ``raftq.client.Client.pause``."""
        op = self._service.pause(queue, Fields({}))
        await self._run(op, f"/v1/queues/{_q(queue)}/pause")

    async def resume(self, queue: str) -> None:
        """See ``raftq.client.Client.resume``."""
        op = self._service.resume(queue, Fields({}))
        await self._run(op, f"/v1/queues/{_q(queue)}/resume")

    async def purge(self, queue: str) -> int:
        """See ``raftq.client.Client.purge``."""
        op = self._service.purge(queue, Fields({}))
        answer = await self._run(op, f"/v1/queues/{_q(queue)}/purge")
        return int(answer["purged"])

    async def requeue_dead(self, queue: str, ids: Sequence[int] | None = None) -> int:
        """See ``raftq.client.Client.requeue_dead``."""
        body = {} if ids is None else {"ids": list(ids)}
        op = self._service.requeue_dead(queue, Fields(body))
        answer = await self._run(op, f"/v1/queues/{_q(queue)}/dead/requeue", body or None)
        return int(answer["requeued"])

    async def configure(
        self, queue: str, *, dedup_window_ms: int | None = None, retention_ms: int | None = None
    ) -> dict[str, Any]:
        """See ``raftq.client.Client.configure``."""
        body = _given({"dedup_window_ms": dedup_window_ms, "retention_ms": retention_ms})
        op = self._service.configure(queue, Fields(body))
        return dict(await self._run(op, f"/v1/queues/{_q(queue)}/configure", body))

    # -- schedules ------------------------------------------------------------------------

    async def set_schedule(
        self,
        name: str,
        queue: str,
        payload: Any,
        *,
        every_ms: int | None = None,
        cron: str | None = None,
        tz: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        lease_ms: int | None = None,
        overlap: str | None = None,
        catchup_ms: int | None = None,
        paused: bool | None = None,
    ) -> dict[str, Any]:
        """See ``raftq.client.Client.set_schedule``."""
        fields = {
            "every_ms": every_ms,
            "cron": cron,
            "tz": tz,
            "priority": priority,
            "max_attempts": max_attempts,
            "lease_ms": lease_ms,
            "overlap": overlap,
            "catchup_ms": catchup_ms,
            "paused": paused,
        }
        body = {"queue": queue, "payload": payload, **_given(fields)}
        op = self._service.schedules.put(name, Fields(dict(body)), "msgpack")
        return dict(await self._run(op, f"/v1/schedules/{_q(name)}", body, "PUT"))

    async def schedule(self, name: str) -> dict[str, Any]:
        """See ``raftq.client.Client.schedule`` (this node's replica)."""
        return self._service.schedules.get(name)

    async def schedules(self) -> list[dict[str, Any]]:
        """See ``raftq.client.Client.schedules`` (this node's replica)."""
        return self._service.schedules.list()

    async def delete_schedule(self, name: str) -> None:
        """See ``raftq.client.Client.delete_schedule``."""
        op = self._service.schedules.delete(name, Fields({}))
        await self._run(op, f"/v1/schedules/{_q(name)}", None, "DELETE")

    async def trigger_schedule(self, name: str) -> dict[str, Any]:
        """See ``raftq.client.Client.trigger_schedule``."""
        op = self._service.schedules.trigger(name, Fields({}))
        return dict(await self._run(op, f"/v1/schedules/{_q(name)}/trigger"))

    async def pause_schedule(self, name: str) -> None:
        """See ``raftq.client.Client.pause_schedule``."""
        op = self._service.schedules.set_paused(name, Fields({}), paused=True)
        await self._run(op, f"/v1/schedules/{_q(name)}/pause")

    async def resume_schedule(self, name: str) -> None:
        """See ``raftq.client.Client.resume_schedule``."""
        op = self._service.schedules.set_paused(name, Fields({}), paused=False)
        await self._run(op, f"/v1/schedules/{_q(name)}/resume")

    async def limits(self, queue: str) -> dict[str, Any]:
        """See ``raftq.client.Client.limits`` (this node's replica)."""
        return self._service.queue_limits(queue)

    async def set_limits(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, int] | None = None,
        group_concurrency: int | None = None,
        group_rate: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """See ``raftq.client.Client.set_limits``."""
        body = limits_body(concurrency, rate, group_concurrency, group_rate)
        op = self._service.set_limits(queue, Fields(body))
        path = f"/v1/queues/{_q(queue)}/limits"
        return dict(await self._run(op, path, body, method="PUT"))

    # -- cluster admin --------------------------------------------------------------------

    async def transfer_leadership(self, to: str | None = None) -> dict[str, Any]:
        """See ``raftq.client.Client.transfer_leadership``."""
        body = _given({"to": to})
        op = self._service.transfer_leadership(Fields(dict(body)))
        return dict(await self._run(op, "/v1/cluster/leader", body or None))

    async def members(self) -> list[dict[str, Any]]:
        """See ``raftq.client.Client.members`` (this node's view)."""
        return list(self._service.members()["members"])

    async def add_member(self, node_id: str, api: str, raft: str) -> list[dict[str, Any]]:
        """See ``raftq.client.Client.add_member``."""
        body = {"id": node_id, "api": api, "raft": raft}
        op = self._service.add_member(Fields(dict(body)))
        return list((await self._run(op, "/v1/cluster/members", body))["members"])

    async def remove_member(self, member: str) -> list[dict[str, Any]]:
        """See ``raftq.client.Client.remove_member``."""
        op = self._service.remove_member(member)

        async def here(rid: str) -> Answer:
            return await op(rid)

        async def there(t: Transport, rid: str) -> Answer:
            path = f"/v1/cluster/members/{_q(member)}"
            answer: Answer = await t.request("DELETE", path, mutating=True, request_id=rid)
            return answer

        return list((await self._op(here, there))["members"])


def _given(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments given (``None`` is absent, except a job's ``payload``)."""
    return {k: v for k, v in spec.items() if v is not None or k == "payload"}


def _job_id(job_id: int) -> int:
    return check_int(job_id, "job_id", 1, INT64_MAX)
