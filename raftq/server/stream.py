"""The worker stream, ``GET /v1/stream``: a WebSocket on which the leader leases jobs ahead.

A worker opens one long-lived connection to any node and grants *credit* (how many more jobs
it takes). While the stream has credit, the leader runs long-poll claim rounds for it (each an
ordinary replicated ``Claim``, ``raftq.service.claims.claim_rounds``, so fencing, priorities
and pauses hold) and pushes each round's jobs as soon as its entry is committed: a job is
handed out only after its lease is committed on a majority, as over HTTP. Acks, nacks,
heartbeats and releases (of jobs a worker will not start) come back on the same connection;
each runs at once (never behind the claim loop), so concurrent ones share log entries by group
commit. Each frame's operation is the one of ``raftq.service.operations.Service`` the HTTP
route runs: same validation, same answers.

Frames are msgpack maps in binary messages (``docs/http-api.md``, "The worker stream"). A bad
frame, a forbidden queue, a lost leadership and a drain each end the stream with an error
frame and a close; the client reconnects (to another node). When the connection ends, the
stream claims nothing more; the leases it handed out expire as usual. A round proposed before
the end commits anyway (a proposal cannot be taken back): its jobs, which no worker will see,
are handed back at once (released: queued again in their place with the claim's attempt
undone; nacked with ``retry_in_ms=0`` on a cluster that has not enabled log version 4), not
left leased until their leases expire.

A follower relays the stream to the leader (``relay``): one WebSocket to the leader's
``/v1/stream`` with the forward's signed headers (``raftq.server.forward``), frames piped both
ways untouched.

Request ids: round ``k`` of a stream claims under ``<stream id>-<k>`` (its retries, and the
rounds of its long-poll, as ``claim_rounds`` derives them), the stream id being random and in
the caller's scope, so a round retried after an unknown outcome is not applied twice. An
ack, nack or heartbeat frame may carry its own ``request_id`` (the client's, reused when it
sends the frame again on a new connection), scoped like ``X-Request-Id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import msgpack
from aiohttp import web

from raftq.core.limits import MAX_CLAIM
from raftq.errors import AuthError, ClusterError, NoLeader, NotLeader, RaftqError, Rejected
from raftq.server.drain import DRAIN_KEY, Drain
from raftq.server.errors import ApiError, api_error
from raftq.service.access import CALLER
from raftq.service.fields import REQUEST_ID_RE, Fields, check_int
from raftq.service.operations import Claimer, Op
from raftq.service.request_ids import scoped
from raftq.service.values import no_ext, short

if TYPE_CHECKING:
    from raftq.server.handlers import Api

__all__ = ["STREAMS_KEY", "StreamError", "Streams", "decode_frame", "parse_credit", "serve"]

logger = logging.getLogger(__name__)

_HEARTBEAT_S: Final = 5.0  # WebSocket pings: a peer gone without a close is noticed
_SUBSCRIBE_TIMEOUT_S: Final = 10.0  # the first frame must come within this
_WATCH_S: Final = 0.1  # how often a stream looks at leadership and drain
_RETRY_S: Final = 0.05  # before a claim round is retried after an unknown outcome
_MAX_CREDIT: Final = 1_000_000  # credit a stream may hold (a client bug, not a limit to reach)
_OPS: Final = ("subscribe", "credit", "ack", "acks", "nack", "release", "heartbeat")
_HANDED_BACK: Final = "StreamClosed: the worker's stream ended before the job was pushed to it"


class StreamError(RaftqError):
    """A reason to end a stream: sent as ``{"op": "error", "error": {reason, message}}``."""

    def __init__(self, reason: str, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.leader = leader  # the leader's API address, when known (``not_leader``...)

    def frame(self) -> dict[str, Any]:
        error = {"reason": self.reason, "message": self.message}
        if self.leader is not None:
            error["leader"] = self.leader
        return {"op": "error", "error": error}


def _bad(message: str) -> StreamError:
    return StreamError("invalid", message)


def decode_frame(msg_type: aiohttp.WSMsgType, data: Any) -> dict[str, Any]:
    """A client frame as a map with a known ``op`` (``StreamError`` ``invalid`` otherwise)."""
    if msg_type is not aiohttp.WSMsgType.BINARY:
        raise _bad("frames are msgpack maps in binary WebSocket messages")
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=no_ext)
    except RecursionError as e:
        raise _bad("frame: nested too deeply") from e
    except Exception as e:  # the decoder raises many unrelated types for bad input
        raise _bad(f"frame: not valid msgpack ({short(e)})") from e
    if type(frame) is not dict:
        raise _bad("frame: expected a map")
    op = frame.get("op")
    if op not in _OPS:
        raise _bad(f"frame.op: must be one of {', '.join(_OPS)}, got {str(op)[:40]!r}")
    return frame


def _check(fn: Callable[[], Any]) -> Any:
    """Run a validation; its ``Rejected`` (the field at fault) becomes a ``StreamError``."""
    try:
        return fn()
    except Rejected as e:
        raise StreamError(e.reason, e.message) from e
    except AuthError as e:
        raise StreamError(e.code, e.message) from e


def parse_credit(frame: dict[str, Any], field: str) -> int:
    """The credit a ``subscribe`` (``credit``) or ``credit`` frame (``n``) grants."""
    return int(_check(lambda: check_int(frame.get(field), f"frame.{field}", 0, _MAX_CREDIT)))


@dataclass(frozen=True, slots=True)
class _LeaseOp:
    """An ack, nack or heartbeat frame, validated: its ``seq`` and the operation to run."""

    seq: int
    op: Op
    request_id: str | None


def _lease_op(api: Api, frame: dict[str, Any]) -> _LeaseOp:
    def parse() -> _LeaseOp:
        f = Fields(dict(frame), "frame")
        kind = f.raw("op")
        seq = f.req_int("seq")
        job_id = 0 if kind == "acks" else f.req_int("id", 1)
        raw_rid = f.raw("request_id")
        if raw_rid is not None and (
            type(raw_rid) is not str or REQUEST_ID_RE.fullmatch(raw_rid) is None
        ):
            raise Rejected("invalid", "frame.request_id: must match [A-Za-z0-9_.:-]{1,100}", 400)
        rid = raw_rid
        principal = CALLER.get()
        if rid is not None:
            rid = scoped(rid, None if principal is None else principal.name)
        if kind == "ack":
            op = api.service.ack(job_id, f, "msgpack")
        elif kind == "acks":  # several, each its own outcome: POST /v1/ack's operation
            op = api.service.ack_many(f, "msgpack")
        elif kind == "nack":
            op = api.service.nack(job_id, f)
        elif kind == "release":
            op = api.service.release(job_id, f)
        else:
            op = api.service.heartbeat(job_id, f, "msgpack")
        return _LeaseOp(seq, op, rid)

    result: _LeaseOp = _check(parse)
    return result


def _error_of(e: RaftqError, retry_after_s: int) -> dict[str, Any]:
    err = api_error(e, retry_after_s) or ApiError(500, "internal", "internal error")
    return {"reason": err.code, "message": err.message, "status": err.status}


class Streams:
    """The streams open on one mounting: a stop of the node ends them (``close_all``). It also
    keeps the claim rounds of ended streams until they are over (``keep``)."""

    def __init__(self) -> None:
        self._open: set[web.WebSocketResponse] = set()
        self._rounds: set[asyncio.Task[Any]] = set()

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold ``task`` (a round of an ended stream) until it is done, or the node stops."""
        self._rounds.add(task)
        task.add_done_callback(self._rounds.discard)

    def add(self, ws: web.WebSocketResponse) -> None:
        self._open.add(ws)

    def discard(self, ws: web.WebSocketResponse) -> None:
        self._open.discard(ws)

    async def close_all(self, _app: web.Application | None = None) -> None:
        """On the application's shutdown: every stream ends with ``draining``."""
        ending = StreamError("draining", "this node is stopping: reconnect to another node")
        for ws in list(self._open):
            with contextlib.suppress(Exception):
                await ws.send_bytes(msgpack.packb(ending.frame(), use_bin_type=True))
                await ws.close()
        rounds = list(self._rounds)
        for task in rounds:
            task.cancel()
        await asyncio.gather(*rounds, return_exceptions=True)


