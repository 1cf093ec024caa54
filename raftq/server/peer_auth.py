"""Authenticating node-to-node HTTP requests (forwards to the leader, peer views).

A follower that relays a request marks it ``X-Raftq-Forwarded: <its id>`` and names the
original client in ``X-Raftq-Client``. Those two headers change what the receiver does (it
never forwards again, a request without a token is the node's own, the rate limit does not
count it again, and audit lines name the relayed client), so a receiver must know they come
from a node, not from anyone who can reach its API:

- The sender adds ``X-Raftq-Peer-Auth: v1;<ms>;<hex>``: an HMAC-SHA256, under a key derived
  from the cluster secret, of the timestamp, the method, the path with its query, the two
  headers above, the request id and a hash of the ``Authorization`` header. The receiver
  refuses a missing or wrong signature, and one whose timestamp is more than ``MAX_SKEW_MS``
  away from its own clock (a captured request cannot be replayed later). Both sides read
  *cluster time* as they estimate it (``NodeAPI.cluster_time_ms``), not their wall clocks:
  cluster time follows real elapsed time on every node whatever one node's wall clock says
  (``raftq.raft.cluster_clock``), so a node whose clock is hours off still forwards to, and
  accepts forwards from, the others (Bug fixed: with wall clocks, every write sent through a
  follower to a leader more than 30 s off was refused ``401 ... expired``). A node that
  knows no cluster time yet (a brand-new cluster settling it) judges by its wall clock and
  answers a valid signature it cannot place in time with a retryable 503.
- Without a secret nothing can be verified, so the marker is refused from every address (the
  source address proves nothing: a reverse proxy on the node's machine makes every remote
  client a loopback peer). Nodes without a secret relay with ``X-Raftq-Hop`` instead
  (``raftq.server.forward``), which only stops a second hop and confers nothing; config
  validation refuses tokens or a rate limit in a multi-node cluster without a secret, so no
  cluster needs more than that.

The body is not signed: whoever can alter a request in flight can also read the bearer tokens
it carries; TLS on the API is the protection against that (docs/security.md).

The forwarding key is derived from the secret with its own label, distinct from PySyncObj's
derivation of its peer-encryption key from the same secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web
from yarl import URL

from raftq.errors import TimeNotKnownError

__all__ = ["MAX_SKEW_MS", "PEER_AUTH_HEADER", "PeerKey", "TimeNotKnownError"]

PEER_AUTH_HEADER: Final = "X-Raftq-Peer-Auth"
MAX_SKEW_MS: Final = 30_000  # nodes' readings of cluster time are within a tick of each other
_LABEL: Final = b"raftq http peer auth v1"
_VERSION: Final = "v1"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class PeerKey:
    """Signs this node's requests to other nodes and checks theirs.

    Args:
        secret: the cluster secret (``[cluster].secret``); ``None``: this node signs nothing
            and accepts no node-to-node marker.
        clock_ms: the time signatures carry and are checked against: cluster time as this
            node estimates it, ``None`` while it knows none (then its wall clock is used);
            the wall clock by default.
    """

    def __init__(
        self, secret: str | None, *, clock_ms: Callable[[], int | None] = _wall_ms
    ) -> None:
        self._clock_ms = clock_ms
        self._key = (
            None if secret is None else hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()
        )

    @property
    def signs(self) -> bool:
        """Whether requests carry a signature (a secret is configured)."""
        return self._key is not None

    @staticmethod
    def _mac(key: bytes, ts_ms: int, method: str, url: URL, headers: Mapping[str, str]) -> str:
        auth = headers.get("Authorization", "")
        fields = [
            _VERSION,
            str(ts_ms),
            method.upper(),
            url.path,  # decoded: the same on both sides whatever re-encoding happened
            url.query_string,
            headers.get("X-Raftq-Forwarded", ""),
            headers.get("X-Raftq-Client", ""),
            headers.get("X-Request-Id", ""),
            hashlib.sha256(auth.encode()).hexdigest(),
        ]
        return hmac.new(key, "\n".join(fields).encode(), hashlib.sha256).hexdigest()

    def sign(self, method: str, url: URL, headers: dict[str, str]) -> None:
        """Add the signature header to ``headers``, those of a request for ``url`` (its path
        and query are signed)."""
        if self._key is None:
            return
        now_ms = self._clock_ms()
        ts_ms = _wall_ms() if now_ms is None else now_ms
        mac = self._mac(self._key, ts_ms, method, url, headers)
        headers[PEER_AUTH_HEADER] = f"{_VERSION};{ts_ms};{mac}"

    def verify(self, request: web.BaseRequest) -> str | None:
        """Why ``request`` is not from a node (``None`` when it is). Raises ``TimeNotKnownError``
        for a valid signature whose time this node cannot judge yet."""
        if self._key is None:
            return (
                "node-to-node request refused: this cluster has no secret, so no node signs; "
                "without a secret nodes relay with X-Raftq-Hop"
            )
        value = request.headers.get(PEER_AUTH_HEADER, "")
        parts = value.split(";")
        if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit():
            return "node-to-node request without a valid signature"
        ts_ms = int(parts[1])
        headers = {k: request.headers[k] for k in _SIGNED if k in request.headers}
        expected = self._mac(self._key, ts_ms, request.method, request.rel_url, headers)
        if not hmac.compare_digest(expected, parts[2]):
            return "node-to-node request without a valid signature"
        now_ms = self._clock_ms()
        if abs((_wall_ms() if now_ms is None else now_ms) - ts_ms) <= MAX_SKEW_MS:
            return None
        if now_ms is None:  # a node's genuine signature: retry once this node knows the time
            raise TimeNotKnownError(
                "this node knows no cluster time yet (a brand-new cluster settling it): retry"
            )
        return "node-to-node signature expired (or the nodes' readings of cluster time differ)"


_SIGNED: Final = ("Authorization", "X-Raftq-Forwarded", "X-Raftq-Client", "X-Request-Id")
