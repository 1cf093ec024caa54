"""Forged node-to-node markers on real nodes: ``X-Raftq-Forwarded`` confers nothing unless its
signature verifies, whatever the configuration and wherever the request comes from.

Every request here comes from 127.0.0.1, as every remote client does behind a reverse proxy on
the node's machine. Before the fix, a node without a cluster secret trusted the marker from any
loopback peer: without a token the caller became the reader ``node:<id>`` of every queue, and a
marked request skipped the rate limit. Now it is a 401 with a secret or without, with tokens or
with auth off, and nodes without a secret still forward (with ``X-Raftq-Hop``, which stops a
second hop and confers nothing else).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftq.node.spawn import serve_argv
from tests.integration.cluster import Cluster, free_ports, tokens_toml

TOKENS = {
    "admin": ("admin", "tok-admin-0123456789", '["*"]'),
    "producer": ("producer", "tok-a-producer-0123456789", '["a*"]'),
    "watch": ("reader", "tok-watch-0123456789", '["*"]'),  # the harness's views: its own bucket
}


def request(  # noqa: PLR0917  # reads like the request line it sends
    c: Cluster, nid: str, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    """``(status, decoded body, headers)`` of one request from 127.0.0.1."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(c.url(nid, path), data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, raw, out = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        status, raw, out = e.code, e.read(), dict(e.headers)
    try:
        return status, json.loads(raw), out
    except ValueError:
        return status, raw.decode(errors="replace"), out


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who][1]}"}


def forgeries(node: str) -> list[dict[str, str]]:
    """The marker alone, with a relayed client address, with made-up and expired signatures."""
    now_ms = int(time.time() * 1000)
    return [
        {"X-Raftq-Forwarded": node},
        {"X-Raftq-Forwarded": node, "X-Raftq-Client": "10.9.9.9"},
        {"X-Raftq-Forwarded": node, "X-Raftq-Peer-Auth": f"v1;{now_ms};" + "0" * 64},
        {"X-Raftq-Forwarded": node, "X-Raftq-Peer-Auth": "v1;1;" + "0" * 64},
    ]


def assert_refused(status: int, body: Any, what: object) -> None:
    assert status == 401, (what, status, body)
    assert body["error"]["code"] == "unauthorized", (what, body)
    assert "node-to-node" in body["error"]["message"], (what, body)


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One node with tokens and a rate limit (burst 2, 1/s), and no secret: allowed, since
    a single node has nothing to forward."""
    limits = "[limits]\nrate_per_s = 1\nrate_burst = 2\n\n"
    root = tmp_path_factory.mktemp("forged")
    c = Cluster.generate(root, n=1, secret=None, extra=limits + tokens_toml(TOKENS))
    c.headers = bearer("watch")
    with c:
        c.wait_ready()
        yield c


def test_forged_marker_without_secret_reads_no_queue(one_node: Cluster) -> None:
    """The marker without a token does not make the caller the reader of every queue."""
    c = one_node
    status, body, _ = request(c, "n1", "POST", "/v1/queues/b.q/jobs", bearer("admin"),
                              {"payload": "b's"})  # fmt: skip
    assert status == 201, body
    job = body["id"]
    for forged in forgeries("n1"):
        for path in ("/v1/queues/b.q", f"/v1/jobs/{job}", "/v1/queues", "/v1/cluster"):
            status, body, _ = request(c, "n1", "GET", path, forged)
            assert_refused(status, body, (path, forged))


def test_forged_marker_without_secret_skips_no_rate_limit(one_node: Cluster) -> None:
    """With a token, the marker does not exempt the request from the token's rate limit."""
    c = one_node
    statuses = [
        request(c, "n1", "POST", "/v1/queues/a.q/jobs", bearer("producer"), {"payload": i})[0]
        for i in range(4)
    ]
    assert 429 in statuses, statuses  # the producer's bucket is empty
    for forged in forgeries("n1"):
        headers = {**bearer("producer"), **forged}
        status, body, _ = request(c, "n1", "POST", "/v1/queues/a.q/jobs", headers, {"payload": 9})
        assert_refused(status, body, forged)
    status, stats, _ = request(c, "n1", "GET", "/v1/queues/a.q", bearer("admin"))
    assert status == 200 and stats["depth"].get("queued", 0) == statuses.count(201), stats


def test_forged_marker_refused_and_real_forwarding_works_without_secret(tmp_path: Path) -> None:
    """Three nodes, auth off, no secret: the marker is refused on the leader and on a follower
    (it used to make a write skip forwarding, and the relayed client address go into audit
    lines); the followers still forward writes and linearizable reads, with the hop marker,
    and a request that already carries the hop marker is not relayed again."""
    c = Cluster.generate(tmp_path, secret=None)
    with c:
        leader = c.wait_ready()
        follower = next(n for n in c.ids if n != leader)
        for nid in (leader, follower):
            for forged in forgeries(follower):
                status, body, _ = request(c, nid, "GET", "/v1/queues", forged)
                assert_refused(status, body, (nid, forged))
                status, body, _ = request(c, nid, "POST", "/v1/queues/a.q/pause", forged, {})
                assert_refused(status, body, (nid, forged))
        status, body, headers = request(c, follower, "POST", "/v1/queues/a.q/jobs", {},
                                        {"payload": 1})  # fmt: skip
        assert status == 201, body
        assert headers["X-Raftq-Node"] == leader
        path = f"/v1/jobs/{body['id']}?consistency=linearizable"
        status, body, headers = request(c, follower, "GET", path, {})
        assert status == 200 and headers["X-Raftq-Node"] == leader, body
        status, body, _ = request(c, follower, "POST", "/v1/queues/a.q/jobs",
                                  {"X-Raftq-Hop": leader}, {"payload": 2})  # fmt: skip
        assert (status, body["error"]["code"]) == (503, "not_leader"), body
        status, body, _ = request(c, follower, "GET", "/v1/cluster?peers=true", {})
        assert status == 200 and all(body["peers"].values()), body  # peer views, unmarked
        status, stats, _ = request(c, leader, "GET", "/v1/queues/a.q", {})
        assert status == 200 and not stats["paused"], stats


def test_tokens_in_a_cluster_without_secret_refuse_to_start(tmp_path: Path) -> None:
    """Tokens (or a rate limit) with several nodes need the secret that signs forwards: one
    line on stderr naming it and how to set it, exit code 2, nothing written."""
    ports = free_ports(4)
    for extra in (tokens_toml(TOKENS), "[limits]\nrate_per_s = 10\n"):
        lines = ["[cluster]", 'name = "t"', 'data_dir = "data"', ""]
        for i in range(2):
            lines += ["[[nodes]]", f'id = "n{i + 1}"', f'raft = "127.0.0.1:{ports[i]}"']
            lines += [f'api = "127.0.0.1:{ports[2 + i]}"', ""]
        config = tmp_path / "c.toml"
        config.write_text("\n".join(lines) + extra)
        env = {k: v for k, v in os.environ.items() if k != "RAFTQ_SECRET"}
        out = subprocess.run(
            serve_argv(config, "n1"),
            capture_output=True, text=True, timeout=30, check=False, env=env,
        )  # fmt: skip
        assert out.returncode == 2, out
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert "cluster.secret: required with" in out.stderr, out.stderr
        assert "RAFTQ_SECRET" in out.stderr and "secrets.token_urlsafe" in out.stderr
        assert not (tmp_path / "data").exists()
