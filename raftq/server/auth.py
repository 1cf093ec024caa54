"""Who may call what: bearer tokens with roles and queue patterns, checked on every node.

Every route has a ``Rule`` (its row of ``raftq.server.routes.ROUTES``; ``RULES`` by method
and path; a route without one is admin-only: fail closed). The ``Guard`` wraps each handler
and, before it runs:

1. node-to-node headers: a request marked ``X-Raftq-Forwarded`` must be signed by a node
   (``raftq.server.peer_auth``), else 401 ``unauthorized``, whatever else it carries and
   wherever it comes from (without a cluster secret nothing is signed: always 401);
2. open routes (``/healthz``, ``/readyz``, ``/``, ``/v1/openapi.json``, ``/v1/clock``;
   ``/metrics`` when so configured) are served to anyone;
3. with tokens configured: ``Authorization: Bearer <token>`` is hashed (SHA-256) and compared
   with *every* configured hash in constant time; none = 401 ``unauthorized``; the role must
   be among the rule's roles and the queue (from the path, or from the job named in the path)
   must match one of the token's patterns, else 403 ``forbidden`` (a job this node does not
   know is left to the handler: see below). The principal is set
   (``CALLER``, and its name in ``raftq.server.audit.PRINCIPAL`` for audit lines) while the
   handler runs. A request a node signed without a bearer token (a peer asking for
   ``/v1/cluster``) is the reader ``node:<id>``;
4. the per-principal rate limit (``raftq.server.limits``): 429 ``rate_limited``. A forward a
   node signed is not counted again: the node that received it counted it.

The node that receives a request authorizes it, and the leader authorizes a forwarded request
again with the same token (tokens are configured cluster-wide), so a follower can neither be
used to skip a check nor widen one. Queues named in a body (``POST /v1/claim``) are checked
where the body is parsed, on the node that executes the request
(``raftq.service.access.require_queues``).

The queue of a job named in the path (``/v1/jobs/{id}...``) is decided where the answer is
made, never "allowed" because the job is unknown: the guard refuses at once a job this node
knows in another queue (a job's queue never changes and ids are never reused, so that answer
is final), and the operation checks again on the node that executes the request:
``raftq.service.access.require_job`` on the leader right before it submits (after a barrier
if the job is unknown there: its enqueue may be in the log but not applied yet; still
unknown: 404), and the read of
``GET /v1/jobs/{id}`` checks the very job it answers with (after the barrier of a linearizable
read). Callers whose patterns cover every queue (``*``), admins, and auth off skip all of it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from raftq.config import ClusterConfig, Role, TokenConfig
from raftq.errors import TimeNotKnownError
from raftq.raft.api import NodeAPI
from raftq.server.audit import PRINCIPAL
from raftq.server.errors import ApiError
from raftq.server.forward import FORWARDED_HEADER
from raftq.server.limits import RateLimiter
from raftq.server.peer_auth import PeerKey
from raftq.server.routes import ROUTES, QueueFrom, Rule
from raftq.service.access import CALLER, Principal, forbidden_queue, queue_of

__all__ = [
    "CALLER",
    "RULES",
    "Guard",
    "Principal",
    "QueueFrom",
    "Rule",
    "Security",
    "security_from_config",
]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_OPEN: Final = Rule(None)
_ADMIN: Final = Rule(frozenset({Role.ADMIN}))

# (method, path template without prefix) -> rule, read from the routes table (a route without
# one, which cannot be mounted anyway, would be admin-only: fail closed).
RULES: Final[dict[tuple[str, str], Rule]] = {(r.method, r.path): r.rule for r in ROUTES}


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    """What the guard enforces (built from the config by ``security_from_config``).

    Attributes:
        tokens: the configured tokens; empty = auth off (every caller may do everything).
        secret: the cluster secret, keying node-to-node signatures (``None``: nothing is
            signed, and every ``X-Raftq-Forwarded`` is refused).
        metrics_open: ``/metrics`` is served without a token.
        rate_per_s: requests per second per principal (per client address with auth off);
            0 = no limit.
        rate_burst: requests a principal may send at once above the rate.
    """

    tokens: tuple[TokenConfig, ...] = ()
    secret: str | None = None
    metrics_open: bool = True
    rate_per_s: int = 0
    rate_burst: int = 0

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tokens)


def security_from_config(config: ClusterConfig) -> Security:
    return Security(
        tokens=config.tokens,
        secret=config.secret,
        metrics_open=config.metrics_open,
        rate_per_s=config.limits.rate_per_s,
        rate_burst=config.limits.rate_burst,
    )


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


class Guard:
    """Authenticates, authorizes and rate-limits the requests of one mounting of the API."""

    def __init__(self, security: Security, node: NodeAPI, peer_key: PeerKey | None = None) -> None:
        self.security = security
        self.peer_key = peer_key or PeerKey(security.secret, clock_ms=node.cluster_time_ms)
        self._node = node
        # (digest bytes, principal); every one is compared on each request (constant time)
        self._tokens = [
            (bytes.fromhex(t.sha256), Principal(t.name, t.role, t.queues)) for t in security.tokens
        ]
        self._limiter = (
            RateLimiter(security.rate_per_s, security.rate_burst)
            if security.rate_per_s > 0
            else None
        )

    def wrap(self, method: str, template: str, handler: _Handler) -> _Handler:
        """``handler`` behind the checks of the route ``method template`` (no prefix)."""
        rule = RULES.get((method, template), _ADMIN)
        if template == "/metrics" and self.security.metrics_open:
            rule = _OPEN

        async def guarded(request: web.Request) -> web.StreamResponse:
            signed = self._check_peer(request)
            principal: Principal | None = None
            if rule.roles is not None or FORWARDED_HEADER in request.headers:
                principal = self._authenticate(request, signed)
                if rule.roles is not None and principal is not None:
                    self._authorize(request, principal, rule)
                self._rate_limit(request, principal, signed)
            if principal is None:
                return await handler(request)
            caller = CALLER.set(principal)
            name = PRINCIPAL.set(principal.name)
            try:
                return await handler(request)
            finally:
                PRINCIPAL.reset(name)
                CALLER.reset(caller)

        return guarded

    def _check_peer(self, request: web.Request) -> str | None:
        """The signing node's id when the request carries node-to-node headers; 401 when
        their signature does not verify (always, without a secret). ``X-Raftq-Hop`` is not
        looked at: it confers nothing."""
        node = request.headers.get(FORWARDED_HEADER)
        if node is None:
            return None
        try:
            reason = self.peer_key.verify(request)
        except TimeNotKnownError as e:
            raise ApiError(503, "no_leader", str(e), retry_after_s=1) from e
        if reason is not None:
            raise _unauthorized(reason)
        return node[:64]

    def _authenticate(self, request: web.Request, signed: str | None) -> Principal | None:
        """The caller (``None`` with auth off); 401 without a known token."""
        if not self._tokens:
            return None
        header = request.headers.get("Authorization")
        if header is None and signed is not None:
            principal = Principal(f"node:{signed}", Role.READER, ("*",))
        else:
            principal = self._match(header)
        return principal

    def _match(self, header: str | None) -> Principal:
        if header is None:
            raise _unauthorized("this node requires a token: Authorization: Bearer <token>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("expected Authorization: Bearer <token>")
        digest = hashlib.sha256(token.strip().encode()).digest()
        found: Principal | None = None
        for known, principal in self._tokens:  # no early exit: the time says nothing
            if hmac.compare_digest(known, digest):
                found = principal
        if found is None:
            raise _unauthorized("unknown token")
        return found

    def _authorize(self, request: web.Request, principal: Principal, rule: Rule) -> None:
        if rule.roles is None or principal.role is Role.ADMIN:
            return
        if principal.role not in rule.roles:
            raise ApiError(
                403,
                "forbidden",
                f"token {principal.name!r} (role {principal.role.value}) may not "
                f"{request.method} {request.path[:200]}",
            )
        queue: str | None = None
        if rule.queue is QueueFrom.PATH:
            queue = request.match_info.get("queue")
        elif rule.queue is QueueFrom.JOB and principal.restricted:
            # Only an early refusal: an unknown job is decided by the handler (require_job,
            # or the job read), on the node that executes the request.
            queue = self._job_queue(request.match_info.get("id", ""))
        if queue is not None and not principal.may_touch(queue):
            raise forbidden_queue(principal, queue)

    def _job_queue(self, raw_id: str) -> str | None:
        """The queue of job ``raw_id`` in this node's state; ``None`` if malformed (the handler
        answers 400) or unknown here."""
        if not raw_id.isdigit() or len(raw_id) > 19:
            return None
        return queue_of(self._node, int(raw_id))

    def _rate_limit(
        self, request: web.Request, principal: Principal | None, signed: str | None
    ) -> None:
        if self._limiter is None or signed is not None:
            return
        key = principal.name if principal is not None else f"addr:{request.remote}"
        wait_s = self._limiter.take(key)
        if wait_s is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"more than {self.security.rate_per_s} requests/s for {key}; retry later",
                retry_after_s=wait_s,
            )
