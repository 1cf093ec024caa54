"""Token auth on a real 3-node cluster: the allow/deny matrix (every role x every route class x
a matching and a non-matching queue, through the leader and through a follower), open routes,
401s, forged node-to-node headers, the audit principal, and the rate limit.

The expected matrix is written out here from the issue's rules (not derived from
``raftq.server.auth.RULES``), so a wrong rule in the code fails it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftq.client import Client
from raftq.errors import AuthError
from raftq.worker import Worker
from tests.integration.cluster import Cluster, http_json
from tests.support import browser

TOKENS = {
    "admin": "tok-admin-0123456789",
    "producer": "tok-producer-0123456789",
    "worker": "tok-worker-0123456789",
    "reader": "tok-reader-0123456789",
}


def _tokens_toml(tokens: dict[str, str], queues: str = '["a.*"]') -> str:
    out = []
    for role, token in tokens.items():
        digest = hashlib.sha256(token.encode()).hexdigest()
        out += [
            "[[auth.tokens]]",
            f'name = "{role}-token"',
            f'sha256 = "{digest}"',
            f'role = "{role}"',
            f"queues = {queues}",
            "",
        ]
    return "\n".join(out)


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """3 nodes with the four tokens (queues ``a.*``), a cluster secret, protected metrics."""
    root = tmp_path_factory.mktemp("auth")
    c = Cluster.generate(root, extra=_tokens_toml(TOKENS))
    c.headers = bearer("reader")
    with c:
        c.wait_ready()
        yield c


def call(  # noqa: PLR0917  # reads like the request line it sends
    c: Cluster, nid: str, method: str, path: str, role: str | None, body: Any = None
) -> tuple[int, Any]:
    """(status, decoded JSON body, or the text of a non-JSON one such as /metrics)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(c.url(nid, path), data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in ({} if role is None else bearer(role)).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


# Route classes: (method, path template, body, roles allowed besides admin, queue-specific).
# {q} is a queue, {job} a job in that queue.
ROUTES: list[tuple[str, str, Any, set[str], bool]] = [
    ("POST", "/v1/queues/{q}/jobs", {"payload": 1}, {"producer"}, True),
    ("POST", "/v1/batches", {"jobs": [{"queue": "{q}", "payload": 1}]}, {"producer"}, True),
    ("POST", "/v1/queues/{q}/claim", {"worker": "w", "wait_ms": 0}, {"worker"}, True),
    ("POST", "/v1/claim", {"queues": ["{q}"], "worker": "w"}, {"worker"}, True),
    ("POST", "/v1/jobs/{job}/heartbeat", {"token": 1}, {"worker"}, True),
    ("POST", "/v1/jobs/{job}/ack", {"token": 1}, {"worker"}, True),
    ("POST", "/v1/ack", {"acks": [{"id": "{job}", "token": 1}]}, {"worker"}, True),
    ("POST", "/v1/jobs/{job}/nack", {"token": 1}, {"worker"}, True),
    ("GET", "/v1/jobs/{job}", None, {"reader", "producer"}, True),
    ("GET", "/v1/queues/{q}", None, {"reader"}, True),
    ("GET", "/v1/queues/{q}/dead", None, {"reader"}, True),
    ("GET", "/v1/queues", None, {"reader"}, False),
    ("GET", "/v1/cluster", None, {"reader"}, False),
    ("GET", "/metrics", None, {"reader"}, False),
    ("POST", "/v1/queues/{q}/pause", None, set(), True),
    ("POST", "/v1/queues/{q}/resume", None, set(), True),
    ("POST", "/v1/queues/{q}/dead/requeue", None, set(), True),
    ("POST", "/v1/queues/{q}/purge", None, set(), True),
    ("POST", "/v1/jobs/{job}/cancel", None, {"producer"}, True),  # last: it ends the job
]


def _fill(value: Any, q: str, job: int) -> Any:
    if value == "{job}":
        return job  # a job id in a body is a number
    if isinstance(value, str):
        return value.replace("{q}", q).replace("{job}", str(job))
    if isinstance(value, list):
        return [_fill(v, q, job) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, q, job) for k, v in value.items()}
    return value


