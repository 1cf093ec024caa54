"""A node takes its ports and its data dir before it touches the data dir (raftq.node.claim):
a port another process holds, or a node already running on the data dir, is one line on stderr
and exit 2 with the data dir as it was; a node killed with -9 starts again (the kernel dropped
its lock). Real `raftq serve` processes of a one-node cluster."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftq.node.spawn import serve_argv
from tests.integration.cluster import Cluster, http_json

# Generous: on the unfixed code the node does not exit at all (it serves, never ready).
_SERVE_TIMEOUT_S = 20


def _serve_once(cluster: Cluster, nid: str = "n1") -> subprocess.CompletedProcess[str]:
    """Run `raftq serve` for ``nid`` and wait for it to exit."""
    return subprocess.run(
        serve_argv(cluster.config_path, nid),
        cwd=cluster.root,
        capture_output=True,
        text=True,
        timeout=_SERVE_TIMEOUT_S,
        check=False,
    )


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder`` (itself included): its size and mtime in ns."""
    found = {".": (0, folder.stat().st_mtime_ns)}
    for path in sorted(folder.rglob("*")):
        st = path.stat()
        found[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.fixture
def holder() -> Iterator[socket.socket]:
    """A socket of this (test) process, to listen on a node's port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        yield sock


@pytest.mark.parametrize("which", ["raft", "API"])
def test_a_taken_port_is_one_line_and_exit_2_with_the_data_dir_untouched(
    tmp_path: Path, holder: socket.socket, which: str
) -> None:
    cluster = Cluster.generate(tmp_path, n=1)
    address = cluster.raft["n1"] if which == "raft" else cluster.api["n1"]
    host, port = address.rsplit(":", 1)
    holder.bind((host, int(port)))
    holder.listen()
    data_dir = tmp_path / "data" / "n1"
    data_dir.mkdir(parents=True)  # an existing (empty) data dir: nothing may appear in it
    before = _state(tmp_path / "data")

    done = _serve_once(cluster)

    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert lines == [
        f"raftq: error: node n1: cannot bind its {which} port {address} (Address already in "
        f"use): stop the process that holds it (`ss -ltnp 'sport = :{port}'` names it) or give "
        f"node n1 another {which} port in the config"
    ]
    assert _state(tmp_path / "data") == before


def test_a_second_serve_is_refused_by_the_lock_and_a_killed_node_restarts(
    tmp_path: Path,
) -> None:
    # Short elections: a node restarted on a log waits two maximum election timeouts first.
    fast = "election_min_ms = 150\nelection_max_ms = 300"
    with Cluster.generate(tmp_path, n=1, extra_raft=fast) as cluster:
        cluster.wait_ready()
        pid = cluster.procs["n1"].pid
        data_dir = tmp_path / "data" / "n1"

        done = _serve_once(cluster)

        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"raftq: error: node n1: data dir {data_dir} is in use by another process (pid "
            f"{pid}): node n1 runs already; stop that process first, or give this node its "
            f"own data dir"
        ]
        status, _ = http_json(cluster.url("n1", "/readyz"))
        assert status == 200  # the live node still serves
        assert cluster.alive("n1")

        # kill -9 leaves the lock file (with the dead pid) behind: it does not block a restart.
        cluster.kill("n1")
        assert (data_dir / "raftq.lock").read_text() == f"{pid}\n"
        cluster.start("n1")
        cluster.wait_ready()
        assert (data_dir / "raftq.lock").read_text() == f"{cluster.procs['n1'].pid}\n"
