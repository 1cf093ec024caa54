"""How the client reaches the cluster: node choice, leader hints and retries.

- Nodes: requests go to the leader when known (learned from the ``X-Raftq-Leader`` header of
  any answer), else round-robin over the configured nodes, moving on after each failure.
- Idempotency: a mutating request carries one ``X-Request-Id`` (uuid4 hex) on every attempt,
  so the state machine applies it at most once and answers a retry with the first answer.
- Retries, until ``retry_ms`` has passed since the first attempt:
  * definite failures (nothing applied): connection refused / connect timeout, 503
    ``no_leader``/``not_leader``/``overloaded``/``draining``, 429: the next node, at once while
    untried nodes remain, else after a backoff;
  * uncertain failures (may have been applied): timeouts, connection reset mid-request, 503
    ``outcome_unknown``, other 5xx: retried with the same request id after a backoff.
  Backoff: 50 ms doubling to 1 s, with jitter (Retry-After is advisory: our cap is lower);
  the schedule and deadline are a ``raftq.retry.RetryPolicy``.
- When the budget is spent: ``NoLeader``/``Overloaded``/``OutcomeUnknown`` after matching 503s,
  ``TransportError`` after network failures. A 4xx is final: ``Rejected`` (``AuthError`` for
  401/403, naming the node and whether a token was sent).
- TLS failures are final too (``TlsError``, naming the node and whose certificate is at
  fault): the node's certificate cannot be verified, the handshake fails, or the node closes
  the connection right after the handshake, which is how a node that requires a client
  certificate refuses one under TLS 1.3 (the client sees only a reset; ``_refuses_client``
  tells that apart from a node that went away by connecting once more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from raftq.client.codec import decode, encode
from raftq.errors import (
    AuthError,
    NoLeader,
    OutcomeUnknown,
    Overloaded,
    RaftqError,
    Rejected,
    TlsError,
    TransportError,
)
from raftq.retry import CLUSTER_RETRYABLE, RetryPolicy

__all__ = ["Transport", "auth_error", "parse_nodes"]

logger = logging.getLogger(__name__)

LEADER_HEADER = "X-Raftq-Leader"
# ``draining``: the node stops; its claim leased nothing for this request (or, if a round was
# in flight, the retry with the same request id replays it): the next node at once.
_DEFINITE_503 = {
    "no_leader": NoLeader,
    "not_leader": NoLeader,
    "overloaded": Overloaded,
    "draining": NoLeader,
}


def parse_nodes(nodes: Sequence[str] | str, *, tls: bool) -> list[str]:
    """Base URLs (``scheme://host:port[/prefix]``) from ``"h:p,h:p"``, URLs, or a list."""
    items = [nodes] if isinstance(nodes, str) else list(nodes)
    out: list[str] = []
    for item in items:
        for part in item.split(","):
            text = part.strip()
            if not text:
                continue
            if "://" not in text:
                text = ("https://" if tls else "http://") + text
            u = urlsplit(text)
            if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment:
                raise ValueError(f"not a node address (host:port or http://host:port): {part!r}")
            try:
                u.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError as e:
                raise ValueError(f"bad port in node address {part!r}") from e
            base = f"{u.scheme}://{u.netloc}{u.path.rstrip('/')}"
            if base not in out:
                out.append(base)
    if not out:
        raise ValueError("no node addresses given")
    return out


@dataclass(frozen=True, slots=True)
class _Call:
    """One logical request, the same on every attempt (request id included)."""

    method: str
    path: str
    data: bytes | None
    headers: dict[str, str]
    query: Mapping[str, str] | None
    extra_ms: int


class _AttemptError(Exception):
    """One failed attempt: ``error`` is what to raise if it is the last one."""

    def __init__(self, error: RaftqError, *, definite: bool, forget_leader: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.definite = definite
        self.forget_leader = forget_leader


class Transport:
    """The HTTP side of ``Client``: one ``aiohttp.ClientSession``, node choice and retries."""

    def __init__(
        self,
        nodes: list[str],
        *,
        timeout_ms: int,
        retry_ms: int,
        token: str | None,
        ssl_context: ssl.SSLContext | None,
        use_msgpack: bool,
    ) -> None:
        self.nodes = nodes
        self.timeout_ms = timeout_ms
        self.retry_ms = retry_ms
        # Every failed attempt is one of these (``_attempt`` classifies the answer).
        self.retry_policy = RetryPolicy(
            retry_ms, cap_s=1.0, jitter=0.5, retry_on=(*CLUSTER_RETRYABLE, TransportError)
        )
        self.use_msgpack = use_msgpack
        self._token = token
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._leader: str | None = None
        self._next = 0
        first = urlsplit(nodes[0])
        self._scheme, self._prefix = first.scheme, first.path

    @property
    def leader(self) -> str | None:
        """Base URL of the leader's API as last learned, if any."""
        return self._leader

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl or True)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        """Close the session (and its persistent connections)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- for the worker stream (``raftq.client.stream``), which keeps its own connection ----

    def session(self) -> aiohttp.ClientSession:
        """The session (its connections, TLS context and loop) every request uses."""
        return self._get_session()

    @property
    def token(self) -> str | None:
        return self._token

    def pick(self) -> str:
        """The base URL of the node to try next: the leader when known."""
        return self._pick()

    def node_failed(self, base: str, *, forget_leader: bool) -> None:
        """``base`` failed: the next ``pick`` tries another node."""
        self._failed(base, forget_leader)

    def learn_leader(self, address: str) -> None:
        """The leader's API address (``host:port``) from a node's answer."""
        self._leader = self.base_url(address)

    async def find_leader(self) -> str | None:
        """The leader's base URL; when it is not known yet, asked of the nodes in turn (``GET
        /healthz``, whose answer names the leader: one attempt each, no retry). None when no
        node named one."""
        for base in self.nodes:
            if self._leader is not None:
                break
            with contextlib.suppress(_AttemptError, RaftqError):
                await self._attempt(base, _Call("GET", "/healthz", None, {}, None, 0))
        return self._leader

    def _pick(self) -> str:
        return self._leader or self.nodes[self._next % len(self.nodes)]

    def base_url(self, address: str) -> str:
        """The base URL of a node given as ``host:port`` (our scheme and prefix) or a URL."""
        if "://" in address:
            return parse_nodes(address, tls=False)[0]
        return f"{self._scheme}://{address}{self._prefix}"

    def _learn(self, headers: Mapping[str, str]) -> None:
        hint = headers.get(LEADER_HEADER)
        if hint:
            self._leader = self.base_url(hint)

    def _failed(self, base: str, forget_leader: bool) -> None:
        if base == self._leader:
            if forget_leader:
                self._leader = None
        else:
            self._next += 1

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        mutating: bool = False,
        node: str | None = None,
        extra_ms: int = 0,
        request_id: str | None = None,
    ) -> Any:
        """Send a request (retrying as the module docstring says) and return the decoded
        success body. ``node`` pins every attempt to one base URL; ``extra_ms`` lengthens
        each attempt's deadline and the retry budget (long-poll claims); ``request_id`` is
        the ``X-Request-Id`` of a mutating request (default: a fresh uuid4), for callers that
        already tried the same operation another way (``raftq.Node`` forwarding)."""
        attempts = self.retry_policy.start(extra_ms)
        headers = {"Accept": "application/msgpack" if self.use_msgpack else "application/json"}
        data: bytes | None = None
        if body is not None:
            data, headers["Content-Type"] = encode(body, self.use_msgpack)
        if mutating:
            headers["X-Request-Id"] = request_id or uuid.uuid4().hex
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        call = _Call(method, path, data, headers, query, extra_ms)
        tried: set[str] = set()
        while True:
            base = node or self._pick()
            tried.add(base)
            try:
                return await self._attempt(base, call)
            except _AttemptError as f:
                failure = f
            self._failed(base, failure.forget_leader)
            delay = attempts.next_delay()
            if delay is None or not self.retry_policy.retries(failure.error):
                raise failure.error from failure.__cause__
            untried = node is None and any(n not in tried for n in self.nodes)
            if failure.definite and untried and self._leader is None:
                delay = 0.0  # the next node at once
            logger.debug(
                "%s %s attempt %d failed (%s); retry in %.3f s",
                method,
                path,
                attempts.failed,
                failure.error,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt(self, base: str, call: _Call) -> Any:
        url = base + call.path
        total_s = (self.timeout_ms + call.extra_ms) / 1000
        timeout = aiohttp.ClientTimeout(total=total_s, connect=min(total_s, 5.0))
        try:
            async with self._get_session().request(
                call.method,
                url,
                data=call.data,
                headers=call.headers,
                params=call.query,
                timeout=timeout,
            ) as resp:
                raw = await resp.read()
                status = resp.status
                resp_headers = resp.headers
                content_type = resp.headers.get("Content-Type", "")
        except aiohttp.ClientConnectorCertificateError as e:
            raise _server_cert_error(base, e.certificate_error) from e
        except aiohttp.ClientConnectorSSLError as e:
            raise _handshake_error(base, e) from e
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            err = TransportError(f"cannot connect to {url}: {e}")
            raise _AttemptError(err, definite=True, forget_leader=True) from e
        except (TimeoutError, aiohttp.ClientError) as e:
            cut = isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
            if cut and base.startswith("https://") and await _refuses_client(base, self._ssl):
                raise _client_cert_error(base) from e
            err = TransportError(
                f"no answer from {url} ({type(e).__name__}: {e}); a write may have been applied"
            )
            raise _AttemptError(err, definite=False, forget_leader=True) from e
        self._learn(resp_headers)
        try:
            decoded = decode(raw, content_type)
        except ValueError as e:
            if 200 <= status < 300:
                raise TransportError(f"unreadable answer from {url}: {e}") from e
            decoded = None
        if 200 <= status < 300:
            return decoded
        code, message = _error_of(decoded, status, raw)
        if status in {503, 429}:
            cls = _DEFINITE_503.get(code)
            if cls is not None or status == 429:
                err503: RaftqError = (cls or Overloaded)(f"{code}: {message}")
                raise _AttemptError(err503, definite=True, forget_leader=code != "overloaded")
            raise _AttemptError(
                OutcomeUnknown(f"{code}: {message}"), definite=False, forget_leader=False
            )
        if status >= 500:
            raise _AttemptError(
                OutcomeUnknown(f"HTTP {status} {code}: {message}"),
                definite=False,
                forget_leader=False,
            )
        if status in (401, 403):
            raise auth_error(base, status, message, token_sent=self._token is not None)
        raise Rejected(code, message, status)


def _node(base: str) -> str:
    return urlsplit(base).netloc


def auth_error(base: str, status: int, message: str, *, token_sent: bool) -> AuthError:
    """A 401/403 naming the node, the status and what to do."""
    node = _node(base)
    if status == 403:
        fix = "use a token whose role and queues allow this call"
        head = f"{node} refused the token (403 forbidden)"
    elif token_sent:
        fix = "the token is not one of the cluster's: check it"
        head = f"{node} refused the token (401 unauthorized)"
    else:
        fix = "the cluster requires an API token: give the client one"
        head = f"{node} refused the request without a token (401 unauthorized)"
    problem = f"{head}: {message}"
    return AuthError(f"{problem}; {fix}", status, node=node, token_sent=token_sent, problem=problem)


# The TLS alerts of a node refusing the client's certificate (or its lack of one).
_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "HANDSHAKE_FAILURE")


def _client_cert_error(base: str) -> TlsError:
    node = _node(base)
    problem = (
        f"TLS handshake with {node} failed: the node requires a client certificate it trusts "
        "(mutual TLS) and refused this client's"
    )
    return TlsError(
        f"{problem}; give the client a certificate and key signed by the node's client_ca",
        node=node,
        kind="client_cert",
        problem=problem,
    )


def _server_cert_error(base: str, error: BaseException) -> TlsError:
    node = _node(base)
    why = getattr(error, "verify_message", None) or str(error)
    problem = f"TLS handshake with {node} failed: cannot verify the node's certificate ({why})"
    return TlsError(
        f"{problem}; trust the CA that signed it", node=node, kind="server_cert", problem=problem
    )


def _handshake_error(base: str, error: aiohttp.ClientConnectorSSLError) -> TlsError:
    reason = str(getattr(error.os_error, "reason", "") or "")
    if any(alert in reason for alert in _CLIENT_CERT_ALERTS):
        return _client_cert_error(base)
    node = _node(base)
    return TlsError(
        f"TLS handshake with {node} failed ({reason or error}): does the node serve https, "
        "with a certificate for this address?",
        node=node,
        kind="handshake",
    )


async def _refuses_client(base: str, context: ssl.SSLContext | None) -> bool:
    """Whether the node at ``base`` completes a TLS handshake and then closes the connection
    at once, or answers it with a client-certificate alert: how a node that requires a client
    certificate refuses this client's. A healthy node keeps an idle connection open (False
    after 0.5 s), a node that went away refuses it (False)."""
    u = urlsplit(base)
    if u.hostname is None:
        return False
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(u.hostname, u.port or 443, ssl=context or True), 2.0
        )
    except ssl.SSLError as e:
        return any(alert in str(e.reason or "") for alert in _CLIENT_CERT_ALERTS)
    except (OSError, TimeoutError):
        return False
    try:
        return await asyncio.wait_for(reader.read(1), 0.5) == b""
    except ssl.SSLError as e:
        return any(alert in str(e.reason or "") for alert in _CLIENT_CERT_ALERTS)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


def _error_of(decoded: Any, status: int, raw: bytes) -> tuple[str, str]:
    """``(code, message)`` of an error answer, whatever its shape."""
    if isinstance(decoded, dict):
        err = decoded.get("error")
        if isinstance(err, dict):
            return str(err.get("code", f"http_{status}")), str(err.get("message", ""))
    return f"http_{status}", raw[:200].decode("utf-8", "replace")
