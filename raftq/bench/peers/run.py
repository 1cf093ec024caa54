"""``raftq bench --peers``: install what is missing, start each peer's servers, run its driver
in the client venv, stop the servers.

The boot of a peer's servers and each measured repetition hold ``/tmp/bench.lock`` (RabbitMQ's
boot alone keeps a core busy for seconds); call this while NOT holding it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import raftq
from raftq.bench.cluster import BenchError
from raftq.bench.lock import bench_lock
from raftq.bench.peers.install import client_python, ensure_servers
from raftq.bench.peers.servers import NatsCluster, RabbitNode, RedisNode, ServerSet
from raftq.bench.phases import Workload

__all__ = [
    "DEFAULT_PEERS",
    "PEERS",
    "peer_summary",
    "prepare_peers",
    "run_peers",
    "unknown_peers",
]


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """A peer configuration: what it is, which Debian package it needs, its servers."""

    title: str
    package: str
    servers: Callable[[], ServerSet]


PEERS: dict[str, PeerSpec] = {
    "nats_r3": PeerSpec("NATS JetStream, 3 servers, R3", "nats-server", lambda: NatsCluster(3)),
    "rmq_quorum": PeerSpec("RabbitMQ quorum queue, 1 node", "rabbitmq-server", RabbitNode),
    "arq": PeerSpec("arq on Redis, poll 10 ms", "redis-server", RedisNode),
}
DEFAULT_PEERS = tuple(PEERS)

# The longest one peer's four phases may take before it counts as failed.
_DRIVER_TIMEOUT_S = 1800


def unknown_peers(names: list[str]) -> list[str]:
    return [n for n in names if n not in PEERS]


def _driver_argv(
    python: Path, name: str, conn: dict[str, Any], w: Workload, out: Path
) -> list[str]:
    # The client venv does not hold raftq: the directory that holds the raftq package goes at
    # the END of the driver's sys.path, so the venv's own packages always come first.
    root = str(Path(raftq.__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.append({root!r}); "
        "from raftq.bench.peers.drive import main; sys.exit(main(sys.argv[1:]))"
    )
    return [
        str(python),
        "-c",
        code,
        "--peer",
        name,
        "--conn",
        json.dumps(conn),
        "--workload",
        json.dumps(w.as_dict()),
        "--out",
        str(out),
    ]


def _run_one(python: Path, name: str, w: Workload, lock: bool) -> dict[str, Any]:
    spec = PEERS[name]
    print(f"-- peer {name}: {spec.title}", file=sys.stderr, flush=True)
    servers = spec.servers()
    try:
        with bench_lock(lock):
            servers.start()
        with tempfile.TemporaryDirectory(prefix="raftq-bench-drive-") as tmp:
            out = Path(tmp) / "record.json"
            argv = _driver_argv(python, name, servers.connection(), w, out)
            with bench_lock(lock):
                try:
                    proc = subprocess.run(
                        argv,
                        stdout=sys.stderr,
                        stderr=sys.stderr,
                        timeout=_DRIVER_TIMEOUT_S,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    return {"error": f"no result within {_DRIVER_TIMEOUT_S} s"}
            if proc.returncode != 0 or not out.is_file():
                return {"error": f"the driver failed (exit code {proc.returncode})"}
            record: dict[str, Any] = json.loads(out.read_text())
            return record
    except BenchError as e:
        return {"error": str(e)}
    finally:
        servers.stop()


def prepare_peers(names: list[str]) -> Path:
    """Install what ``names`` need (before anything is measured, so that a missing package
    fails the run at once); returns the client venv's interpreter."""
    ensure_servers(sorted({PEERS[n].package for n in names}))
    return client_python()


def run_peers(
    names: list[str], python: Path, w: Workload, *, lock: bool = True
) -> dict[str, dict[str, Any]]:
    """One repetition of each configuration, its drivers run by ``python`` (``prepare_peers``);
    returns ``{name: raw record}`` (the driver's record, or ``{"error": ...}`` for a
    configuration that produced none)."""
    return {name: _run_one(python, name, w, lock) for name in names}


def peer_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The figures ``raftq bench`` compares, from one raw peer record."""
    if "error" in rec:
        return {"error": rec["error"]}
    return {
        "enqueue_per_s": rec["enqueue"]["rate"],
        "process_per_s": rec["process"]["rate"],
        "mixed_per_s": rec["mixed"]["throughput"],
        "paced_p50_ms": rec["paced"]["e2e_p50_ms"],
        "paced_p99_ms": rec["paced"]["e2e_p99_ms"],
    }
