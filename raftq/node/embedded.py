"""``raftq.Node``: a raftq node inside the caller's asyncio application.

On the leader an operation is a core command submitted to the local raft node: no HTTP, no
serialisation beyond the log entry. On a follower it is forwarded over HTTP to the leader's
API, the way a follower's HTTP server forwards. Each mutating operation has one request id,
used on every retry, locally and when forwarded, so it is applied at most once.

Retries (for ``retry_ms``, 50 ms doubling to 800 ms): no leader known yet (an election), a
definite refusal of the log (``NotLeader``/``NoLeader``/``Overloaded``), an unknown outcome
(``OutcomeUnknown``). A forwarded call also retries inside the HTTP client
(``raftq.client.transport``). Domain refusals raise ``raftq.errors.Rejected`` at once, with
the reason and status the HTTP API would answer.

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

from raftq.client.handle import ProducesHandles
from raftq.client.transport import Transport
from raftq.client.types import ClaimedJob
from raftq.config import ClusterConfig, load_config
from raftq.core import (
    Ack,
    Acked,
    Cancel,
    Cancelled,
    Claim,
    Enqueue,
    Enqueued,
    Extended,
    Heartbeat,
    Nack,
    Nacked,
    Pause,
    Purge,
    Purged,
    Requeued,
    RequeueDead,
    Result,
    Resume,
)
from raftq.core.limits import MAX_BATCH_JOBS, MAX_DELAY_MS, MAX_ERROR_CHARS
from raftq.errors import (
    NoLeader,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    Rejected,
    TransportError,
)
from raftq.node import local
from raftq.node.process import server_settings
from raftq.raft.api import NodeStatus
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.server import ServerSettings, add_routes
from raftq.server.auth import security_from_config
from raftq.server.clock_probe import PeerClocks
from raftq.server.errors import invalid
from raftq.server.fields import INT64_MAX, check_int, check_queue
from raftq.server.render import render_cluster, render_job, render_queue
from raftq.server.request_ids import principal_of_token, scoped

__all__ = ["Node"]

_T = TypeVar("_T")
_Local = Callable[[str], Awaitable[_T]]
_BACKOFF_S = (0.05, 0.1, 0.2, 0.4, 0.8)


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
    ) -> None:
        self.config = config if isinstance(config, ClusterConfig) else load_config(config)
        self.config.node(node_id)  # ConfigError if unknown
        self.node_id = node_id
        self.settings = settings or server_settings(self.config)
        self._retry_ms = retry_ms
        self._forward_ssl = forward_ssl
        self._forward_token = forward_token
        # Ids submitted here are scoped as the leader scopes this token's forwarded ones.
        self._principal = principal_of_token(self.config.tokens, forward_token)
        self._raft = RaftNode(self.config, new_pysyncobj_engine(self.config, node_id))
        self._prefix = "/raftq"
        # The other nodes' clocks, asked under the prefix every node mounts the API with.
        self._clocks = PeerClocks(self.config, node_id, ssl_context=forward_ssl, prefix="/raftq")
        self._raft.set_clock_probe(self._clocks)
        self._transport: Transport | None = None
        self._started = False

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
        )
        self._prefix = prefix
        self._clocks.prefix = prefix

    async def start(self) -> None:
        """Start replicating (binds the raft port; does not wait for a leader)."""
        if self._started:
            raise RuntimeError(f"node {self.node_id} is already started")
        await self._raft.start()
        self._started = True

    async def stop(self) -> None:
        """Stop replicating and close the forwarding connections."""
        self._started = False
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
        await self._raft.stop()

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._retry_ms + extra_ms) / 1000
        attempt = 0
        while True:
            try:
                if self._raft.is_leader():
                    return await here(scoped(rid, self._principal))  # as a forward would be
                remote = self._remote()
                if remote is None or self._raft.leader_id() is None:
                    raise NoLeader("no leader known")
                return await there(remote, rid)
            except (NotLeader, NoLeader, Overloaded, OutcomeUnknown) as e:
                error: Exception = e
            remaining = deadline - loop.time()
            if remaining <= 0 or not self._started:
                raise error
            await asyncio.sleep(min(remaining, _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]))
            attempt += 1

    async def _submit(self, cmd_of: Callable[[int, str], Any], rid: str) -> Result:
        cmd = cmd_of(self._raft.now_ms(), rid)
        return await local.submit(self._raft, cmd, self.settings.submit_timeout_ms)

    async def _write(
        self, cmd_of: Callable[[int, str], Any], path: str, body: Any = None
    ) -> tuple[Result | None, Any]:
        """A plain command: ``(result, None)`` when applied here, ``(None, answer)`` when
        forwarded."""

        async def here(rid: str) -> tuple[Result | None, Any]:
            return await self._submit(cmd_of, rid), None

        async def there(t: Transport, rid: str) -> tuple[Result | None, Any]:
            answer = await t.request("POST", path, body, mutating=True, request_id=rid)
            return None, answer

        return await self._op(here, there)

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
        }
        ids = await self._enqueue(queue, [spec], batch=False)
        return ids[0]

    async def enqueue_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        """See ``raftq.client.Client.enqueue_many``."""
        return await self._enqueue(queue, list(jobs), batch=True)

    async def _enqueue(
        self, queue: str, specs: list[Mapping[str, Any]], *, batch: bool
    ) -> list[int]:
        limit = min(self.settings.max_batch_jobs, MAX_BATCH_JOBS)
        with local.validating():
            check_queue(queue, "queue")
            if not 1 <= len(specs) <= limit:
                raise invalid("jobs", f"must hold 1..{limit} items, got {len(specs)}")
            max_bytes = self.settings.max_payload_bytes
            new = tuple(
                local.new_job(s, f"jobs[{i}]" if batch else "body", max_bytes)
                for i, s in enumerate(specs)
            )

        def cmd(now_ms: int, rid: str) -> Enqueue:
            return Enqueue(now_ms=now_ms, request_id=rid, queue=queue, jobs=new)

        wire = [{k: v for k, v in s.items() if v is not None or k == "payload"} for s in specs]
        body = {"jobs": wire} if batch else wire[0]
        result, answer = await self._write(cmd, f"/v1/queues/{_q(queue)}/jobs", body)
        if result is None:
            return [int(i) for i in answer["ids"]] if batch else [int(answer["id"])]
        assert isinstance(result, Enqueued)
        return list(result.ids)

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
        with local.validating():
            names, wait = local.check_claim(
                queues,
                worker=worker,
                mx=max,
                lease_ms=lease_ms,
                wait_ms=wait_ms,
                max_wait_ms=self.settings.max_wait_ms,
            )
        timeout_ms = self.settings.submit_timeout_ms

        async def here(rid: str) -> list[ClaimedJob]:
            first = Claim(
                now_ms=self._raft.now_ms(),
                request_id=rid,
                queues=names,
                worker=worker,
                max=max,
                lease_ms=lease_ms,
            )
            return await local.claim_rounds(self._raft, first, wait, timeout_ms)

        async def there(t: Transport, rid: str) -> list[ClaimedJob]:
            body: dict[str, Any] = {"worker": worker, "max": max, "wait_ms": wait}
            if lease_ms is not None:
                body["lease_ms"] = lease_ms
            if isinstance(queues, str):
                path = f"/v1/queues/{_q(queues)}/claim"
            else:
                path, body["queues"] = "/v1/claim", list(names)
            answer = await t.request(
                "POST", path, body, mutating=True, request_id=rid, extra_ms=wait
            )
            return [ClaimedJob.from_wire(j) for j in answer["jobs"]]

        return await self._op(here, there, extra_ms=wait)

    async def heartbeat(self, job_id: int, token: int, *, lease_ms: int | None = None) -> int:
        """See ``raftq.client.Client.heartbeat``."""
        with local.validating():
            local.check_job_id(job_id)
            check_int(token, "token")
        body: dict[str, Any] = {"token": token}
        if lease_ms is not None:
            body["lease_ms"] = lease_ms

        def cmd(now_ms: int, rid: str) -> Heartbeat:
            return Heartbeat(
                now_ms=now_ms, request_id=rid, job_id=job_id, token=token, lease_ms=lease_ms
            )

        result, answer = await self._write(cmd, f"/v1/jobs/{job_id}/heartbeat", body)
        if result is None:
            return int(answer["lease_expires_ms"])
        assert isinstance(result, Extended)
        return result.lease_expires_ms

    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        """See ``raftq.client.Client.ack``."""
        with local.validating():
            local.check_job_id(job_id)
            check_int(token, "token")
            packed = local.pack_result(result, self.settings.max_payload_bytes)
        body: dict[str, Any] = {"token": token}
        if result is not None:
            body["result"] = result

        def cmd(now_ms: int, rid: str) -> Ack:
            return Ack(now_ms=now_ms, request_id=rid, job_id=job_id, token=token, result=packed)

        applied, _ = await self._write(cmd, f"/v1/jobs/{job_id}/ack", body)
        assert applied is None or isinstance(applied, Acked)

    async def ack_many(self, acks: Sequence[tuple[int, int, Any]]) -> list[Rejected | None]:
        """See ``raftq.client.Client.ack_many``: each ack is an ``ack`` of its own, all
        submitted together (group commit shares their log entries); a refusal is that ack's
        outcome, a cluster failure of any raises once all have finished. As over HTTP, a
        malformed item raises ``Rejected`` ``invalid`` before any ack is submitted."""
        limit = min(self.settings.max_batch_jobs, MAX_BATCH_JOBS)
        with local.validating():
            if not 1 <= len(acks) <= limit:
                raise invalid("acks", f"must hold 1..{limit} items, got {len(acks)}")
            for i, (job_id, token, result) in enumerate(acks):
                local.check_job_id(job_id)
                check_int(token, f"acks[{i}].token")
                local.pack_result(result, self.settings.max_payload_bytes)
        outcomes = await asyncio.gather(
            *(self.ack(job_id, token, result) for job_id, token, result in acks),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Rejected):
                raise outcome
        return [o if isinstance(o, Rejected) else None for o in outcomes]

    async def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        """See ``raftq.client.Client.nack``."""
        with local.validating():
            local.check_job_id(job_id)
            check_int(token, "token")
            if error is not None and type(error) is not str:
                raise invalid("error", "expected a string")
            if retry_in_ms is not None:
                check_int(retry_in_ms, "retry_in_ms", 0, MAX_DELAY_MS)
        body: dict[str, Any] = {"token": token}
        if error is not None:
            body["error"] = error
        if retry_in_ms is not None:
            body["retry_in_ms"] = retry_in_ms

        def cmd(now_ms: int, rid: str) -> Nack:
            return Nack(
                now_ms=now_ms,
                request_id=rid,
                job_id=job_id,
                token=token,
                error=None if error is None else error[:MAX_ERROR_CHARS],
                retry_in_ms=retry_in_ms,
            )

        result, answer = await self._write(cmd, f"/v1/jobs/{job_id}/nack", body)
        if result is None:
            return dict(answer)
        assert isinstance(result, Nacked)
        return {"id": job_id, "state": result.state, "run_at_ms": result.run_at_ms}

    async def cancel(self, job_id: int) -> None:
        """See ``raftq.client.Client.cancel``."""
        with local.validating():
            local.check_job_id(job_id)

        def cmd(now_ms: int, rid: str) -> Cancel:
            return Cancel(now_ms=now_ms, request_id=rid, job_id=job_id)

        result, _ = await self._write(cmd, f"/v1/jobs/{job_id}/cancel")
        assert result is None or isinstance(result, Cancelled)

    # -- reading --------------------------------------------------------------------------

    async def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]:
        """See ``raftq.client.Client.get_job``: a local read of this node's replica, or
        with ``linearizable`` a read after a barrier on the leader."""
        with local.validating():
            local.check_job_id(job_id)
        if not linearizable:
            return self._read_job(job_id)

        async def here(_rid: str) -> dict[str, Any]:
            await self._raft.barrier(self.settings.submit_timeout_ms)
            return self._read_job(job_id)

        async def there(t: Transport, _rid: str) -> dict[str, Any]:
            query = {"consistency": "linearizable"}
            answer: dict[str, Any] = await t.request("GET", f"/v1/jobs/{job_id}", query=query)
            return answer

        return await self._op(here, there)

    def _read_job(self, job_id: int) -> dict[str, Any]:
        with self._raft.read() as m:
            info = m.job_info(job_id)
        if info is None:
            raise Rejected("not_found", f"no job {job_id}", 404)
        return render_job(info)

    async def queues(self) -> list[dict[str, Any]]:
        """See ``raftq.client.Client.queues`` (this node's replica)."""
        with self._raft.read() as m:
            stats = [m.queue_stats(name) for name in sorted(m.queue_names())]
        return [render_queue(s) for s in stats if s is not None]

    async def queue(self, name: str) -> dict[str, Any]:
        """See ``raftq.client.Client.queue`` (this node's replica)."""
        with local.validating():
            check_queue(name, "queue")
        with self._raft.read() as m:
            stats = m.queue_stats(name)
        if stats is None:
            raise Rejected("not_found", f"no queue {name}", 404)
        return render_queue(stats)

    async def dead(self, queue: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """See ``raftq.client.Client.dead`` (this node's replica)."""
        with local.validating():
            check_queue(queue, "queue")
            check_int(limit, "limit", 1, 1000)
        with self._raft.read() as m:
            known = m.queue_stats(queue) is not None
            infos = m.dead_letters(queue, limit, 0)
        if not known:
            raise Rejected("not_found", f"no queue {queue}", 404)
        return [render_job(j) for j in infos]

    async def cluster(self) -> dict[str, Any]:
        """See ``raftq.client.Client.cluster``: this node's view."""
        st = self._raft.status()
        leader_api = None if st.leader is None else self._raft.api_address(st.leader)
        return render_cluster(st, leader_api)

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
        await self._queue_command(queue, "pause")

    async def resume(self, queue: str) -> None:
        """See ``raftq.client.Client.resume``."""
        await self._queue_command(queue, "resume")

    async def purge(self, queue: str) -> int:
        """See ``raftq.client.Client.purge``."""
        result, answer = await self._queue_command(queue, "purge")
        if result is None:
            return int(answer["purged"])
        assert isinstance(result, Purged)
        return result.count

    async def _queue_command(self, queue: str, what: str) -> tuple[Result | None, Any]:
        with local.validating():
            check_queue(queue, "queue")

        def cmd(now_ms: int, rid: str) -> Pause | Resume | Purge:
            if what == "pause":
                return Pause(now_ms=now_ms, request_id=rid, queue=queue)
            if what == "resume":
                return Resume(now_ms=now_ms, request_id=rid, queue=queue)
            return Purge(now_ms=now_ms, request_id=rid, queue=queue)

        return await self._write(cmd, f"/v1/queues/{_q(queue)}/{what}")

    async def requeue_dead(self, queue: str, ids: Sequence[int] | None = None) -> int:
        """See ``raftq.client.Client.requeue_dead``."""
        with local.validating():
            check_queue(queue, "queue")
            job_ids = (
                None
                if ids is None
                else tuple(check_int(v, f"ids[{i}]", 1, INT64_MAX) for i, v in enumerate(ids))
            )
        body = None if job_ids is None else {"ids": list(job_ids)}

        def cmd(now_ms: int, rid: str) -> RequeueDead:
            return RequeueDead(now_ms=now_ms, request_id=rid, queue=queue, job_ids=job_ids)

        result, answer = await self._write(cmd, f"/v1/queues/{_q(queue)}/dead/requeue", body)
        if result is None:
            return int(answer["requeued"])
        assert isinstance(result, Requeued)
        return result.count
