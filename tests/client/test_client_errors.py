"""Refused credentials are named as such, by the library and by ``raftq``: a 401/403 names the
node, the status and the fix (exit 4), a TLS handshake failure names TLS and whose certificate
is at fault (exit 5), instead of "no node answered" or "Server disconnected; a write may have
been applied". Real servers (the app over a ``LocalNode``), with a CA made at test time."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from raftq.cli.main import main
from raftq.client import Client
from raftq.config import Role, TokenConfig
from raftq.errors import AuthError, TlsError
from raftq.server import create_app
from raftq.server.auth import Security
from raftq.tls import client_context
from tests.support.certs import TestCA
from tests.support.local_node import LocalNode

TOKEN = "errors-test-token-0123456789"
READER = "errors-test-reader-0123456789"


# `main` installs a stderr handler on the root logger: taken away after each test.
pytestmark = pytest.mark.usefixtures("restore_root_logging")


def _token(name: str, role: Role, token: str) -> TokenConfig:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return TokenConfig(name=name, sha256=digest, role=role, queues=("*",))


@asynccontextmanager
async def _node(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """One node's API (tokens required), over TLS with ``ssl_context``; yields host:port."""
    tokens = (_token("ops", Role.ADMIN, TOKEN), _token("watch", Role.READER, READER))
    app = create_app(LocalNode("n1"), security=Security(tokens=tokens))
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _mutual_tls(ca: TestCA) -> ssl.SSLContext:
    cert, key = ca.issue("node")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca.ca_pem)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def _raftq(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str
) -> tuple[int, str]:
    monkeypatch.delenv("RAFTQ_TOKEN", raising=False)
    code = await asyncio.to_thread(main, list(argv))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("raftq: error: "), err
    return code, lines[0]


async def test_cli_without_a_token_names_the_401_and_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _node() as address:
        for command in (["queues"], ["status"], ["queue", "pause", "q"]):
            code, line = await _raftq(capsys, monkeypatch, *command, "--nodes", address)
            assert code == 4, (command, line)
            assert f"{address} refused the request without a token (401 unauthorized)" in line
            assert "pass --token or set RAFTQ_TOKEN" in line
        code, line = await _raftq(
            capsys, monkeypatch, "queue", "pause", "q", "--nodes", address, "--token", "wrong"
        )
        assert code == 4 and "refused the token (401 unauthorized)" in line, line
        code, line = await _raftq(
            capsys, monkeypatch, "queue", "pause", "q", "--nodes", address, "--token", READER
        )
        assert code == 4 and "refused the token (403 forbidden)" in line, line
        assert "role and queues" in line


async def test_client_auth_errors_carry_the_node_and_the_token_state() -> None:
    async with _node() as address:
        async with Client(address, retry_ms=0) as client:
            with pytest.raises(AuthError) as caught:
                await client.queues()
        assert (caught.value.status, caught.value.node, caught.value.token_sent) == (
            401,
            address,
            False,
        )
        assert "requires an API token" in str(caught.value)


async def test_cli_without_a_client_certificate_names_tls(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "pki")
    async with _node(_mutual_tls(ca)) as address:
        common = ["--nodes", address, "--token", TOKEN]
        code, line = await _raftq(
            capsys, monkeypatch, "enqueue", "q", "1", *common, "--tls-ca", str(ca.ca_pem)
        )
        assert code == 5, line
        assert f"TLS handshake with {address} failed" in line
        assert "requires a client certificate" in line and "--tls-cert" in line
        assert "a write may have been applied" not in line
        # without the CA: the node's certificate cannot be verified
        code, line = await _raftq(capsys, monkeypatch, "queues", "--nodes", f"https://{address}")
        assert code == 5 and "cannot verify the node's certificate" in line, line
        assert "--tls-ca" in line
        # with both, it works
        cert, key = ca.issue("client")
        tls = ["--tls-ca", str(ca.ca_pem), "--tls-cert", str(cert), "--tls-key", str(key)]
        assert await asyncio.to_thread(main, ["queues", *common, *tls]) == 0


async def test_client_tls_error_is_final_and_says_whose_certificate(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    async with _node(_mutual_tls(ca)) as address:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with Client(address, ssl=client_context(ca.ca_pem), retry_ms=10_000) as client:
            with pytest.raises(TlsError) as caught:
                await client.enqueue("q", 1)
        assert (caught.value.kind, caught.value.node) == ("client_cert", address)
        assert loop.time() - started < 5  # not retried for the whole budget
