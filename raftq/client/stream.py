"""The client side of the worker stream (``GET /v1/stream``, ``docs/http-api.md``).

``await client.stream(queues, worker=..., credit=...)`` opens one WebSocket to a node (the
leader: when the client does not know it yet, it asks the nodes first; a follower relays the
stream when the leader cannot be reached) over the client's session, TLS context and token.
The worker grants credit (``add_credit``); the leader leases jobs for it and pushes them once
their leases are committed (``jobs()`` hands them out); ``ack``/``nack``/``heartbeat`` travel
on the same connection and answer as the HTTP calls do.

When the connection ends (the node stops, leadership moves, a drain), the stream reconnects,
to another node when needed, with the client's retry policy (``raftq.retry``: the budget is
the client's ``retry_ms``, counted from the failure), subscribes again with the credit not
used yet, and sends again every operation not answered yet. Each operation carries its own
request id, the same on every connection, so one sent twice is applied once. Jobs leased to
the lost connection are not delivered: their leases expire and they are claimed again.

A node that does not serve the stream (an older release) answers the upgrade with 404:
``StreamUnsupportedError``, raised by ``Client.stream`` (``raftq.Worker`` then claims over HTTP).
A refusal (a queue outside the token's patterns, a bad field) is final: ``AuthError`` or
``Rejected``, raised by ``jobs()`` and by every operation in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp
import msgpack

from raftq.client.batch import Coalescer, ack_outcomes
from raftq.client.transport import Transport, auth_error
from raftq.client.types import ClaimedJob, LeaseExtended, heartbeat_body
from raftq.errors import (
    AuthError,
    NoLeader,
    OutcomeUnknown,
    RaftqError,
    Rejected,
    TransportError,
)

__all__ = ["JobStream", "StreamUnsupportedError"]

logger = logging.getLogger(__name__)

_HEARTBEAT_S = 5.0  # WebSocket pings: a node gone without a close is noticed
_MAX_ACKS = 1000  # acks per ``acks`` frame (the server's max_batch_jobs by default)
# Error frames after which the stream reconnects (anything else is a final refusal).
_RETRYABLE = frozenset(
    {
        "not_leader",
        "no_leader",
        "leader_changed",
        "draining",
        "overloaded",
        "outcome_unknown",
        "unavailable",
        "internal",
        "closed",
    }
)


class StreamUnsupportedError(TransportError):
    """The node does not serve ``GET /v1/stream`` (an older release): use HTTP claims."""


class _LostError(Exception):
    """The connection ended; ``error`` is the refusal to raise when it is final."""

    def __init__(self, error: RaftqError, *, final: bool, leader: str | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.final = final
        self.leader = leader


class JobStream:
    """A worker's stream of leased jobs; from ``Client.stream``. Use ``async with`` or
    ``close()``."""

    def __init__(
        self,
        transport: Transport,
        queues: str | Sequence[str],
        *,
        worker: str,
        credit: int,
        lease_ms: int | None = None,
    ) -> None:
        if type(credit) is not int or credit < 0:
            raise ValueError(f"credit must be a non-negative integer, got {credit!r}")
        self._t = transport
        names = [queues] if isinstance(queues, str) else list(queues)
        self._subscribe: dict[str, Any] = {"op": "subscribe", "queues": names, "worker": worker}
        if lease_ms is not None:
            self._subscribe["lease_ms"] = lease_ms
        self._credit = credit  # granted and not used by a pushed job yet
        self._jobs: deque[ClaimedJob] = deque()
        self._arrived = asyncio.Event()
        self._pending: dict[int, tuple[dict[str, Any], asyncio.Future[Any]]] = {}
        self._seq = 0
        self._out: asyncio.Queue[bytes] | None = None  # frames for the connection now open
        self._error: BaseException | None = None
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None  # the connection now open
        self.node: str | None = None  # base URL of the node the stream is connected to
        self.connections = 0  # how many connections were opened (1 + reconnects)
        self._acker: Coalescer[tuple[int, int, Any], None] = Coalescer(
            self._ack_one, self._ack_many, max_batch=_MAX_ACKS
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> JobStream:
        """Connect (retrying through cluster failures); raises ``StreamUnsupportedError``,
        ``AuthError``, ``NoLeader``/``TransportError`` once the retry budget is spent."""
        if self._task is None:
            ws = await self._connect()
            self._task = asyncio.create_task(self._serve(ws), name="raftq-stream")
        return self

    async def __aenter__(self) -> JobStream:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection; operations not answered yet raise ``TransportError``."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A task cancelled before it first ran never closes its connection itself.
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._fail(TransportError("the stream was closed"), final=False)

    async def settle(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every operation sent has been answered."""
        futures = [fut for _frame, fut in self._pending.values()]
        if futures:
            await asyncio.wait(futures, timeout=timeout_s)

    @property
    def closed(self) -> bool:
        return self._closed or self._error is not None

    @property
    def credit(self) -> int:
        """Credit granted and not used by a pushed job yet."""
        return self._credit

    # -- the worker's side ------------------------------------------------------------------

    async def jobs(self, timeout_ms: int | None = None) -> list[ClaimedJob]:
        """The jobs pushed since the last call, waiting for at least one (at most
        ``timeout_ms``: then ``[]``). Raises the stream's final error."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_ms is None else loop.time() + timeout_ms / 1000
        while not self._jobs:
            if self._closed:
                return []
            if self._error is not None:
                raise self._error
            self._arrived.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        out = list(self._jobs)
        self._jobs.clear()
        return out

    def add_credit(self, n: int) -> None:
        """Grant ``n`` more jobs (each pushed job uses one)."""
        if type(n) is not int or n < 0:
            raise ValueError(f"credit must be a non-negative integer, got {n!r}")
        if n == 0:
            return
        self._credit += n
        if self._out is not None:
            self._out.put_nowait(_pack({"op": "credit", "n": n}))

    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        """As ``Client.ack``: acks made together leave in one ``acks`` frame (one operation
        on the leader, as ``POST /v1/ack``), each with its own outcome."""
        await self._acker.call((int(job_id), token, result))

    async def _ack_one(self, item: tuple[int, int, Any]) -> None:
        job_id, token, result = item
        frame: dict[str, Any] = {"op": "ack", "id": job_id, "token": token}
        if result is not None:
            frame["result"] = result
        await self._op(frame)

    async def _ack_many(self, items: list[tuple[int, int, Any]]) -> list[Rejected | None]:
        acks = []
        for job_id, token, result in items:
            ack: dict[str, Any] = {"id": job_id, "token": token}
            if result is not None:
                ack["result"] = result
            acks.append(ack)
        return ack_outcomes(await self._op({"op": "acks", "acks": acks}))

    async def nack(
        self,
        job_id: int,
        token: int,
        *,
        error: str | None = None,
        retry_in_ms: int | None = None,
    ) -> dict[str, Any]:
        """As ``Client.nack``: ``{"id", "state", "run_at_ms"}``."""
        frame: dict[str, Any] = {"op": "nack", "id": int(job_id), "token": token}
        if error is not None:
            frame["error"] = error
        if retry_in_ms is not None:
            frame["retry_in_ms"] = retry_in_ms
        answer: dict[str, Any] = await self._op(frame)
        return answer

    async def release(self, job_id: int, token: int) -> dict[str, Any]:
        """As ``Client.release``: ``{"id", "state": "queued"}``."""
        frame = {"op": "release", "id": int(job_id), "token": token}
        answer: dict[str, Any] = await self._op(frame)
        return answer

    async def heartbeat(
        self,
        job_id: int,
        token: int,
        *,
        lease_ms: int | None = None,
        progress: Any = None,
        checkpoint: Any = None,
    ) -> LeaseExtended:
        """As ``Client.heartbeat``."""
        frame = {"op": "heartbeat", "id": int(job_id)}
        frame |= heartbeat_body(token, lease_ms, progress, checkpoint)
        return LeaseExtended.from_wire(await self._op(frame))

    async def _op(self, frame: dict[str, Any]) -> Any:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise TransportError("the stream was closed")
        self._seq += 1
        seq = self._seq
        frame["seq"] = seq
        frame["request_id"] = uuid.uuid4().hex  # the same on every connection
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[seq] = (frame, fut)
        if self._out is not None:
            self._out.put_nowait(_pack(frame))
        budget_s = (self._t.timeout_ms + self._t.retry_ms) / 1000
        try:
            return await asyncio.wait_for(asyncio.shield(fut), budget_s)
        except TimeoutError as e:
            raise OutcomeUnknown(f"no answer to {frame['op']} within {budget_s:g} s") from e
        finally:
            self._pending.pop(seq, None)

    # -- connections ------------------------------------------------------------------------

    def _url(self, base: str) -> str:
        scheme, rest = base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/stream"

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        """A new connection, subscribed, with every pending operation sent again."""
        attempts = self._t.retry_policy.start()
        headers = {}
        if self._t.token is not None:
            headers["Authorization"] = f"Bearer {self._t.token}"
        # Straight to the leader when a node names it: a follower would relay every frame
        # (one hop more each way, and its CPU). Asked once per connection: a leader that
        # cannot be reached is forgotten below, and the next node relays.
        await self._t.find_leader()
        while True:
            base = self._t.pick()
            try:
                ws = await self._t.session().ws_connect(
                    self._url(base),
                    headers=headers,
                    heartbeat=_HEARTBEAT_S,
                    max_msg_size=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                )
            except aiohttp.WSServerHandshakeError as e:
                if e.status == 404:
                    raise StreamUnsupportedError(f"{base} does not serve the worker stream") from e
                if e.status in (401, 403):
                    raise auth_error(base, e.status, e.message, token_sent=bool(headers)) from e
                if e.status not in (429, 503):
                    raise Rejected(
                        "invalid", f"{base}: HTTP {e.status} {e.message}", e.status
                    ) from e
                error: RaftqError = NoLeader(f"{base}: HTTP {e.status} {e.message}")
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                error = TransportError(f"cannot open the stream on {base}: {e}")
            else:
                self._install(ws, base)
                return ws
            self._t.node_failed(base, forget_leader=True)
            delay = attempts.next_delay()
            if delay is None:
                raise error
            await asyncio.sleep(delay)

    def _install(self, ws: aiohttp.ClientWebSocketResponse, base: str) -> None:
        """Queue the subscribe frame (with the credit not used yet) and the operations not
        answered yet, all before any later frame: nothing here awaits."""
        out: asyncio.Queue[bytes] = asyncio.Queue()
        out.put_nowait(_pack({**self._subscribe, "credit": self._credit}))
        for frame, _fut in self._pending.values():
            out.put_nowait(_pack(frame))
        self._out = out
        self._ws = ws
        self.node = base
        self.connections += 1

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read and write the connection; reconnect when it ends, until a final error."""
        try:
            while True:
                out = self._out
                assert out is not None
                sender = asyncio.create_task(_send_all(ws, out))
                try:
                    await self._read(ws)
                    lost = _LostError(NoLeader("the stream's connection ended"), final=False)
                except _LostError as e:
                    lost = e
                finally:
                    self._out = None
                    sender.cancel()
                    with contextlib.suppress(Exception):
                        await ws.close()
                if lost.final:
                    self._fail(lost.error)
                    return
                logger.debug("stream on %s lost (%s); reconnecting", self.node, lost.error)
                if lost.leader:
                    self._t.learn_leader(lost.leader)
                elif self.node is not None:
                    self._t.node_failed(self.node, forget_leader=True)
                ws = await self._connect()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await ws.close()
            raise
        except RaftqError as e:
            self._fail(e)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                break
            try:
                frame = msgpack.unpackb(msg.data, raw=False, strict_map_key=False)
                op = frame.get("op")
            except Exception as e:  # not a frame of this protocol: a broken connection
                error = TransportError(f"unreadable frame from {self.node}: {e}")
                raise _LostError(error, final=False) from e
            if op == "jobs":
                jobs = [ClaimedJob.from_wire(j) for j in frame["jobs"]]
                self._credit = max(0, self._credit - len(jobs))
                self._jobs.extend(jobs)
                self._arrived.set()
            elif op == "reply":
                self._reply(frame)
            elif op == "error":
                raise _lost_by(frame.get("error") or {})

    def _reply(self, frame: dict[str, Any]) -> None:
        entry = self._pending.get(frame.get("seq", -1))
        if entry is None or entry[1].done():
            return
        fut = entry[1]
        if frame.get("ok"):
            fut.set_result(frame.get("answer"))
            return
        err = frame.get("error") or {}
        reason, message = str(err.get("reason", "invalid")), str(err.get("message", ""))
        status = int(err.get("status", 400))
        if reason in ("unauthorized", "forbidden"):
            fut.set_exception(AuthError(message, status))
        else:
            fut.set_exception(Rejected(reason, message, status))

    def _fail(self, error: BaseException, *, final: bool = True) -> None:
        """Every operation not answered raises ``error``; ``final``: ``jobs()`` too."""
        if final and self._error is None:
            self._error = error
        for _frame, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: the caller may have gone
        self._arrived.set()


def _lost_by(error: dict[str, Any]) -> _LostError:
    reason, message = str(error.get("reason", "closed")), str(error.get("message", ""))
    leader = error.get("leader")
    if reason in _RETRYABLE:
        return _LostError(NoLeader(f"{reason}: {message}"), final=False, leader=leader)
    if reason in ("unauthorized", "forbidden"):
        return _LostError(AuthError(message, 401 if reason == "unauthorized" else 403), final=True)
    return _LostError(Rejected(reason, message, 400), final=True)


async def _send_all(ws: aiohttp.ClientWebSocketResponse, out: asyncio.Queue[bytes]) -> None:
    """Write the frames of ``out`` in order (a failure ends the connection: the reader sees
    it and the frames not answered are sent again on the next one)."""
    with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
        while True:
            await ws.send_bytes(await out.get())


def _pack(frame: dict[str, Any]) -> bytes:
    raw: bytes = msgpack.packb(frame, use_bin_type=True)
    return raw
