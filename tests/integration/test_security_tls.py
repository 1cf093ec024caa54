"""TLS on the client API of real nodes, with a CA made at test time: clients that trust it
connect (and followers forward over TLS), plain HTTP to a TLS port fails, and with
``client_ca`` a client without a certificate is refused."""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from raftq.client import SyncClient
from raftq.errors import TransportError
from raftq.tls import client_context
from tests.integration.cluster import Cluster, http_json
from tests.support.certs import TestCA

TOKEN = "tls-test-token-0123456789"


def _config_extra(ca: TestCA, *, mutual: bool) -> str:
    cert, key = ca.issue("node")
    lines = ["[tls]", f'cert = "{cert}"', f'key = "{key}"']
    if mutual:
        lines.append(f'client_ca = "{ca.ca_pem}"')
    else:  # a private CA: the nodes verify each other with it (a node refuses to start without)
        lines.append(f'ca = "{ca.ca_pem}"')
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    lines += ["", "[[auth.tokens]]", 'name = "ops"', f'sha256 = "{digest}"', 'role = "admin"']
    return "\n".join(lines) + "\n"


def _start(
    root: Path, ca: TestCA, *, mutual: bool, client_cert: tuple[Path, Path] | None
) -> Cluster:
    c = Cluster.generate(root, extra=_config_extra(ca, mutual=mutual))
    c.headers = {"Authorization": f"Bearer {TOKEN}"}
    cert, key = client_cert if client_cert is not None else (None, None)
    c.ssl_context = client_context(ca.ca_pem, cert, key)
    return c


def _plain_http_fails(c: Cluster, nid: str) -> None:
    """A plain-HTTP request to the TLS port gets no HTTP answer (the handshake fails)."""
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://{c.api[nid]}/healthz", timeout=5)


def test_tls_client_api_and_forwarding(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    c = _start(tmp_path, ca, mutual=False, client_cert=None)
    with c:
        leader = c.wait_ready()
        follower = next(n for n in c.ids if n != leader)
        _plain_http_fails(c, follower)
        # a client that does not trust the test CA cannot connect
        status = None
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            status, _ = http_json(c.url(leader, "/healthz"), context=ssl.create_default_context())
        assert status is None
        # the raftq client, through a follower only: the follower forwards over TLS
        with SyncClient(
            [c.api[follower]], token=TOKEN, ssl=c.ssl_context, retry_ms=10_000
        ) as client:
            job_id = client.enqueue("tls.q", {"n": 1})
            assert client.get_job(job_id)["queue"] == "tls.q"
        # the CLI with --tls-ca and RAFTQ_TOKEN
        env = {**os.environ, "RAFTQ_TOKEN": TOKEN}
        out = subprocess.run(
            [sys.executable, "-m", "raftq", "enqueue", "tls.q", '{"cli": true}',
             "--nodes", c.api[follower], "--tls-ca", str(ca.ca_pem)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().isdigit(), out.stdout


def test_mutual_tls_refuses_clients_without_a_certificate(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    client_cert = ca.issue("client")
    c = _start(tmp_path, ca, mutual=True, client_cert=client_cert)
    with c:
        leader = c.wait_ready()  # views go through c.ssl_context, which has the client cert
        follower = next(n for n in c.ids if n != leader)
        _plain_http_fails(c, leader)
        no_cert = client_context(ca.ca_pem)
        for nid in (leader, follower):
            with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
                http_json(c.url(nid, "/healthz"), context=no_cert)
        with (
            SyncClient([c.api[follower]], token=TOKEN, ssl=no_cert, retry_ms=0) as client,
            pytest.raises(TransportError),
        ):
            client.enqueue("mtls.q", 1)
        # with a certificate: through a follower, which presents its own to the leader
        with SyncClient([c.api[follower]], token=TOKEN, ssl=c.ssl_context) as client:
            job_id = client.enqueue("mtls.q", 1)
            assert client.get_job(job_id)["state"] == "queued"
