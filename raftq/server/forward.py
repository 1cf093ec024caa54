"""Forwarding at the API level: a follower relays a request to the leader's HTTP API.

The leader alone proposes (and stamps ``now_ms``). A forwarded request carries
``X-Raftq-Forwarded: <follower id>`` and is never forwarded again, so a stale leader hint
costs at most one hop and can never loop. The follower relays the leader's answer as it is
(status, body, content type, ``Retry-After``, ``X-Raftq-Leader``).

Both headers are signed with the cluster secret (``raftq.server.peer_auth``): the leader
accepts them only from a node, and authorizes the request again with the client's own
``Authorization``, which is relayed unchanged. A node without a secret cannot sign, and an
unsigned ``X-Raftq-Forwarded`` is refused everywhere (401), so it marks its forwards
``X-Raftq-Hop: <its id>`` instead: that header only says "do not forward again" (anyone may
send it, and all it can obtain is a 503 ``not_leader`` from a follower); the leader treats the
request as the client's own in every other respect (token, rate limit, audit address).

One ``aiohttp.ClientSession`` (persistent connections, no connection cap: every forwarded
request stands for one inbound request, which bounds them) serves every forward of an app.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from raftq.server.errors import ApiError
from raftq.server.peer_auth import PeerKey

__all__ = [
    "CLIENT_HEADER",
    "FORWARDED_HEADER",
    "HOP_HEADER",
    "LEADER_HEADER",
    "NODE_HEADER",
    "Forwarder",
    "relayed",
]

logger = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Raftq-Forwarded"
LEADER_HEADER = "X-Raftq-Leader"
NODE_HEADER = "X-Raftq-Node"
CLIENT_HEADER = "X-Raftq-Client"  # the original client's address, for audit lines
HOP_HEADER = "X-Raftq-Hop"  # unsigned "already relayed once" of nodes without a secret
_REQUEST_HEADERS = ("Content-Type", "Accept", "X-Request-Id", "Authorization")
_RESPONSE_HEADERS = ("Content-Type", "Retry-After", LEADER_HEADER, NODE_HEADER)
_STREAM_HEARTBEAT_S = 5.0  # a relayed stream pings the leader: a dead one is noticed


def relayed(request: web.BaseRequest) -> bool:
    """Whether a node already relayed ``request`` (it must not be forwarded again). The
    guard has refused an ``X-Raftq-Forwarded`` whose signature does not verify."""
    return FORWARDED_HEADER in request.headers or HOP_HEADER in request.headers


class Forwarder:
    """Relays requests to another node's API.

    Args:
        node_id: this node's id, sent in ``X-Raftq-Forwarded``.
        retry_after_s: ``Retry-After`` of the 503 answers when the leader cannot be reached.
        ssl_context: when set, the leader is reached over HTTPS with it.
        observe: called with each forward's outcome (``ok``, ``unreachable``, ``no_answer``),
            for metrics.
        peer_key: signs the node-to-node headers (``None`` or a key without a secret: forwards
            carry only ``X-Raftq-Hop``, peer views no marker at all).
    """

    def __init__(
        self,
        node_id: str,
        *,
        retry_after_s: int,
        ssl_context: ssl.SSLContext | None = None,
        observe: Callable[[str], None] | None = None,
        peer_key: PeerKey | None = None,
    ) -> None:
        self._node_id = node_id
        self._peer_key = peer_key or PeerKey(None)
        self._observe = observe or (lambda _outcome: None)
        self._retry_after_s = retry_after_s
        self._ssl = ssl_context
        self._scheme = "https" if ssl_context is not None else "http"
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl or True)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def close(self) -> None:
        """Close the shared session (on app cleanup)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_json(self, address: str, path: str, *, timeout_ms: int) -> Any:
        """GET ``path`` of another node's API as JSON; ``None`` if it does not answer 200."""
        url = f"{self._scheme}://{address}{path}"
        timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        headers: dict[str, str] = {}
        if self._peer_key.signs:  # else a plain request: only an open /v1/cluster answers
            headers[FORWARDED_HEADER] = self._node_id
            self._peer_key.sign("GET", URL(path), headers)
        try:
            async with self._get_session().get(url, headers=headers, timeout=timeout) as resp:
                if resp.status != 200:
                    return None
                return await resp.json()
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            logger.debug("GET %s from %s failed: %r", path, address, e)
            return None

    async def open_stream(
        self, request: web.Request, address: str, *, max_msg_size: int
    ) -> aiohttp.ClientWebSocketResponse:
        """Open the WebSocket of ``request`` (``GET /v1/stream``) on ``address`` (the leader),
        with the headers and signature of a forward; the caller pipes the frames.

        Raises:
            ApiError: 503 ``no_leader`` if the leader could not be reached, or the error the
                leader answered the upgrade with.
        """
        url = f"{self._scheme}://{address}{request.rel_url}"
        headers = {h: request.headers[h] for h in _REQUEST_HEADERS if h in request.headers}
        headers.pop("Content-Type", None)
        if self._peer_key.signs:
            headers[FORWARDED_HEADER] = self._node_id
            headers[CLIENT_HEADER] = request.remote or "unknown"
            self._peer_key.sign("GET", request.rel_url, headers)
        else:
            headers[HOP_HEADER] = self._node_id
        try:
            ws = await self._get_session().ws_connect(
                url,
                headers=headers,
                max_msg_size=max_msg_size,
                heartbeat=_STREAM_HEARTBEAT_S,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as e:
            self._observe("ok")
            code = "not_found" if e.status == 404 else "no_leader"
            raise ApiError(
                e.status if e.status in (401, 403, 404) else 503,
                code,
                f"the leader ({address}) refused the stream: HTTP {e.status} {e.message}",
                retry_after_s=self._retry_after_s,
            ) from e
        except (TimeoutError, aiohttp.ClientError) as e:
            self._observe("unreachable")
            raise ApiError(
                503,
                "no_leader",
                f"the leader ({address}) cannot be reached; retry",
                retry_after_s=self._retry_after_s,
            ) from e
        self._observe("ok")
        return ws

    async def forward(
        self,
        request: web.Request,
        body: bytes,
        address: str,
        *,
        timeout_ms: int,
        mutating: bool,
    ) -> web.Response:
        """Send ``request`` (with ``body``) to ``address`` and return its answer.

        Raises:
            ApiError: 503 ``no_leader`` if the leader could not be reached (nothing was sent),
                503 ``outcome_unknown`` if a mutating request was sent but no answer came back.
        """
        url = f"{self._scheme}://{address}{request.rel_url}"
        headers = {h: request.headers[h] for h in _REQUEST_HEADERS if h in request.headers}
        if self._peer_key.signs:
            headers[FORWARDED_HEADER] = self._node_id
            headers[CLIENT_HEADER] = request.remote or "unknown"
            self._peer_key.sign(request.method, request.rel_url, headers)
        else:
            headers[HOP_HEADER] = self._node_id
        timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        try:
            async with self._get_session().request(
                request.method,
                url,
                data=body if body else None,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                out = {h: resp.headers[h] for h in _RESPONSE_HEADERS if h in resp.headers}
                self._observe("ok")
                return web.Response(status=resp.status, body=data, headers=out)
        except aiohttp.ClientSSLError as e:  # nothing was sent: the handshake failed
            self._observe("unreachable")
            logger.debug("TLS with leader %s failed: %s", address, e)
            raise ApiError(
                503,
                "no_leader",
                f"this node cannot forward to the leader ({address}): the TLS handshake "
                f"failed ({_tls_reason(e)}); set [tls] ca on every node to the CA that signed "
                "the nodes' certificates",
                retry_after_s=self._retry_after_s,
            ) from e
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            self._observe("unreachable")
            logger.debug("leader %s unreachable: %s", address, e)
            raise ApiError(
                503,
                "no_leader",
                f"the leader ({address}) cannot be reached; retry",
                retry_after_s=self._retry_after_s,
            ) from e
        except (TimeoutError, aiohttp.ClientError) as e:
            self._observe("no_answer")
            logger.debug("forward to %s failed: %r", address, e)
            if mutating:
                raise ApiError(
                    503,
                    "outcome_unknown",
                    f"no answer from the leader ({address}); the request may have been "
                    "applied: retry with the same X-Request-Id",
                    retry_after_s=self._retry_after_s,
                ) from e
            raise ApiError(
                503,
                "no_leader",
                f"no answer from the leader ({address}); retry",
                retry_after_s=self._retry_after_s,
            ) from e


def _tls_reason(error: aiohttp.ClientSSLError) -> str:
    """The TLS failure in a few words: the verification message, else the SSL reason."""
    cause = getattr(error, "certificate_error", None) or getattr(error, "os_error", None)
    return str(
        getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause or error
    )