STREAMS_KEY: web.AppKey[Streams] = web.AppKey("raftq_streams", Streams)


async def serve(api: Api, request: web.Request) -> web.StreamResponse:
    """``GET /v1/stream``: the stream, here (the leader) or relayed to the leader."""
    drain = request.config_dict.get(DRAIN_KEY)
    if drain is not None and drain.draining:
        raise ApiError(
            503,
            "draining",
            f"node {api.node.node_id} is draining before a stop: stream from another node",
            retry_after_s=api.settings.retry_after_s,
        )
    ws = web.WebSocketResponse(max_msg_size=api.settings.max_body_bytes, heartbeat=_HEARTBEAT_S)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "invalid", "GET /v1/stream is a WebSocket upgrade (Upgrade: websocket)")
    upstream: aiohttp.ClientWebSocketResponse | None = None
    target = None if api.node.is_leader() else api._forward_target(request, api.node.leader_id())
    if target is not None:  # a follower: opened before the upgrade, so its refusals are HTTP
        # The leader's frames are not capped here: a jobs frame may be larger than a body.
        upstream = await api.forwarder.open_stream(request, target, max_msg_size=0)
    streams = request.config_dict.get(STREAMS_KEY)
    try:
        await ws.prepare(request)
        if streams is not None:
            streams.add(ws)
        if upstream is not None:
            await _relay(ws, upstream, drain, target or "")
        elif not api.node.is_leader():
            leader = api.leader_address()
            await _end(ws, _not_leader(api, leader))
        else:
            await _Session(api, ws, drain, streams or Streams()).run()
    finally:
        if streams is not None:
            streams.discard(ws)
        if upstream is not None:
            await upstream.close()
    return ws


