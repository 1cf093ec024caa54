"""The aiohttp application of one node: ``create_app`` (standalone) and ``add_routes`` (mount
the API, under a prefix if wanted, on an application the caller owns).

Every handler is wrapped by ``_endpoint``: whatever it raises becomes an
``{"error": {"code", "message"}}`` answer (``ApiError`` as given, raftq's errors as
``raftq.server.errors.api_error`` maps them (cluster errors: 503 with ``Retry-After``),
anything unexpected as 500 ``internal``, logged), and every answer carries
``X-Raftq-Leader`` (the leader's ``host:port`` when known) and ``X-Raftq-Node``. The standalone
app also turns aiohttp's own errors (unknown route 404, wrong method 405) into that shape with
``error_middleware``; ``add_routes`` leaves the host application's middlewares alone.

``_endpoint`` also does per-request observability, so that it works on a host application
too (no middleware needed): it times the request into ``raftq_http_request_duration_seconds``
labelled with the route *template* it was registered with (``/v1/jobs/{id}``, not the path),
and serves it inside ``log_context.request_scope`` so every line logged meanwhile carries the
request id (the client's ``X-Request-Id``, else a generated one, which is echoed back in
``X-Raftq-Request`` and never used for deduplication). The standalone app's
``error_middleware`` counts requests that match no route as ``route="unmatched"``.

Inside ``_endpoint``, every handler runs behind ``raftq.server.auth.Guard`` (node-to-node
signatures, tokens, roles, queue patterns, rate limit), so the checks hold on a host
application too. The routes are the rows of ``raftq.server.routes.ROUTES`` (handler, rule and
OpenAPI operation of each); ``GET /v1/openapi.json`` serves the document of
``raftq.server.openapi``.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from raftq.errors import RaftqError
from raftq.log_context import request_scope
from raftq.raft.api import NodeAPI
from raftq.server.auth import Guard, Security
from raftq.server.clock_probe import clock_handler
from raftq.server.dashboard import dashboard_response, wants_html
from raftq.server.errors import ApiError, api_error
from raftq.server.forward import LEADER_HEADER, NODE_HEADER, Forwarder
from raftq.server.handlers import Api
from raftq.server.metrics import CONTENT_TYPE, Metrics
from raftq.server.openapi import openapi_document
from raftq.server.peer_auth import PeerKey
from raftq.server.routes import APP_HANDLERS, ROUTES
from raftq.server.settings import ServerSettings
from raftq.server.stream import STREAMS_KEY, Streams
from raftq.server.wire import error_response
from raftq.service.operations import Service

__all__ = [
    "METRICS_KEY",
    "REQUEST_HEADER",
    "Overrides",
    "add_routes",
    "application",
    "create_app",
    "error_middleware",
]

logger = logging.getLogger(__name__)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_HEADER = "X-Raftq-Request"  # the id this node logged the request under
METRICS_KEY: web.AppKey[Metrics] = web.AppKey("raftq_metrics", Metrics)


@dataclass(frozen=True, slots=True)
class Overrides:
    """The parts a mounting builds, replaceable. Only the positive controls of the checker
    replace them (``raftq.server.testfaults.overrides``, behind its fence); the defaults are
    the real parts, and no handler or check knows whether they were replaced.

    Attributes:
        service: builds the operations on the node.
        api: the handlers' class.
        peer_key: the class of the key that signs and verifies node-to-node requests.
    """

    service: Callable[[NodeAPI, ServerSettings], Service] = Service
    api: type[Api] = Api
    peer_key: type[PeerKey] = PeerKey


_HTTP_CODES = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "no_route",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def create_app(
    node: NodeAPI,
    settings: ServerSettings | None = None,
    *,
    forward_ssl: ssl.SSLContext | None = None,
    security: Security | None = None,
    overrides: Overrides | None = None,
) -> web.Application:
    """A standalone application serving the v1 API of ``node``.

    Args:
        node: the local raft node (``raftq.raft.node.RaftNode`` or any ``NodeAPI``).
        settings: limits and deadlines (defaults when ``None``).
        forward_ssl: reach the leader over HTTPS with this context when forwarding.
        security: tokens, cluster secret, rate limit (default: auth off, no secret).
        overrides: replaced parts (``Overrides``; test faults only).
    """
    settings = settings or ServerSettings()
    app = application(settings)
    add_routes(app, node, settings, forward_ssl=forward_ssl, security=security, overrides=overrides)
    return app


def application(settings: ServerSettings) -> web.Application:
    """An empty application as a node serves its API on: the body limit, one error shape."""
    return web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])


def add_routes(
    app: web.Application,
    node: NodeAPI,
    settings: ServerSettings | None = None,
    prefix: str = "",
    *,
    forward_ssl: ssl.SSLContext | None = None,
    security: Security | None = None,
    overrides: Overrides | None = None,
) -> None:
    """Mount the v1 API of ``node`` on ``app`` under ``prefix`` (``""`` or ``"/raftq"``...).

    Every node of a cluster must mount the API under the same prefix: a follower forwards a
    request to the same path on the leader's API address. The forwarding session is closed
    on ``app``'s cleanup. ``security`` is what every route checks (``raftq.server.auth``;
    default: auth off and no secret: node-to-node headers refused, forwards marked with the
    unsigned ``X-Raftq-Hop``). ``overrides`` replaces parts (test faults only).
    """
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError(f"prefix must be empty or like '/raftq', got {prefix!r}")
    settings = settings or ServerSettings()
    parts = overrides or Overrides()
    security = security or Security()
    peer_key = parts.peer_key(security.secret, clock_ms=node.cluster_time_ms)
    guard = Guard(security, node, peer_key)
    metrics = Metrics(node)
    if METRICS_KEY not in app:  # the first mounting's metrics count unmatched requests
        app[METRICS_KEY] = metrics
    forwarder = Forwarder(
        node.node_id,
        retry_after_s=settings.retry_after_s,
        ssl_context=forward_ssl,
        observe=metrics.observe_forward,
        peer_key=guard.peer_key,
    )
    api = parts.api(node, settings, forwarder, parts.service(node, settings))

    async def close_forwarder(_app: web.Application) -> None:
        await forwarder.close()

    app.on_cleanup.append(close_forwarder)
    if STREAMS_KEY not in app:  # worker streams end (``draining``) when the app shuts down
        app[STREAMS_KEY] = Streams()
        app.on_shutdown.append(app[STREAMS_KEY].close_all)

    async def scrape(request: web.Request) -> web.StreamResponse:
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    listing = [f"{r.method} {prefix}{r.path}" for r in ROUTES if r.path != "/"]
    document = openapi_document(prefix, settings)

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.json_response(document)

    async def index(request: web.Request) -> web.StreamResponse:
        """The dashboard for browsers, a JSON index of the routes for everything else."""
        if wants_html(request):
            return dashboard_response()
        return await api.index(request, listing)

    own: dict[str, _Handler] = {
        "index": index,
        "clock": clock_handler(node.node_id, guard.security.secret),
        "metrics": scrape,
        "openapi": openapi,
    }
    for r in ROUTES:  # one row per route (raftq.server.routes)
        handler = own[r.handler] if r.handler in APP_HANDLERS else getattr(api, r.handler)
        route = prefix + r.path if r.path != "/" else prefix or "/"
        guarded = guard.wrap(r.method, r.path, handler)
        app.router.add_route(r.method, route, _endpoint(api, guarded, route, metrics))


def _http_error(request: web.BaseRequest, e: web.HTTPException) -> ApiError:
    code = _HTTP_CODES.get(e.status, "http_error")
    if e.status in (404, 405):
        return ApiError(e.status, code, f"{e.reason}: {request.method} {request.path[:200]}")
    return ApiError(e.status, code, e.reason)


def _request_id(request: web.BaseRequest) -> str:
    rid = request.headers.get("X-Request-Id")
    if rid and len(rid) <= 200 and rid.isprintable():
        return rid
    return "r-" + secrets.token_hex(6)


def _endpoint(api: Api, fn: _Handler, route: str, metrics: Metrics) -> _Handler:
    """Wrap a handler: errors become error bodies; leader and node headers on every answer;
    timed by ``route`` (the template) and served in a request scope (module docstring)."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        rid = _request_id(request)
        with request_scope(rid):
            resp = await _serve(api, fn, request)
            resp.headers.setdefault(REQUEST_HEADER, rid)
            elapsed = time.perf_counter() - start
            metrics.observe_request(request.method, route, resp.status, elapsed)
            logger.debug(
                "%s %s -> %d in %.1f ms",
                request.method,
                request.path[:200],
                resp.status,
                elapsed * 1000,
            )
        return resp

    return endpoint


