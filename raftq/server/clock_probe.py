"""Asking the other nodes for their wall clocks: ``GET /v1/clock`` and its client.

A leader whose wall clock is more than ``raft.clock_max_step_ms`` ahead of cluster time, or
whose cluster time is not confirmed yet (just started), lets a majority of the nodes' clocks
decide (``raftq.raft.cluster_clock``). It asks each other node ``GET <prefix>/v1/clock?nonce=
<hex>``; the answer is ``{"node": id, "wall_ms": W, "mac": hex | null}``.

The request is not signed: node-to-node signatures (``raftq.server.peer_auth``) carry a
timestamp checked against the receiver's clock, and this question must work between nodes
whose clocks disagree by hours. The *answer* is authenticated instead: with a cluster secret,
``mac`` is an HMAC-SHA256, under a key derived from the secret with its own label, of the
asker's fresh random nonce, the node id and ``wall_ms``, so neither a stale answer nor one
from anything but a node is taken. Without a secret (loopback clusters only) ``mac`` is
``null`` and answers are taken as they are. The route is open: a node's wall clock is no
secret (every HTTP ``Date`` header tells it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
from aiohttp import web

from raftq.config import ClusterConfig
from raftq.server.errors import invalid

__all__ = ["CLOCK_PATH", "PeerClocks", "clock_handler", "clock_mac"]

logger = logging.getLogger(__name__)

CLOCK_PATH: Final = "/v1/clock"
_LABEL: Final = b"raftq clock answer v1"
_TIMEOUT_S: Final = 1.0


def _key(secret: str | None) -> bytes | None:
    return None if secret is None else hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


def clock_mac(key: bytes, nonce: str, node: str, wall_ms: int) -> str:
    """The authenticator of one answer."""
    return hmac.new(key, f"{nonce}\n{node}\n{wall_ms}".encode(), hashlib.sha256).hexdigest()


def _valid_nonce(nonce: str) -> bool:
    return 16 <= len(nonce) <= 64 and all(c in "0123456789abcdef" for c in nonce)


def clock_handler(
    node_id: str, secret: str | None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler of ``GET /v1/clock?nonce=<16-64 lowercase hex>``."""
    key = _key(secret)

    async def clock(request: web.Request) -> web.StreamResponse:
        nonce = request.query.get("nonce", "")
        if set(request.query) - {"nonce"} or not _valid_nonce(nonce):
            raise invalid("query.nonce", "must be 16 to 64 lowercase hex digits")
        wall_ms = time.time_ns() // 1_000_000
        mac = None if key is None else clock_mac(key, nonce, node_id, wall_ms)
        return web.json_response({"node": node_id, "wall_ms": wall_ms, "mac": mac})

    return clock


class PeerClocks:
    """The leader's question to the other nodes (a ``raftq.raft.node.ClockProbe``).

    Args:
        config: the cluster (the other nodes' API addresses, the secret).
        node_id: this node (not asked).
        ssl_context: reach the other nodes over HTTPS with it (``[tls]``).
        prefix: the path prefix every node serves the API under (embedded nodes).
    """

    def __init__(
        self,
        config: ClusterConfig,
        node_id: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        prefix: str = "",
    ) -> None:
        self._peers = [(n.id, n.api) for n in config.nodes if n.id != node_id]
        self._key = _key(config.secret)
        self._ssl = ssl_context
        self._scheme = "https" if ssl_context is not None else "http"
        self.prefix = prefix

    async def __call__(self) -> list[int]:
        """Each answering node's wall clock now (ms): its answer plus half the round trip plus
        the time since the answer came. Nodes that do not answer in a second are left out."""
        nonce = secrets.token_hex(16)
        connector = aiohttp.TCPConnector(ssl=self._ssl or True)
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            answers = await asyncio.gather(
                *(self._ask(session, node, api, nonce) for node, api in self._peers)
            )
        now = time.monotonic()
        return [round(wall_ms + (now - at) * 1000) for wall_ms, at in filter(None, answers)]

    async def _ask(
        self, session: aiohttp.ClientSession, node: str, api: str, nonce: str
    ) -> tuple[float, float] | None:
        """(the node's wall clock at ``at``, ``at`` in monotonic s), or ``None``."""
        url = f"{self._scheme}://{api}{self.prefix}{CLOCK_PATH}?nonce={nonce}"
        sent = time.monotonic()
        try:
            async with session.get(url) as resp:
                body = await resp.json() if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            logger.debug("no clock from %s (%s): %r", node, api, e)
            return None
        at = time.monotonic()
        if not isinstance(body, dict):
            return None
        wall_ms, mac = body.get("wall_ms"), body.get("mac")
        if not isinstance(wall_ms, int) or isinstance(wall_ms, bool) or body.get("node") != node:
            return None
        if self._key is not None and not (
            isinstance(mac, str)
            and hmac.compare_digest(mac, clock_mac(self._key, nonce, node, wall_ms))
        ):
            logger.warning(
                "clock answer from %s (%s) not signed with the cluster secret", node, api
            )
            return None
        return wall_ms + (at - sent) * 1000 / 2, at
