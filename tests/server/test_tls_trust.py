"""A node with ``[tls] cert/key`` from a private CA and no ``ca`` could not verify its peers'
certificates, so every write through a follower answered 503: ``raftq serve`` now refuses to
start on such a config (exit 2, one line naming ``[tls] ca``), and a forward that still fails
its TLS handshake answers a 503 naming the cause."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from raftq.config import TLSConfig
from raftq.server import create_app
from raftq.tls import check_peer_trust
from tests.integration.cluster import free_ports
from tests.support.certs import TestCA
from tests.support.local_node import LocalNode, serve


def _one_node_config(root: Path, tls: str) -> Path:
    # Free ports, not fixed ones: a regression would start a node listening there, and a
    # well-known port (other tests use 127.0.0.1:1 as "nothing listens") would then answer.
    raft, api = free_ports(2)
    config = root / "tls.toml"
    config.write_text(
        f'[cluster]\nname = "tls"\ndata_dir = "{root / "data"}"\n\n{tls}\n'
        f'[[nodes]]\nid = "n1"\nraft = "127.0.0.1:{raft}"\napi = "127.0.0.1:{api}"\n'
    )
    return config


@pytest.mark.integration  # a `raftq serve` process (which exits before binding anything)
def test_serve_refuses_a_private_ca_certificate_without_ca(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    cert, key = ca.issue("node")
    config = _one_node_config(tmp_path, f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    run = subprocess.run(
        [sys.executable, "-m", "raftq", "serve", "--config", str(config), "--node", "n1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("raftq: error: invalid configuration in"), lines[0]
    assert f"[tls] cert {cert} cannot be verified" in lines[0]
    assert "set [tls] ca to the CA file" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before anything was written


def test_the_trust_check_accepts_what_forwarding_accepts(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    cert, key = ca.issue("node")
    check_peer_trust(TLSConfig(cert=cert, key=key, ca=ca.ca_pem), "127.0.0.1")
    check_peer_trust(TLSConfig(cert=cert, key=key, client_ca=ca.ca_pem), "localhost")


async def test_a_forward_that_fails_its_tls_handshake_names_the_cause(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    cert, key = ca.issue("node")
    leader = LocalNode("n1")
    follower = leader.follower("n2")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    runner = web.AppRunner(create_app(leader), shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
        leader.set_address("n1", f"127.0.0.1:{runner.addresses[0][1]}")
        # the follower trusts only the system's CAs, as a node without [tls] ca did
        app = create_app(follower, forward_ssl=ssl.create_default_context())
        async with serve(app) as address, aiohttp.ClientSession() as s:
            url = f"http://{address}/v1/queues/q/jobs"
            async with s.post(url, json={"payload": 1}) as r:
                status, body = r.status, await r.json()
    finally:
        await runner.cleanup()
    assert status == 503, body
    message = body["error"]["message"]
    assert "the TLS handshake failed" in message and "[tls] ca" in message, message
    assert "certificate" in message, message