async def _serve(api: Api, fn: _Handler, request: web.Request) -> web.StreamResponse:
    """Run the handler; whatever it raises becomes an error answer."""
    try:
        resp = await fn(request)
    except ApiError as e:
        resp = error_response(request, e)
    except RaftqError as e:  # the one mapping of raftq's errors (server/errors.py)
        err = api_error(e, api.settings.retry_after_s)
        if err is None:
            logger.exception("%s %s failed", request.method, request.path)
            err = ApiError(500, "internal", "internal error")
        resp = error_response(request, err)
    except web.HTTPException as e:
        resp = error_response(request, _http_error(request, e))
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        resp = error_response(request, ApiError(500, "internal", "internal error"))
    if LEADER_HEADER not in resp.headers:
        address = api.leader_address()
        if address is not None:
            resp.headers[LEADER_HEADER] = address
    resp.headers.setdefault(NODE_HEADER, api.node.node_id)
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """aiohttp's own HTTP errors (unknown route, wrong method...) in the API's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp = error_response(request, _http_error(request, e))
        if "Allow" in e.headers:
            resp.headers["Allow"] = e.headers["Allow"]
        metrics = request.app.get(METRICS_KEY)
        if metrics is not None:  # matched no route: one label for all of them
            metrics.observe_request(request.method, "unmatched", resp.status, 0.0)
        return resp