def test_allow_deny_matrix_through_leader_and_follower(secured: Cluster) -> None:
    c = secured
    leader = c.wait_ready()
    follower = next(n for n in c.ids if n != leader)
    # One job per (entry node, role, queue), so that cancel and ack of one case do not
    # change what another case sees. "a.*" matches the tokens' patterns, "b.*" does not.
    jobs: dict[tuple[str, str, str], int] = {}
    for nid in (leader, follower):
        for role in TOKENS:
            for q in ("a.jobs", "b.jobs"):
                status, body = call(c, leader, "POST", f"/v1/queues/{q}/jobs", "admin",
                                    {"payload": [nid, role]})  # fmt: skip
                assert status == 201, body
                jobs[(nid, role, q)] = body["id"]
    c.wait_converged()  # the follower knows every job (and so its queue)

    wrong: list[str] = []
    for nid in (leader, follower):
        for method, template, body, roles, queued in ROUTES:
            for role in TOKENS:
                for matching in (True, False) if queued else (True,):
                    prefix = "a" if matching else "b"
                    job = jobs[(nid, role, f"{prefix}.jobs")]
                    queue = f"{prefix}.q" if "{q}" in template or "{q}" in str(body) else ""
                    path = _fill(template, queue, job)
                    status, answer = call(c, nid, method, path, role, _fill(body, queue, job))
                    allowed = role == "admin" or (role in roles and matching)
                    ok = status not in (401, 403) if allowed else status == 403
                    if ok and not allowed:
                        ok = answer["error"]["code"] == "forbidden"
                    if not ok:
                        where = "leader" if nid == leader else "follower"
                        wrong.append(f"{role} {method} {path} via {where}: {status} {answer}")
    assert not wrong, "\n".join(wrong)


def test_open_routes_and_missing_or_unknown_tokens(secured: Cluster) -> None:
    c = secured
    leader = c.wait_ready()
    follower = next(n for n in c.ids if n != leader)
    for nid in (leader, follower):
        for path in ("/healthz", "/readyz", "/v1/openapi.json"):
            status, _ = call(c, nid, "GET", path, None)
            assert status == 200, (nid, path)
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic xx"},
                        {"Authorization": TOKENS["admin"]}):  # fmt: skip
            status, body = http_json(
                c.url(nid, "/v1/queues/a.q/jobs"), {"payload": 1}, headers=headers
            )
            assert status == 401, (nid, headers, body)
            assert body["error"]["code"] == "unauthorized"
            status, body = http_json(c.url(nid, "/metrics"), headers=headers)
            assert status == 401, (nid, headers)


def test_reader_lists_only_its_queues(secured: Cluster) -> None:
    c = secured
    leader = c.wait_ready()
    for q in ("a.listed", "b.hidden"):
        assert call(c, leader, "POST", f"/v1/queues/{q}/jobs", "admin", {"payload": 0})[0] == 201
    c.wait_converged()
    for nid in c.ids:
        _, body = call(c, nid, "GET", "/v1/queues", "reader")
        names = {q["queue"] for q in body["queues"]}
        assert "a.listed" in names and not any(n.startswith("b.") for n in names), names
        _, body = call(c, nid, "GET", "/v1/queues", "admin")
        assert {"a.listed", "b.hidden"} <= {q["queue"] for q in body["queues"]}


def test_forged_forwarding_headers_are_refused(secured: Cluster) -> None:
    """From outside, X-Raftq-Forwarded / X-Raftq-Client (with or without a made-up
    signature) are refused with a valid admin token and without a token (the marker alone
    must not make the caller a node); real forwards work."""
    c = secured
    leader = c.wait_ready()
    follower = next(n for n in c.ids if n != leader)
    forged = [
        {"X-Raftq-Forwarded": follower},
        {"X-Raftq-Forwarded": follower, "X-Raftq-Client": "10.9.9.9"},
        {"X-Raftq-Forwarded": follower, "X-Raftq-Peer-Auth": f"v1;{int(time.time() * 1000)};00"},
        {"X-Raftq-Forwarded": follower, "X-Raftq-Peer-Auth": "v1;1;" + "0" * 64},
    ]
    for nid in (leader, follower):
        for extra in forged:
            headers = {**bearer("admin"), **extra}
            status, body = http_json(
                c.url(nid, "/v1/queues/a.q/pause"), {}, headers=headers, timeout=10
            )
            assert status == 401, (nid, extra, body)
            assert "node-to-node" in body["error"]["message"]
            status, body = http_json(c.url(nid, "/v1/queues/b.q"), headers=extra, timeout=10)
            assert status == 401, (nid, extra, body)
            assert "node-to-node" in body["error"]["message"]
    # the same request relayed by a real follower passes, and the audit line names the token
    status, body = call(c, follower, "POST", "/v1/queues/a.audited/pause", "admin", {})
    assert status == 200, body
    deadline = time.monotonic() + 10
    while "pause by admin-token" not in (c.root / f"{leader}.log").read_text():
        assert time.monotonic() < deadline, c.log_tail(leader)
        time.sleep(0.05)


