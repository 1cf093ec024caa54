"""The asyncio client of raftq's HTTP API (``docs/http-api.md``)."""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

from raftq import otel
from raftq.client.batch import Coalescer, ack_outcomes
from raftq.client.handle import ProducesHandles
from raftq.client.stream import JobStream
from raftq.client.transport import Transport, parse_nodes
from raftq.client.types import ClaimedJob, LeaseExtended, heartbeat_body
from raftq.core.limits import REQUEST_WINDOW_MS
from raftq.errors import Rejected, TransportError

__all__ = ["Client"]

# Retries must land inside the machine's request-id window to be deduplicated.
_MAX_RETRY_MS = REQUEST_WINDOW_MS - 10_000


def _q(name: str) -> str:
    return quote(name, safe="")


class Client(ProducesHandles):
    """Talks to any node of a cluster; goes to the leader once it knows it.

    Every mutating call carries a request id reused on each retry, so a retried call is
    applied at most once. Failures are retried for ``retry_ms`` (see
    ``raftq.client.transport``); then the call raises ``NoLeader``, ``Overloaded``,
    ``OutcomeUnknown`` or ``TransportError``. Refusals raise ``Rejected`` (``reason`` is the
    error code: ``invalid``, ``not_found``, ``stale_token``, ``lease_expired``...).

    Args:
        nodes: ``"host:port,host:port"``, ``"http://host:port"``, or a list of either.
        timeout_ms: deadline of one attempt (a long-poll claim adds its ``wait_ms``).
        retry_ms: how long to keep retrying a call (at most 110 000: the cluster remembers
            request ids for two minutes).
        token: sent as ``Authorization: Bearer <token>``.
        ssl: TLS context; node addresses without a scheme then use https.
        use_msgpack: msgpack bodies (bytes travel natively) instead of JSON.
        coalesce: concurrent ``enqueue`` calls to one queue, and concurrent ``ack`` calls,
            share HTTP requests (``enqueue_many``, ``POST /v1/ack``) while earlier ones are
            in flight; each call still returns or raises its own outcome once the cluster
            confirmed it (``raftq.client.batch``). A call alone is sent alone, at once.
        max_batch: the most operations one coalesced request carries (the server's
            ``max_batch_jobs``, 1000 by default, is the ceiling).

    Use ``async with Client(...) as c:`` or call ``await c.close()``; use one ``Client`` on one
    event loop (its connections belong to the loop that first used it).
    """

    def __init__(
        self,
        nodes: Sequence[str] | str,
        *,
        timeout_ms: int = 10_000,
        retry_ms: int = 30_000,
        token: str | None = None,
        ssl: ssl.SSLContext | None = None,
        use_msgpack: bool = True,
        coalesce: bool = True,
        max_batch: int = 1000,
    ) -> None:
        if type(timeout_ms) is not int or timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be a positive integer, got {timeout_ms!r}")
        if type(retry_ms) is not int or not 0 <= retry_ms <= _MAX_RETRY_MS:
            raise ValueError(f"retry_ms must be an integer in 0..{_MAX_RETRY_MS}")
        if type(max_batch) is not int or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        self._coalesce = coalesce
        self._max_batch = max_batch
        self._enqueuers: dict[str, Coalescer[dict[str, Any], int]] = {}
        self._acker: Coalescer[tuple[int, int, Any], None] | None = None
        self._streams: weakref.WeakSet[JobStream] = weakref.WeakSet()
        self._t = Transport(
            parse_nodes(nodes, tls=ssl is not None),
            timeout_ms=timeout_ms,
            retry_ms=retry_ms,
            token=token,
            ssl_context=ssl,
            use_msgpack=use_msgpack,
        )

    @property
    def nodes(self) -> list[str]:
        """The configured nodes' base URLs."""
        return list(self._t.nodes)

    @property
    def leader(self) -> str | None:
        """The leader's base URL as last learned, if any."""
        return self._t.leader

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the persistent connections (and the worker streams still open)."""
        for stream in list(self._streams):
            await stream.close()
        await self._t.close()

    async def _write(self, path: str, body: Any = None, *, extra_ms: int = 0) -> Any:
        return await self._t.request("POST", path, body, mutating=True, extra_ms=extra_ms)

    async def _read(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        return await self._t.request("GET", path, query=query)

    # -- producing ------------------------------------------------------------------------

    @otel.traced("send", "send", otel.sent_one)
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
        """Enqueue one job; returns its id (the existing job's id if ``key`` is live).
        ``group``: the job's fairness group in its queue (see ``set_limits``).
        ``depends_on``: ids of existing jobs; this one waits until they all succeeded (its
        claim then carries their results as ``parents``); if one fails, it is cancelled, or
        run anyway with ``on_dependency_failure="run"``. Unknown ids are refused."""
        deps = None if depends_on is None else [int(d) for d in depends_on]
        job = _job_body(
            payload,
            priority=priority,
            delay_ms=delay_ms,
            run_at_ms=run_at_ms,
            key=key,
            max_attempts=max_attempts,
            lease_ms=lease_ms,
            group=group,
            depends_on=deps,
            on_dependency_failure=on_dependency_failure,
        )
        # A job with dependencies goes alone: a refusal of its ids must not refuse the jobs
        # of other callers coalesced with it.
        if not self._coalesce or deps is not None or on_dependency_failure is not None:
            return await self._enqueue_one(queue, job)
        coalescer = self._enqueuers.get(queue)
        if coalescer is None:

            async def one(job: dict[str, Any]) -> int:
                return await self._enqueue_one(queue, job)

            async def many(jobs: list[dict[str, Any]]) -> list[int]:
                return await self._enqueue_many(queue, jobs)  # each caller has its own span

            coalescer = Coalescer(
                one, many, max_batch=self._max_batch, max_bytes=_BATCH_BYTES, size=_job_size
            )
            self._enqueuers[queue] = coalescer
        return await coalescer.call(job)

    async def _enqueue_one(self, queue: str, job: dict[str, Any]) -> int:
        answer = await self._write(f"/v1/queues/{_q(queue)}/jobs", job)
        return int(answer["id"])

    @otel.traced("send", "send", otel.sent_many)
    async def enqueue_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        """Enqueue several jobs atomically (all or none). Each mapping holds ``payload`` and
        optionally ``priority``, ``delay_ms``, ``run_at_ms``, ``key``, ``max_attempts``,
        ``lease_ms``, ``group``, ``depends_on`` (job ids, or ``"@N"``: the N-th job of this call)
        and ``on_dependency_failure`` (``"cancel"`` or ``"run"``). Returns the ids in order."""
        return await self._enqueue_many(queue, jobs)

    async def _enqueue_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        answer = await self._write(
            f"/v1/queues/{_q(queue)}/jobs", {"jobs": [dict(j) for j in jobs]}
        )
        return [int(i) for i in answer["ids"]]

    async def create_batch(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        queue: str | None = None,
        on_complete: Mapping[str, Any] | None = None,
        on_success: Mapping[str, Any] | None = None,
        on_death: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create jobs as one batch (all or none); returns ``{"batch", "ids"}``.

        Each job mapping holds ``payload``, its ``queue`` (or ``queue`` here for all) and
        the fields of ``enqueue_many`` (``depends_on`` too). Each callback, ``{"queue",
        "payload"}``, is enqueued exactly once when due: ``on_complete`` when every job
        finished, ``on_success`` when every job succeeded, ``on_death`` at the first death;
        its claim carries the jobs' results as ``parents``.
        """
        body: dict[str, Any] = {"jobs": [dict(j) for j in jobs]}
        if queue is not None:
            body["queue"] = queue
        callbacks = (("on_complete", on_complete), ("on_success", on_success))
        for name, cb in (*callbacks, ("on_death", on_death)):
            if cb is not None:
                body[name] = dict(cb)
        answer: dict[str, Any] = await self._write("/v1/batches", body)
        return answer

    async def batch(self, batch_id: int) -> dict[str, Any]:
        """A batch: ``ids``, ``counts`` by state, ``done``, callbacks ``fired``."""
        answer: dict[str, Any] = await self._read(f"/v1/batches/{int(batch_id)}")
        return answer

    # -- working --------------------------------------------------------------------------

    @otel.traced("receive", "receive", otel.received)
    async def claim(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        max: int = 1,
        lease_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[ClaimedJob]:
        """Lease up to ``max`` jobs, best priority first; waits up to ``wait_ms`` (long-poll,
        capped by the server) when none is ready. Returns ``[]`` if none came."""
        body: dict[str, Any] = {"worker": worker, "max": max, "wait_ms": wait_ms}
        if lease_ms is not None:
            body["lease_ms"] = lease_ms
        if isinstance(queues, str):
            path = f"/v1/queues/{_q(queues)}/claim"
        else:
            path = "/v1/claim"
            body["queues"] = list(queues)
        answer = await self._write(path, body, extra_ms=_extra_ms(wait_ms))
        return [ClaimedJob.from_wire(j) for j in answer["jobs"]]

    async def stream(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        credit: int,
        lease_ms: int | None = None,
    ) -> JobStream:
        """Open the worker stream (``GET /v1/stream``, a WebSocket): the leader leases jobs
        of ``queues`` ahead, up to the credit granted (``credit`` now, ``add_credit`` later),
        and pushes each once its lease is committed (``await s.jobs()``); ``s.ack``,
        ``s.nack`` and ``s.heartbeat`` go over the same connection. It reconnects by itself
        (``raftq.client.stream``); close it with ``await s.close()`` or ``async with``.
        Raises ``StreamUnsupportedError`` when the node does not serve it (an older release)."""
        stream = JobStream(self._t, queues, worker=worker, credit=credit, lease_ms=lease_ms)
        self._streams.add(stream)
        return await stream.open()

    async def heartbeat(
        self,
        job_id: int,
        token: int,
        *,
        lease_ms: int | None = None,
        progress: Any = None,
        checkpoint: Any = None,
    ) -> LeaseExtended:
        """Extend a lease, and store the job's ``progress`` and ``checkpoint`` when given
        (any JSON value or bytes, up to 64 KiB each once encoded; ``None`` leaves the stored
        one as it is). The checkpoint is handed to the job's next attempt
        (``ClaimedJob.checkpoint``). Returns the lease's new end (cluster time, ms) and
        ``cancel_requested``: the job was cancelled, stop working on it."""
        body = heartbeat_body(token, lease_ms, progress, checkpoint)
        answer = await self._write(f"/v1/jobs/{int(job_id)}/heartbeat", body)
        return LeaseExtended.from_wire(answer)

    @otel.traced("settle", "ack", otel.settled, queue=False)
    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        """Complete a job with an optional result (``Rejected`` ``stale_token`` etc. if the
        lease is not this token's any more)."""
        if not self._coalesce:
            return await self._ack_one((job_id, token, result))
        if self._acker is None:
            self._acker = Coalescer(self._ack_one, self.ack_many, max_batch=self._max_batch)
        await self._acker.call((job_id, token, result))

    async def _ack_one(self, item: tuple[int, int, Any]) -> None:
        job_id, token, result = item
        body: dict[str, Any] = {"token": token}
        if result is not None:
            body["result"] = result
        await self._write(f"/v1/jobs/{int(job_id)}/ack", body)

    async def ack_many(self, acks: Sequence[tuple[int, int, Any]]) -> list[Rejected | None]:
        """Complete several jobs in one request (``POST /v1/ack``); ``acks`` holds
        ``(job_id, token, result)`` (``result`` may be ``None``). Each ack has its own
        outcome: the list holds, in order, ``None`` for a completed job or the ``Rejected``
        of that ack alone (``stale_token``...). Cluster failures raise as for ``ack``."""
        items: list[dict[str, Any]] = []
        for job_id, token, result in acks:
            item: dict[str, Any] = {"id": int(job_id), "token": token}
            if result is not None:
                item["result"] = result
            items.append(item)
        return ack_outcomes(await self._write("/v1/ack", {"acks": items}))

    @otel.traced("settle", "nack", otel.settled, queue=False)
    async def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        """Fail this attempt; returns ``{"id", "state", "run_at_ms"}`` (``state`` is
        ``delayed``/``queued`` for a retry, ``dead`` when out of attempts)."""
        body: dict[str, Any] = {"token": token}
        if error is not None:
            body["error"] = error
        if retry_in_ms is not None:
            body["retry_in_ms"] = retry_in_ms
        answer: dict[str, Any] = await self._write(f"/v1/jobs/{int(job_id)}/nack", body)
        return answer

    @otel.traced("settle", "release", otel.settled, queue=False)
    async def release(self, job_id: int, token: int) -> dict[str, Any]:
        """Give a leased job back unstarted: it is queued again in its place and this claim
        does not count as an attempt; returns ``{"id", "state": "queued"}``. Needs log
        version 4 (``Rejected`` ``version_not_enabled`` before: nack it then)."""
        answer: dict[str, Any] = await self._write(
            f"/v1/jobs/{int(job_id)}/release", {"token": token}
        )
        return answer

    async def cancel(self, job_id: int) -> None:
        """Cancel a job that is not finished."""
        await self._write(f"/v1/jobs/{int(job_id)}/cancel")

    # -- reading --------------------------------------------------------------------------

    async def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]:
        """A job's state; ``linearizable`` reads through the leader's log."""
        query = {"consistency": "linearizable"} if linearizable else None
        answer: dict[str, Any] = await self._read(f"/v1/jobs/{int(job_id)}", query)
        return answer

    async def queues(self) -> list[dict[str, Any]]:
        """Every queue's stats."""
        answer = await self._read("/v1/queues")
        return list(answer["queues"])

    async def queue(self, name: str) -> dict[str, Any]:
        """One queue's stats (``Rejected`` ``not_found`` if it does not exist)."""
        answer: dict[str, Any] = await self._read(f"/v1/queues/{_q(name)}")
        return answer

    async def dead(self, queue: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Up to ``limit`` dead letters of ``queue``, oldest first."""
        answer = await self._read(f"/v1/queues/{_q(queue)}/dead", {"limit": str(int(limit))})
        return list(answer["jobs"])

    # -- admin ----------------------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        """Stop handing out jobs of ``queue`` (enqueues still accepted)."""
        await self._write(f"/v1/queues/{_q(queue)}/pause")

    async def resume(self, queue: str) -> None:
        """Undo ``pause``."""
        await self._write(f"/v1/queues/{_q(queue)}/resume")

    async def purge(self, queue: str) -> int:
        """Delete the queued, delayed and dead jobs of ``queue``; returns how many."""
        answer = await self._write(f"/v1/queues/{_q(queue)}/purge")
        return int(answer["purged"])

    async def requeue_dead(self, queue: str, ids: Sequence[int] | None = None) -> int:
        """Move dead letters (``ids``, or all) back to queued; returns how many moved."""
        body = None if ids is None else {"ids": [int(i) for i in ids]}
        answer = await self._write(f"/v1/queues/{_q(queue)}/dead/requeue", body)
        return int(answer["requeued"])

    async def configure(
        self, queue: str, *, dedup_window_ms: int | None = None, retention_ms: int | None = None
    ) -> dict[str, Any]:
        """Set ``queue``'s dedup window (how long a finished job's key still deduplicates,
        0..24 h) and retention (how long finished jobs stay readable, 0..7 d); ``None`` keeps
        the current value. Returns ``{queue, dedup_window_ms, retention_ms}`` as applied."""
        body: dict[str, Any] = {}
        if dedup_window_ms is not None:
            body["dedup_window_ms"] = dedup_window_ms
        if retention_ms is not None:
            body["retention_ms"] = retention_ms
        answer: dict[str, Any] = await self._write(f"/v1/queues/{_q(queue)}/configure", body)
        return answer

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
        """Create or replace schedule ``name``: a job of ``payload`` into ``queue`` every
        ``every_ms`` or at each time of the 5-field ``cron`` expression (in ``tz``, default
        UTC). ``overlap`` ``"skip"`` skips a slot while the previous fire's job is unfinished;
        slots missed (no leader) fire late when within ``catchup_ms`` (default 60 s). A
        replaced schedule keeps its last slot: no slot fires twice. Returns the schedule."""
        body = {
            "queue": queue,
            "payload": payload,
            **_set(
                every_ms=every_ms,
                cron=cron,
                tz=tz,
                priority=priority,
                max_attempts=max_attempts,
                lease_ms=lease_ms,
                overlap=overlap,
                catchup_ms=catchup_ms,
                paused=paused,
            ),
        }
        path = f"/v1/schedules/{_q(name)}"
        answer: dict[str, Any] = await self._t.request("PUT", path, body, mutating=True)
        return answer

    async def schedule(self, name: str) -> dict[str, Any]:
        """The schedule ``name`` with its ``last_fire_ms`` and ``next_fire_ms``."""
        answer: dict[str, Any] = await self._read(f"/v1/schedules/{_q(name)}")
        return answer

    async def schedules(self) -> list[dict[str, Any]]:
        """Every schedule (that the token may see), by name."""
        return list((await self._read("/v1/schedules"))["schedules"])

    async def delete_schedule(self, name: str) -> None:
        """Delete schedule ``name`` (the jobs it enqueued stay)."""
        await self._t.request("DELETE", f"/v1/schedules/{_q(name)}", mutating=True)

    async def trigger_schedule(self, name: str) -> dict[str, Any]:
        """Enqueue schedule ``name``'s job now, outside its slots: ``{name, id, fire_ms}``."""
        answer: dict[str, Any] = await self._write(f"/v1/schedules/{_q(name)}/trigger")
        return answer

    async def pause_schedule(self, name: str) -> None:
        """Stop firing ``name``; the slots while paused never fire."""
        await self._write(f"/v1/schedules/{_q(name)}/pause")

    async def resume_schedule(self, name: str) -> None:
        """Fire ``name`` again, from its next slot."""
        await self._write(f"/v1/schedules/{_q(name)}/resume")

    async def limits(self, queue: str) -> dict[str, Any]:
        """``queue``'s limits and their use: ``{queue, concurrency, rate, group_concurrency,
        group_rate, usage}`` (``Rejected`` ``not_found`` if the queue does not exist)."""
        answer: dict[str, Any] = await self._read(f"/v1/queues/{_q(queue)}/limits")
        return answer

    async def set_limits(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, int] | None = None,
        group_concurrency: int | None = None,
        group_rate: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Replace ``queue``'s limits (``None``: no such limit). ``concurrency``: leased jobs
        of the queue at most; ``group_concurrency``: of one group; ``rate`` and ``group_rate``:
        ``(limit, period_ms)``, claims within any window of ``period_ms`` at most. Returns the
        limits as applied. Needs log version 3 enabled (``raftq upgrade enable``)."""
        body = limits_body(concurrency, rate, group_concurrency, group_rate)
        path = f"/v1/queues/{_q(queue)}/limits"
        answer: dict[str, Any] = await self._t.request("PUT", path, body, mutating=True)
        return answer

    async def transfer_leadership(self, to: str | None = None) -> dict[str, Any]:
        """Hand leadership to node ``to`` (an id; ``None``: the most caught-up follower);
        returns ``{leader, leader_api, previous}`` once it moved."""
        body = None if to is None else {"to": to}
        answer: dict[str, Any] = await self._write("/v1/cluster/leader", body)
        return answer

    async def enable_version(self, version: int | None = None) -> int:
        """Enable log ``version`` (``None``: the leader's own) once every node applies it;
        returns the enabled version (``Rejected`` ``version_not_supported`` otherwise)."""
        body = None if version is None else {"version": int(version)}
        answer = await self._write("/v1/cluster/version", body)
        return int(answer["enabled_version"])

    async def drain(self, node: str) -> dict[str, Any]:
        """Ask one node (id, ``host:port`` or URL, as ``cluster_of``) to drain: it stops
        taking claims, hands leadership over and exits 0. Returns ``{node, draining,
        leader}`` at once; the process exits afterwards."""
        answer: dict[str, Any] = await self._t.request(
            "POST", "/v1/node/drain", node=await self._node_url(node)
        )
        return answer

    async def cluster(self) -> dict[str, Any]:
        """``GET /v1/cluster`` as seen by whichever node answers."""
        answer: dict[str, Any] = await self._read("/v1/cluster")
        return answer

    async def members(self) -> list[dict[str, Any]]:
        """``GET /v1/cluster/members``: ``[{id, api, raft, voter}]`` of the replicated
        membership as the answering node knows it."""
        answer = await self._read("/v1/cluster/members")
        return list(answer["members"])

    async def add_member(self, node_id: str, api: str, raft: str) -> list[dict[str, Any]]:
        """Add the voter ``node_id`` (API and raft ``host:port``); returns the members once
        the change is committed. Start the node with ``raftq serve --join`` (or before)."""
        body = {"id": node_id, "api": api, "raft": raft}
        answer = await self._write("/v1/cluster/members", body)
        return list(answer["members"])

    async def remove_member(self, member: str) -> list[dict[str, Any]]:
        """Remove the voter ``member`` (id or raft address); returns the members left."""
        path = f"/v1/cluster/members/{quote(member, safe='')}"
        answer = await self._t.request("DELETE", path, mutating=True)
        return list(answer["members"])

    async def backup(self, *, wait_ms: int = 120_000) -> bytes:
        """``POST /v1/cluster/backup`` (admin): the cluster's state as of now, written by the
        leader after a barrier (it holds every write acknowledged before the call), as the
        bytes of a snapshot file for ``raftq data restore``. ``wait_ms`` is added to the
        timeout for writing and sending the file (about 13 s per million jobs)."""
        data = await self._t.request("POST", "/v1/cluster/backup", extra_ms=wait_ms)
        if not isinstance(data, bytes):
            raise TransportError(f"the backup answer is not a file ({type(data).__name__})")
        return data

    async def cluster_of(self, node: str) -> dict[str, Any]:
        """``GET /v1/cluster`` of one node: ``node`` is ``host:port``, a URL, or a node id
        (looked up in the cluster's node list)."""
        answer: dict[str, Any] = await self._t.request(
            "GET", "/v1/cluster", node=await self._node_url(node)
        )
        return answer

    async def _node_url(self, node: str) -> str:
        """The base URL of ``node``: ``host:port``, a URL, or a node id (looked up in the
        cluster's node list)."""
        if ":" not in node:
            view = await self.cluster()
            apis = [n["api"] for n in view.get("nodes", []) if n.get("id") == node]
            if not apis or not apis[0]:
                raise TransportError(f"no node {node!r} in the cluster")
            node = apis[0]
        return self._t.base_url(node)


# Payload bytes per coalesced enqueue request: one request is one log entry, and entries of
# megabytes kept the leader's tick thread busy past election timeouts (measured with 10 KiB
# payloads and 1000-job batches: 2 elections in one benchmark run). Below aiohttp's 1 MiB
# "large body" threshold too.
_BATCH_BYTES = 512 * 1024


def _set(**fields: Any) -> dict[str, Any]:
    """The fields given (not ``None``)."""
    return {k: v for k, v in fields.items() if v is not None}


def _job_size(job: dict[str, Any]) -> int:
    """A job's payload size when it is bytes or text (other values count as small)."""
    payload = job.get("payload")
    if isinstance(payload, bytes | bytearray | str):
        return len(payload) + 64
    return 64


def _extra_ms(wait_ms: int) -> int:
    """The extra per-attempt deadline of a long-poll (non-ints are left to the server)."""
    return wait_ms if type(wait_ms) is int and wait_ms > 0 else 0


def limits_body(
    concurrency: int | None,
    rate: tuple[int, int] | None,
    group_concurrency: int | None,
    group_rate: tuple[int, int] | None,
) -> dict[str, Any]:
    """The body of ``PUT /v1/queues/{queue}/limits``."""

    def pair(r: tuple[int, int] | None) -> dict[str, int] | None:
        return None if r is None else {"limit": r[0], "period_ms": r[1]}

    return {
        "concurrency": concurrency,
        "rate": pair(rate),
        "group_concurrency": group_concurrency,
        "group_rate": pair(group_rate),
    }


def _job_body(payload: Any, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"payload": payload}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body
