"""Units of the security layer: the OpenAPI document against the app's routes, every route's
rule, node-to-node signatures, the rate limiter, and the guard on in-process servers."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from raftq.config import Role, TokenConfig
from raftq.core import Cancel, Command, Enqueue, NewJob, Result, Tick
from raftq.server import ServerSettings, add_routes, create_app
from raftq.server.auth import RULES, QueueFrom, Security
from raftq.server.limits import RateLimiter
from raftq.server.openapi import openapi_document
from raftq.server.peer_auth import PEER_AUTH_HEADER, PeerKey, TimeNotKnownError
from tests.support.local_node import LocalNode, serve


def _routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        info = route.get_info()
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path is not None:
            out.add((route.method, path))
    return out


def _documented(doc: dict[str, Any], prefix: str) -> set[tuple[str, str]]:
    return {
        (method.upper(), prefix + path if path != "/" else prefix or "/")
        for path, ops in doc["paths"].items()
        for method in ops
    }


@pytest.mark.parametrize("prefix", ["", "/raftq"])
def test_openapi_document_and_app_routes_agree(prefix: str) -> None:
    app = web.Application()
    add_routes(app, LocalNode("n1"), ServerSettings(), prefix)
    doc = openapi_document(prefix, ServerSettings())
    assert _routes(app) == _documented(doc, prefix)


def test_every_route_has_its_own_rule() -> None:
    """No route falls back to the admin-only default by accident (or is open by mistake)."""
    app = create_app(LocalNode("n1"))
    assert _routes(app) == set(RULES)
    open_routes = {k for k, rule in RULES.items() if rule.roles is None}
    assert open_routes == {
        ("GET", "/"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/v1/clock"),
    }


def test_openapi_documents_each_error_status_with_the_error_shape() -> None:
    doc = openapi_document("", ServerSettings())
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if int(status) >= 400:
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method)
            if method == "post":
                assert "503" in op["responses"] and "401" in op["responses"], path


# -- node-to-node signatures ------------------------------------------------------------------


def _signed(key: PeerKey, method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
    out = dict(headers)
    key.sign(method, URL(url), out)
    return out


async def _verify(key: PeerKey, method: str, url: str, headers: dict[str, str]) -> str | None:
    """Serve one request with ``headers`` and report what ``key`` says about it."""
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        try:
            seen.append(key.verify(request))
        except TimeNotKnownError as e:
            seen.append(f"time not known: {e}")
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with (
        serve(app) as address,
        aiohttp.ClientSession() as session,
        session.request(method, f"http://{address}{url}", headers=headers),
    ):
        pass
    return seen[0]


async def test_peer_signature_accepts_the_signed_request_only() -> None:
    key = PeerKey("cluster-secret-0123456789")
    base = {
        "X-Raftq-Forwarded": "n2",
        "X-Raftq-Client": "10.0.0.7",
        "Authorization": "Bearer abc",
        "X-Request-Id": "r1",
    }
    url = "/v1/queues/a%20b/jobs?x=1"
    good = _signed(key, "POST", url, base)
    assert await _verify(key, "POST", url, good) is None
    tampered = [
        ("POST", "/v1/queues/other/jobs?x=1", good),
        ("POST", url + "&y=2", good),
        ("GET", url, good),
        ("POST", url, {**good, "X-Raftq-Client": "10.0.0.8"}),
        ("POST", url, {**good, "Authorization": "Bearer other"}),
        ("POST", url, {**good, "X-Raftq-Forwarded": "n3"}),
        ("POST", url, {**good, "X-Request-Id": "r2"}),
        ("POST", url, {k: v for k, v in good.items() if k != PEER_AUTH_HEADER}),
        ("POST", url, {**good, PEER_AUTH_HEADER: "v1;123;" + "0" * 64}),
    ]
    for method, u, headers in tampered:
        assert await _verify(key, method, u, headers) is not None, (method, u, headers)
    other = PeerKey("another-secret-0123456789")
    assert await _verify(other, "POST", url, good) is not None


async def test_peer_signature_expires() -> None:
    key = PeerKey("cluster-secret-0123456789")
    headers = {"X-Raftq-Forwarded": "n2"}
    mac = PeerKey._mac(key._key or b"", 1_000, "GET", URL("/v1/cluster"), headers)
    old = {**headers, PEER_AUTH_HEADER: f"v1;1000;{mac}"}
    reason = await _verify(key, "GET", "/v1/cluster", old)
    assert reason is not None and "expired" in reason


async def test_peer_signatures_carry_cluster_time_not_the_wall_clock() -> None:
    """Two nodes whose wall clocks are hours apart agree on cluster time: a signature timed by
    one node's reading of it verifies on the other; a node that knows no cluster time yet
    neither accepts nor refuses for good a genuine signature it cannot place (a retryable
    503), and a forged one is refused as ever."""
    hours = 6 * 3_600_000
    now = time.time_ns() // 1_000_000
    signer = PeerKey("cluster-secret-0123456789", clock_ms=lambda: now)
    headers = _signed(signer, "GET", "/v1/cluster", {"X-Raftq-Forwarded": "n2"})
    assert await _verify(signer, "GET", "/v1/cluster", headers) is None
    late = PeerKey("cluster-secret-0123456789", clock_ms=lambda: now + hours)
    reason = await _verify(late, "GET", "/v1/cluster", headers)
    assert reason is not None and "expired" in reason
    unknown = PeerKey("cluster-secret-0123456789", clock_ms=lambda: None)
    assert await _verify(unknown, "GET", "/v1/cluster", headers) is None  # wall clock agrees
    ahead = PeerKey("cluster-secret-0123456789", clock_ms=lambda: now - hours)
    far = _signed(ahead, "GET", "/v1/cluster", {"X-Raftq-Forwarded": "n2"})
    reason = await _verify(unknown, "GET", "/v1/cluster", far)
    assert reason is not None and reason.startswith("time not known")
    forged = {**far, PEER_AUTH_HEADER: far[PEER_AUTH_HEADER][:-4] + "0000"}
    reason = await _verify(unknown, "GET", "/v1/cluster", forged)
    assert reason is not None and "valid signature" in reason


async def test_without_secret_node_headers_are_refused_even_from_loopback() -> None:
    """No secret, no signature: the marker is refused whatever address it comes from (a
    reverse proxy on the node's machine makes every remote client a loopback peer)."""
    key = PeerKey(None)
    assert not key.signs
    reason = await _verify(key, "GET", "/v1/cluster", {"X-Raftq-Forwarded": "n2"})
    assert reason is not None and "no secret" in reason
    headers: dict[str, str] = {"X-Raftq-Forwarded": "n2"}
    key.sign("GET", URL("/v1/cluster"), headers)
    assert headers == {"X-Raftq-Forwarded": "n2"}  # nothing to sign with


# -- rate limiter -----------------------------------------------------------------------------


def test_rate_limiter_buckets() -> None:
    now = [100.0]
    rl = RateLimiter(2, 3, clock=lambda: now[0])
    assert [rl.take("a") for _ in range(3)] == [None, None, None]
    assert rl.take("a") == 1  # empty: one request comes back in 0.5 s -> Retry-After 1
    assert rl.take("b") is None  # buckets are per key
    now[0] += 0.5
    assert rl.take("a") is None
    assert rl.take("a") == 1
    now[0] += 100
    assert [rl.take("a") for _ in range(4)] == [None, None, None, 1]  # never above the burst
    slow = RateLimiter(1, 1, clock=lambda: now[0])
    assert slow.take("x") is None
    assert slow.take("x") == 1


# -- the guard on in-process servers ----------------------------------------------------------


def _token(name: str, role: Role, token: str, queues: tuple[str, ...] = ("*",)) -> TokenConfig:
    return TokenConfig(
        name=name, sha256=hashlib.sha256(token.encode()).hexdigest(), role=role, queues=queues
    )


async def test_metrics_open_or_protected_by_config() -> None:
    tokens = (_token("r", Role.READER, "rt"), _token("p", Role.PRODUCER, "pt"))
    for metrics_open, expect in ((False, 401), (True, 200)):
        sec = Security(tokens=tokens, metrics_open=metrics_open)
        app = create_app(LocalNode("n1"), security=sec)
        async with serve(app) as address, aiohttp.ClientSession() as s:
            async with s.get(f"http://{address}/metrics") as r:
                assert r.status == expect
            async with s.get(
                f"http://{address}/metrics", headers={"Authorization": "Bearer pt"}
            ) as r:
                assert r.status == (200 if metrics_open else 403)
            async with s.get(
                f"http://{address}/metrics", headers={"Authorization": "Bearer rt"}
            ) as r:
                assert r.status == 200
            async with s.get(f"http://{address}/v1/queues") as r:
                assert r.status == 401
                assert r.headers["Content-Type"].startswith("application/json")
                body = await r.json()
                assert body["error"]["code"] == "unauthorized"


# -- the queue of a job named in the path, decided where the answer is made -------------------


class _PendingLeader(LocalNode):
    """A leader with commands in its log that are not applied yet (not committed): reads do
    not see them; they are applied, in log order, before the next command or barrier, as a
    commit would apply them. The state a leader is in between an enqueue's proposal and its
    commit."""

    def __init__(self) -> None:
        super().__init__("n1")
        self.pending: list[Command] = []

    async def submit_many(
        self, commands: Sequence[Command], timeout_ms: int | None = None
    ) -> list[Result]:
        pending, self.pending = self.pending, []
        if pending:
            await super().submit_many(pending, timeout_ms)
        return await super().submit_many(commands, timeout_ms)


_A_PRODUCER = _token("a-producer", Role.PRODUCER, "pt", ("a*",))
_A_WORKER = _token("a-worker", Role.WORKER, "wt", ("a*",))
_A_READER = _token("a-reader", Role.READER, "rt", ("a*",))
_ALL_PRODUCER = _token("producer", Role.PRODUCER, "apt")
_ADMIN = _token("admin", Role.ADMIN, "at")

# (method, path, body, token) of every route whose queue is the job's, job 2 in the path
_JOB_ROUTES: list[tuple[str, str, Any, str]] = [
    ("POST", "/v1/jobs/2/cancel", None, "pt"),
    ("POST", "/v1/jobs/2/heartbeat", {"token": 1}, "wt"),
    ("POST", "/v1/jobs/2/ack", {"token": 1}, "wt"),
    ("POST", "/v1/jobs/2/nack", {"token": 1}, "wt"),
    ("POST", "/v1/jobs/2/release", {"token": 1}, "wt"),
    ("POST", "/v1/ack", {"acks": [{"id": 2, "token": 1}]}, "wt"),
    ("GET", "/v1/jobs/2?consistency=linearizable", None, "rt"),
    ("GET", "/v1/jobs/2?consistency=linearizable", None, "pt"),
]


def test_job_routes_are_the_ones_checked_here() -> None:
    """Every route whose queue is a job's is exercised by the tests below."""
    job_routes = {k for k, rule in RULES.items() if rule.queue is QueueFrom.JOB}
    job_routes.add(("POST", "/v1/ack"))  # the jobs named in its body
    tested = {(m, p.split("?")[0].replace("/2", "/{id}")) for m, p, _, _ in _JOB_ROUTES}
    assert tested == job_routes


@pytest.mark.parametrize(("method", "path", "body", "token"), _JOB_ROUTES)
async def test_job_whose_enqueue_is_not_applied_yet_is_checked_after_it(
    method: str, path: str, body: Any, token: str
) -> None:
    """Job 2 of queue ``b`` is in the leader's log but not applied when a caller limited to
    ``a*`` names it: the check waits for the log (a barrier) and refuses (403), and the job is
    untouched. Before the fix the unknown job was allowed and the command, applied after the
    enqueue, cancelled (or read) the other queue's job."""
    node = _PendingLeader()
    sec = Security(tokens=(_A_PRODUCER, _A_WORKER, _A_READER, _ADMIN))
    async with serve(create_app(node, security=sec)) as address, aiohttp.ClientSession() as s:
        admin = {"Authorization": "Bearer at"}
        async with s.post(f"http://{address}/v1/queues/a.q/jobs", json={"payload": 1},
                          headers=admin) as r:  # fmt: skip
            assert (r.status, (await r.json())["id"]) == (201, 1)
        node.pending.append(
            Enqueue(now_ms=node.now_ms(), queue="b.q", jobs=(NewJob(payload=b"1"),))
        )
        headers = {"Authorization": f"Bearer {token}"}
        async with s.request(method, f"http://{address}{path}", json=body, headers=headers) as r:
            answer = await r.json()
            assert r.status == 403, answer
            assert answer["error"]["code"] == "forbidden" and "b.q" in answer["error"]["message"]
        async with s.get(f"http://{address}/v1/jobs/2", headers=admin) as r:
            job = await r.json()
            assert (job["queue"], job["state"]) == ("b.q", "queued"), job
        assert not [c for c in node.log if not isinstance(c, Enqueue | Tick)], node.log


@pytest.mark.parametrize(("method", "path", "body", "token"), _JOB_ROUTES)
async def test_job_unknown_after_the_barrier_is_not_found_for_restricted_callers(
    method: str, path: str, body: Any, token: str
) -> None:
    """A job unknown where the check is made is never allowed by default: 404 (per item for
    ``POST /v1/ack``), and no command on it reaches the log."""
    node = LocalNode("n1")
    sec = Security(tokens=(_A_PRODUCER, _A_WORKER, _A_READER))
    async with serve(create_app(node, security=sec)) as address, aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {token}"}
        async with s.request(method, f"http://{address}{path}", json=body, headers=headers) as r:
            answer = await r.json()
        if path == "/v1/ack":
            assert r.status == 200, answer
            answer = answer["results"][0]
        else:
            assert r.status == 404, answer
        assert answer["error"]["code"] == "not_found", answer
        assert all(isinstance(c, Tick) for c in node.log), node.log


async def test_unrestricted_callers_and_auth_off_pay_no_barrier() -> None:
    """Admins, tokens whose patterns include ``*`` and auth off submit at once: no barrier
    (no Tick) before a command on a job this node does not know."""
    for sec, headers in (
        (Security(tokens=(_ADMIN, _ALL_PRODUCER)), {"Authorization": "Bearer at"}),
        (Security(tokens=(_ADMIN, _ALL_PRODUCER)), {"Authorization": "Bearer apt"}),
        (Security(), {}),
    ):
        node = LocalNode("n1")
        async with serve(create_app(node, security=sec)) as address, aiohttp.ClientSession() as s:
            async with s.post(f"http://{address}/v1/jobs/7/cancel", headers=headers) as r:
                assert r.status == 404
            async with s.get(f"http://{address}/v1/jobs/7?consistency=linearizable",
                             headers=headers) as r:  # fmt: skip
                assert r.status == 404
        assert [type(c) for c in node.log] == [Cancel, Tick], node.log  # the read's barrier