def test_worker_token_claims_only_its_queues_through_follower_forward(secured: Cluster) -> None:
    """A worker naming an outside queue in a multi-queue claim is refused (the leader checks
    the body's queues after the follower relayed it)."""
    c = secured
    leader = c.wait_ready()
    follower = next(n for n in c.ids if n != leader)
    for nid in (leader, follower):
        body = {"queues": ["a.ok", "b.no"], "worker": "w"}
        status, answer = call(c, nid, "POST", "/v1/claim", "worker", body)
        assert status == 403, answer
        assert "b.no" in answer["error"]["message"]


def test_limits_and_rate_limit_on_a_live_node(tmp_path: Path) -> None:
    """[limits] from the config: body and payload size (413), batch size (400), the long-poll
    cap, and the per-token rate (429 with Retry-After)."""
    limits = (
        "[limits]\nmax_body_bytes = 2048\nmax_payload_bytes = 100\nmax_batch_jobs = 2\n"
        "max_wait_ms = 300\nrate_per_s = 2\nrate_burst = 3\n\n"
    )
    c = Cluster.generate(tmp_path, n=1, extra=limits + _tokens_toml(TOKENS))
    c.headers = bearer("admin")
    with c:
        c.wait_ready()
        big = {"payload": "x" * 3000}
        status, body = call(c, "n1", "POST", "/v1/queues/a.q/jobs", "producer", big)
        assert (status, body["error"]["code"]) == (413, "body_too_large"), body
        status, body = call(
            c, "n1", "POST", "/v1/queues/a.q/jobs", "producer", {"payload": "x" * 200}
        )
        assert (status, body["error"]["code"]) == (413, "payload_too_large"), body
        three = {"jobs": [{"payload": 1}] * 3}
        status, body = call(c, "n1", "POST", "/v1/queues/a.q/jobs", "producer", three)
        assert status == 400 and "jobs" in body["error"]["message"], body
        # a 60 s long-poll is cut to max_wait_ms: it answers (empty) long before the client's
        # 10 s timeout would fire
        status, body = call(c, "n1", "POST", "/v1/queues/a.none/claim", "worker",
                            {"worker": "w", "wait_ms": 60_000})  # fmt: skip
        assert (status, body) == (200, {"jobs": []})

        statuses = []
        retry_after = None
        for _ in range(8):
            req = urllib.request.Request(c.url("n1", "/v1/queues"), headers=bearer("reader"))
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    statuses.append(resp.status)
            except urllib.error.HTTPError as e:
                statuses.append(e.code)
                retry_after = e.headers.get("Retry-After")
                assert json.loads(e.read())["error"]["code"] == "rate_limited"
        assert statuses[:2] == [200, 200] and 429 in statuses, statuses
        assert retry_after is not None and int(retry_after) >= 1
        # another token has its own bucket; the limited one recovers after Retry-After
        claim = {"worker": "w", "wait_ms": 0}
        assert call(c, "n1", "POST", "/v1/queues/a.none/claim", "worker", claim)[0] == 200
        time.sleep(int(retry_after))
        assert call(c, "n1", "GET", "/v1/queues", "reader")[0] == 200