def _not_leader(api: Api, leader: str | None) -> StreamError:
    if leader is None or leader == api.node.api_address(api.node.node_id):
        return StreamError("no_leader", "no leader is known; reconnect")
    return StreamError(
        "not_leader", f"this node is not the leader (leader: {leader}); reconnect", leader
    )


async def _send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> bool:
    """Send ``frame`` unless the connection is closed; False if it was not sent (whether a
    frame whose write failed reached the other side is unknown: True)."""
    if ws.closed:
        return False
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(msgpack.packb(frame, use_bin_type=True))
    return True


async def _end(ws: web.WebSocketResponse, error: StreamError) -> None:
    """The error frame, then the close."""
    await _send(ws, error.frame())
    await ws.close()


async def _relay(
    ws: web.WebSocketResponse,
    upstream: aiohttp.ClientWebSocketResponse,
    drain: Drain | None,
    leader: str,
) -> None:
    """Pipe frames between the client (``ws``) and the leader (``upstream``) until one side
    closes; a leader gone without closing, or a drain here, ends the client's stream with an
    error frame."""

    async def down() -> StreamError | None:
        await _pipe(upstream, ws)
        if upstream.close_code in (aiohttp.WSCloseCode.OK, aiohttp.WSCloseCode.GOING_AWAY):
            return None  # the leader ended it, after its error frame
        return StreamError(
            "leader_changed", f"the connection to the leader ({leader}) was lost; reconnect"
        )

    async def up() -> StreamError | None:
        await _pipe(ws, upstream)
        return None

    async def drained() -> StreamError | None:
        if drain is None:
            await asyncio.Event().wait()
        else:
            await drain.started.wait()
        return StreamError("draining", "this node is draining before a stop: reconnect")

    tasks = [asyncio.ensure_future(c) for c in (down(), up(), drained())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        error = next((t.result() for t in done if not t.cancelled() and not t.exception()), None)
    finally:
        for t in tasks:
            t.cancel()
    if error is not None:
        await _end(ws, error)
    else:
        await ws.close()


async def _pipe(
    src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Copy the messages of ``src`` to ``dst`` until ``src`` closes."""
    async for msg in src:
        if msg.type is aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type is aiohttp.WSMsgType.TEXT:
            await dst.send_str(msg.data)
        else:
            break


class _Session:
    """One stream on the leader: the claim loop, the lease operations, and the watch."""

    def __init__(
        self, api: Api, ws: web.WebSocketResponse, drain: Drain | None, streams: Streams
    ) -> None:
        self.api = api
        self.ws = ws
        self.drain = drain
        self.streams = streams
        self.credit = 0
        self.changed = asyncio.Event()  # credit granted, or a claim round answered
        self.ended: StreamError | None = None
        self.done = asyncio.Event()  # the stream ends (error, close, drain)
        self._ops: set[asyncio.Task[None]] = set()
        principal = CALLER.get()
        self.stream_id = scoped(
            "s" + secrets.token_hex(12), None if principal is None else principal.name
        )

    def alive(self) -> bool:
        return not self.done.is_set() and not self.ws.closed and not self._draining()

    def _draining(self) -> bool:
        return self.drain is not None and self.drain.draining

    def end(self, error: StreamError | None) -> None:
        if not self.done.is_set():
            self.ended = error
            self.done.set()

    def grant(self, n: int) -> None:
        if self.credit + n > _MAX_CREDIT:
            raise _bad(f"credit: more than {_MAX_CREDIT} outstanding")
        self.credit += n
        self.changed.set()

    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            claimer = await self._subscribe()
            tasks = [
                asyncio.create_task(self._claims(claimer)),
                asyncio.create_task(self._watch()),
                asyncio.create_task(self._read()),
            ]
            await self.done.wait()
        except StreamError as e:
            self.end(e)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.ended is not None:
            await _end(self.ws, self.ended)
        else:
            await self.ws.close()
        # Lease operations in flight finish (their commands may be applied anyway); their
        # replies are dropped.
        if self._ops:
            await asyncio.wait(self._ops, timeout=self.api.settings.submit_timeout_ms / 1000)

    async def _subscribe(self) -> Claimer:
        try:
            msg = await self.ws.receive(timeout=_SUBSCRIBE_TIMEOUT_S)
        except TimeoutError as e:
            raise _bad(f"no subscribe frame within {_SUBSCRIBE_TIMEOUT_S:g} s") from e
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
            raise StreamError("closed", "closed before subscribing")
        frame = decode_frame(msg.type, msg.data)
        if frame["op"] != "subscribe":
            raise _bad("the first frame must be {op: subscribe, ...}")
        credit = parse_credit(frame, "credit")

        def fields() -> Claimer:
            f = Fields(dict(frame), "frame")
            f.raw("op")
            f.raw("credit")
            claimer = self.api.service.claimer(f)
            f.done()
            return claimer

        claimer: Claimer = _check(fields)
        self.grant(credit)
        return claimer

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type is aiohttp.WSMsgType.ERROR:
                    error = self.ws.exception()
                    self.end(_bad(f"frame: {str(error)[:200] if error else 'unreadable'}"))
                    return
                frame = decode_frame(msg.type, msg.data)
                if frame["op"] == "credit":
                    if set(frame) - {"op", "n"}:
                        raise _bad("frame: a credit frame holds op and n only")
                    self.grant(parse_credit(frame, "n"))
                elif frame["op"] == "subscribe":
                    raise _bad("frame.op: already subscribed")
                else:
                    op = _lease_op(self.api, frame)
                    task = asyncio.create_task(self._lease_op(op))
                    self._ops.add(task)
                    task.add_done_callback(self._ops.discard)
            self.end(None)
        except StreamError as e:
            self.end(e)

    async def _lease_op(self, op: _LeaseOp) -> None:
        try:
            answer = await op.op(op.request_id)
        except (Rejected, AuthError) as e:
            error = _error_of(e, self.api.settings.retry_after_s)
            await _send(self.ws, {"op": "reply", "seq": op.seq, "ok": False, "error": error})
            return
        except (NotLeader, NoLeader) as e:
            leader = e.leader if isinstance(e, NotLeader) else None
            self.end(_not_leader(self.api, None if leader is None else self._api_of(leader)))
            return
        except ClusterError as e:  # unknown outcome, overloaded: the client sends it again
            self.end(StreamError(_error_of(e, 1)["reason"], f"{e}; reconnect and send again"))
            return
        except Exception:
            logger.exception("stream %s: a lease operation failed", self.stream_id)
            self.end(StreamError("internal", "internal error"))
            return
        await _send(self.ws, {"op": "reply", "seq": op.seq, "ok": True, "answer": answer})

    def _api_of(self, node_id: str) -> str | None:
        return self.api.node.api_address(node_id)

    async def _claims(self, claimer: Claimer) -> None:
        """While the stream has credit: claim rounds, each one's jobs pushed as soon as it is
        committed. Credit granted while a round is in flight starts another round at once
        (its command can share the next log entry) as long as the queues have a backlog,
        i.e. the last round answered brought all it asked for; otherwise one round at a
        time (the long-poll), as the HTTP worker's claims."""
        rounds = 0
        asked = 0  # credit the rounds in flight may use
        backlog = True
        inflight: dict[asyncio.Task[list[dict[str, Any]]], int] = {}  # round -> its max
        try:
            while self.alive():
                self.changed.clear()
                for task in [t for t in inflight if t.done()]:
                    mx = inflight.pop(task)
                    asked -= mx
                    jobs = task.result()  # a round's failure ends the stream (below)
                    backlog = len(jobs) >= mx
                    if jobs:
                        self.credit = max(0, self.credit - len(jobs))
                        if not await _send(self.ws, {"op": "jobs", "jobs": jobs}):
                            self._hand_back(jobs)
                free = self.credit - asked
                if free > 0 and (not inflight or backlog):
                    mx = min(free, MAX_CLAIM)
                    task = asyncio.create_task(self._round(claimer, rounds, mx))
                    task.add_done_callback(lambda _t: self.changed.set())
                    inflight[task] = mx
                    asked += mx
                    rounds += 1
                    continue
                await self.changed.wait()
        except (NotLeader, NoLeader) as e:
            leader = e.leader if isinstance(e, NotLeader) else None
            self.end(_not_leader(self.api, None if leader is None else self._api_of(leader)))
        except (Rejected, AuthError) as e:
            self.end(StreamError(_error_of(e, 1)["reason"], str(e)))
        except ClusterError as e:
            self.end(StreamError(_error_of(e, 1)["reason"], f"{e}; reconnect"))
        finally:
            # Not cancelled: a round already proposed commits anyway, and its jobs must be
            # handed back; one still waiting for work ends without proposing (``wanted``).
            for task in inflight:
                task.add_done_callback(self._handed_back)
                self.streams.keep(task)

    def _handed_back(self, task: asyncio.Task[list[dict[str, Any]]]) -> None:
        """A round of this stream that ended after the stream did: hand its jobs back."""
        if not task.cancelled() and task.exception() is None:
            self._hand_back(task.result())

    def _hand_back(self, jobs: list[dict[str, Any]]) -> None:
        """Give ``jobs`` (leased to this stream, never pushed) back at once."""
        if jobs:
            self.streams.keep(asyncio.create_task(self._give_back_all(jobs)))

    async def _give_back_all(self, jobs: list[dict[str, Any]]) -> None:
        outcomes = await asyncio.gather(
            *(self._give_back(job["id"], job["token"]) for job in jobs), return_exceptions=True
        )
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # its lease expires instead
                logger.info(
                    "stream %s: job %s could not be handed back: %r",
                    self.stream_id, job["id"], outcome,
                )  # fmt: skip

    async def _give_back(self, job_id: int, token: int) -> None:
        """Released (queued again, its attempt undone); on a cluster that has not enabled log
        version 4, nacked for immediate redelivery, which counts the attempt."""
        service = self.api.service
        try:
            await service.release(job_id, Fields({"token": token}, "release"))(None)
        except Rejected as e:
            if e.reason != "version_not_enabled":
                raise
            fields = {"token": token, "error": _HANDED_BACK, "retry_in_ms": 0}
            await service.nack(job_id, Fields(fields, "nack"))(None)

    async def _round(self, claimer: Claimer, turn: int, mx: int) -> list[dict[str, Any]]:
        """Claim round ``turn`` of up to ``mx`` jobs, proposed again under the same request id
        (and the same ``mx``) while its outcome is unknown."""
        rid = f"{self.stream_id}-{turn}"

        def wanted() -> bool:
            return self.alive()

        while True:
            try:
                jobs: list[dict[str, Any]] = await claimer.claim(
                    rid, mx, self.api.settings.max_wait_ms, wanted, turn
                )
                return jobs
            except (NotLeader, NoLeader):
                raise
            except ClusterError:
                if not self.alive() or not self.api.node.is_leader():
                    raise
                await asyncio.sleep(_RETRY_S)

    async def _watch(self) -> None:
        """End the stream when this node stops leading or starts draining."""
        while not self.done.is_set():
            if self._draining():
                self.end(StreamError("draining", "this node is draining before a stop: reconnect"))
            elif not self.api.node.is_leader():
                leader = self.api.leader_address()
                self.end(
                    StreamError(
                        "leader_changed",
                        f"this node is not the leader any more (leader: {leader}); reconnect",
                        leader,
                    )
                )
            await asyncio.sleep(_WATCH_S)
