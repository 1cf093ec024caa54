"""``raftq serve`` under systemd's ``Type=notify`` (deploy/systemd/raftq@.service): a real node
with ``NOTIFY_SOCKET`` naming a datagram socket this test binds, as systemd does. ``READY=1``
arrives only once ``/readyz`` answers 200 (not while the node lacks a quorum, though its HTTP
API is up), and ``STOPPING=1`` when it is stopped with SIGTERM, after which it exits 0.

The container image's HEALTHCHECK (deploy/docker/healthcheck.py) runs against the same node:
unhealthy while it is not ready, healthy once it is."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.cluster import Cluster, http_json

HEALTHCHECK = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "healthcheck.py"


def _receive(sock: socket.socket, timeout_s: float) -> str | None:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(4096).decode()
    except TimeoutError:
        return None


def _healthcheck(c: Cluster, nid: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAFTQ_CONFIG": str(c.config_path), "RAFTQ_NODE": nid}
    argv = [sys.executable, str(HEALTHCHECK)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)


def _wait_http(c: Cluster, nid: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status, _ = http_json(c.url(nid, "/healthz"), timeout=1)
        except OSError:
            status = 0
        if status == 200:
            return
        assert c.alive(nid), c.log_tail(nid)
        time.sleep(0.05)
    raise AssertionError(f"{nid} never served /healthz:\n{c.log_tail(nid)}")


def test_ready_once_readyz_passes_and_stopping_on_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, path  # sun_path's limit
    c = Cluster.generate(tmp_path)  # not entered: it would start every node, without the socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        try:
            _notified(c, sock, path)
        finally:
            c.stop()


def _notified(c: Cluster, sock: socket.socket, path: Path) -> None:
    c.env["n1"] = {"NOTIFY_SOCKET": str(path)}
    c.start("n1")
    _wait_http(c, "n1")
    # Alone of three, n1 serves HTTP but has no leader: not ready, and nothing is sent.
    status, body = http_json(c.url("n1", "/readyz"))
    assert status == 503, body
    assert _receive(sock, 1.5) is None
    status, body = http_json(c.url("n1", "/readyz"))
    assert status == 503, body
    unhealthy = _healthcheck(c, "n1")
    assert unhealthy.returncode == 1 and "/readyz: HTTP Error 503" in unhealthy.stderr, unhealthy

    c.start("n2")  # a quorum: a leader is elected and n1 catches up
    message = _receive(sock, 30)
    assert message is not None, c.log_tail("n1")
    assert message.splitlines()[0] == "READY=1", message
    status, body = http_json(c.url("n1", "/readyz"))
    assert status == 200, body
    assert _receive(sock, 0.3) is None  # READY=1 is sent once
    healthy = _healthcheck(c, "n1")
    assert healthy.returncode == 0, healthy

    c.kill("n1", signal.SIGTERM)
    assert _receive(sock, 15) == "STOPPING=1"
    assert c.procs["n1"].wait(30) == 0, c.log_tail("n1")