def test_follower_authorizes_on_its_own(tmp_path: Path) -> None:
    """The receiving node decides: with the leader gone, a follower still answers 401/403
    at once (not 503 no_leader), and lets an allowed write wait for a leader."""
    c = Cluster.generate(tmp_path, extra=_tokens_toml(TOKENS))
    c.headers = bearer("reader")
    with c:
        leader = c.wait_ready()
        follower = next(n for n in c.ids if n != leader)
        c.kill(leader)
        status, body = call(c, follower, "POST", "/v1/queues/a.q/pause", "reader", {})
        assert status == 403, body
        status, body = call(c, follower, "POST", "/v1/queues/b.q/jobs", "producer", {"payload": 1})
        assert status == 403, body
        status, body = call(c, follower, "POST", "/v1/queues/a.q/jobs", None, {"payload": 1})
        assert status == 401, body
        # allowed: served once the two survivors elect a leader (or 503 while they have not)
        status, body = call(c, follower, "POST", "/v1/queues/a.q/jobs", "producer", {"payload": 1})
        assert status in (201, 503), body


async def test_worker_and_client_send_their_tokens(secured: Cluster) -> None:
    """A Worker with a worker token runs jobs of its queues (through a follower); one whose
    handler is for a queue outside its patterns stops with AuthError; the CLI's client
    commands take RAFTQ_TOKEN."""
    c = secured
    leader = await asyncio.to_thread(c.wait_ready)
    follower = next(n for n in c.ids if n != leader)
    worker = Worker([c.api[follower]], token=TOKENS["worker"], wait_ms=200, grace_ms=1000)

    @worker.handler("a.work")
    def double(job: Any) -> dict[str, int]:
        return {"double": job.payload * 2}

    async with Client([c.api[follower]], token=TOKENS["producer"]) as producer:
        job_id = await producer.enqueue("a.work", 21)
        running = asyncio.create_task(worker.run())
        try:
            result = await producer.job(job_id).wait(timeout_ms=20_000)
        finally:
            worker.stop()
            await running
    assert result == {"double": 42}

    outsider = Worker([c.api[follower]], token=TOKENS["worker"], wait_ms=200, grace_ms=0)
    outsider.add_handler("b.work", lambda job: None)
    with pytest.raises(AuthError):
        await asyncio.wait_for(outsider.run(), 30)

    env = {**os.environ, "RAFTQ_TOKEN": TOKENS["reader"], "RAFTQ_NODES": c.api[follower]}
    cli = [sys.executable, "-m", "raftq", "queues", "--json"]
    out = await asyncio.to_thread(
        subprocess.run, cli, capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "a.work" in out.stdout
    env["RAFTQ_TOKEN"] = "not-a-token"
    out = await asyncio.to_thread(
        subprocess.run, cli, capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 4 and "not allowed" in out.stderr, out  # 4: credentials refused
    assert "refused the token (401 unauthorized)" in out.stderr, out
    assert out.stderr.count("\n") == 1


async def test_dashboard_asks_for_a_token_and_uses_it(secured: Cluster, tmp_path: Path) -> None:
    """With auth on, the dashboard shows a token form on the first 401, then the data the
    token may read (here through a follower, so the peer views are fetched node to node)."""
    if browser.chromium_path() is None:  # never skipped: make test installs it
        pytest.fail("chromium is not installed (apt-get install chromium); make test installs it")
    leader = secured.leader()
    assert (
        call(secured, leader, "POST", "/v1/queues/a.dash/jobs", "producer", {"payload": 1})[0]
        == 201
    )
    follower = secured.followers()[0]
    async with browser.launch(tmp_path / "profile") as page:
        await page.goto(f"http://{secured.api[follower]}/?refresh_ms=500")
        await page.wait_for("!document.getElementById('auth').hidden")
        assert "401" in await page.eval("document.getElementById('status').textContent")
        token = json.dumps(TOKENS["reader"])
        await page.eval(
            f"document.getElementById('token').value = {token};"
            "document.querySelector('#auth button').click(), true"
        )
        await page.wait_for("!!document.querySelector('#queues tr[data-queue=\"a.dash\"]')")
        assert await page.eval("document.getElementById('auth').hidden")
        assert await page.eval("document.getElementById('status').className") == "ok"
        nodes = await page.eval("document.querySelectorAll('#cluster tr[data-node]').length")
        assert nodes == len(secured.ids)
        assert not [m for m in page.console if m.startswith("uncaught")], page.console
