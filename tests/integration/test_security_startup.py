"""The private raft port and the start-up refusals, on real `raftq serve` processes.

- A node whose API address is not loopback refuses to start without tokens, and one whose raft
  address is not loopback refuses without a secret: one line on stderr, no traceback.
- The raft port binds the configured address only (not 0.0.0.0).
- The pickle attack on the raft port (PySyncObj 0.3.17 unpickles every message a peer sends,
  before the peer has identified itself): without a secret it runs the attacker's
  code (the positive control, on loopback), with the secret it is dropped.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from raftq.node.spawn import serve_argv
from tests.integration.cluster import Cluster, free_ports


@pytest.mark.parametrize(
    "case",
    [
        ("10.255.0.1", "127.0.0.1", None, False, "auth.tokens: at least one"),
        ("127.0.0.1", "10.255.0.1", None, True, "cluster.secret: required"),
        ("127.0.0.1", "10.255.0.1", "short", True, "cluster.secret: too short"),
    ],
)
def test_exposed_addresses_without_protection_refuse_to_start(
    tmp_path: Path, case: tuple[str, str, str | None, bool, str]
) -> None:
    api_host, raft_host, secret, tokens, expect = case
    api_port, raft_port = free_ports(2)
    lines = ["[cluster]", 'name = "t"', 'data_dir = "data"']
    if secret is not None:
        lines.append(f'secret = "{secret}"')
    lines += ["", "[[nodes]]", 'id = "n1"', f'raft = "{raft_host}:{raft_port}"']
    lines += [f'api = "{api_host}:{api_port}"', ""]
    if tokens:
        lines += ["[[auth.tokens]]", 'name = "t"', f'sha256 = "{"a" * 64}"', 'role = "admin"']
    config = tmp_path / "c.toml"
    config.write_text("\n".join(lines) + "\n")
    env_free = {k: v for k, v in os.environ.items() if k != "RAFTQ_SECRET"}
    out = subprocess.run(
        serve_argv(config, "n1"),
        capture_output=True, text=True, timeout=60, check=False, env=env_free,
    )  # fmt: skip
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert expect in out.stderr, out.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything


def _frame(obj: object) -> bytes:
    """One PySyncObj message: native-endian int32 length + zlib(pickle(obj))."""
    data = zlib.compress(pickle.dumps(obj, 2), 3)
    return struct.pack("i", len(data)) + data


class _Exploit:
    """Unpickling this creates ``marker``: code execution on the receiving node."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def _attack(host: str, port: int, marker: Path) -> None:
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(_frame(_Exploit(str(marker))))
        s.sendall(_frame(["status"]))  # a utility command: unauthenticated without a secret
        s.settimeout(2)
        with contextlib.suppress(TimeoutError, ConnectionError):
            s.recv(4096)


def _raft_address(c: Cluster) -> tuple[str, int]:
    host, port = c.raft["n1"].rsplit(":", 1)
    return host, int(port)


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()


def test_pickle_attack_runs_without_secret_and_is_refused_with_it(tmp_path: Path) -> None:
    # positive control: the attack is real (loopback only, the marker is harmless)
    (tmp_path / "open").mkdir()
    (tmp_path / "closed").mkdir()
    open_node = Cluster.generate(tmp_path / "open", n=1, secret=None)
    with open_node:
        open_node.wait_ready()
        marker = tmp_path / "pwned-open"
        _attack(*_raft_address(open_node), marker)
        assert _wait_for(marker, 10), "the control attack did not run: the test proves nothing"

    closed = Cluster.generate(tmp_path / "closed", n=1, secret="a-long-cluster-secret-0123")
    with closed:
        closed.wait_ready()
        marker = tmp_path / "pwned-closed"
        _attack(*_raft_address(closed), marker)
        # the control shows the attack lands within moments; give it several times longer
        assert not _wait_for(marker, 3), "the secret did not stop the pickle"
        assert closed.alive("n1")
        closed.wait_ready(10)


def test_raft_port_binds_the_configured_address_only(tmp_path: Path) -> None:
    c = Cluster.generate(tmp_path, n=1)
    with c:
        c.wait_ready()
        host, port = _raft_address(c)
        assert host == "127.0.0.1"
        with socket.create_connection((host, port), timeout=5):
            pass
        # 127.0.0.2 is this machine too: a wildcard bind (PySyncObj's default) would accept it
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
