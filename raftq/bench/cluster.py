"""A throwaway local cluster for ``raftq bench``: real ``raftq serve`` processes on loopback.

The config (free ports, data under a temporary directory, ``[raft] fsync``) is generated, the
nodes are started as child processes and stopped by PID (SIGTERM, then SIGKILL), and the
directory is deleted afterwards. ``TermSampler`` polls every node's ``GET /v1/cluster`` so a
run can report the elections (term changes) and leader changes that happened during it.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from raftq.errors import RaftqError
from raftq.node.spawn import serve_argv, start_node

__all__ = ["BenchError", "LocalCluster", "TermSampler", "free_ports"]


class BenchError(RaftqError):
    """The benchmark could not run (a node did not start, no leader...)."""


def free_ports(n: int) -> list[int]:
    """``n`` loopback TCP ports free at the time of the call (another process may still take
    one before the caller binds it)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _get_json(url: str, timeout_s: float = 2.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


class LocalCluster:
    """``nodes`` real node processes with ``fsync`` on or off, in a fresh temporary directory."""

    def __init__(
        self,
        nodes: int = 3,
        *,
        fsync: bool = True,
        keep_dir: bool = False,
        raft_options: dict[str, int] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.n = nodes
        self.fsync = fsync
        self.keep_dir = keep_dir
        self.root = Path(tempfile.mkdtemp(prefix="raftq-bench-"))
        ports = free_ports(2 * nodes)
        self.ids = [f"n{i + 1}" for i in range(nodes)]
        self.raft = {nid: f"127.0.0.1:{ports[i]}" for i, nid in enumerate(self.ids)}
        self.api = {nid: f"127.0.0.1:{ports[nodes + i]}" for i, nid in enumerate(self.ids)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        lines = [
            "[cluster]",
            'name = "bench"',
            'data_dir = "data"',
            "",
            "[raft]",
            f'fsync = "{"always" if fsync else "off"}"',
            *(f"{k} = {int(v)}" for k, v in (raft_options or {}).items()),
            "",
        ]
        for nid in self.ids:
            lines += [
                "[[nodes]]",
                f'id = "{nid}"',
                f'raft = "{self.raft[nid]}"',
                f'api = "{self.api[nid]}"',
                "",
            ]
        self.config_path = self.root / "cluster.toml"
        self.config_path.write_text("\n".join(lines))

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def urls(self) -> list[str]:
        return [f"http://{self.api[nid]}" for nid in self.ids]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def start(self) -> None:
        for nid in self.ids:
            with open(self.root / f"{nid}.log", "ab") as log:
                argv = serve_argv(self.config_path, nid, log_level="WARNING")
                self.procs[nid] = start_node(argv, stdout=log, cwd=self.root)

    def wait_ready(self, timeout_s: float = 60.0) -> str:
        """Wait until every node is ready and agrees on one leader; return its id."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for nid, proc in self.procs.items():
                if proc.poll() is not None:
                    raise BenchError(f"node {nid} exited: {self.log_tail(nid)}")
            views = [_get_json(f"http://{self.api[nid]}/v1/cluster") for nid in self.ids]
            leaders = {v.get("leader") for v in views if isinstance(v, dict)}
            ready = [isinstance(v, dict) and v["self"].get("ready") for v in views]
            if all(ready) and len(leaders) == 1 and None not in leaders:
                return str(leaders.pop())
            time.sleep(0.1)
        raise BenchError(f"the cluster was not ready within {timeout_s:.0f} s")

    def wait_caught_up(self, timeout_s: float = 600.0) -> float:
        """Wait until every node has applied what the leader had committed when the wait
        began (after a preload, followers may still be receiving it); return the seconds."""
        started = time.monotonic()
        deadline = started + timeout_s
        target: int | None = None
        while time.monotonic() < deadline:
            views = [_get_json(f"http://{self.api[nid]}/v1/cluster") for nid in self.ids]
            selves = [v["self"] for v in views if isinstance(v, dict) and "self" in v]
            if target is None:
                target = max((int(s.get("commit_index") or 0) for s in selves), default=None)
            if (
                target is not None
                and len(selves) == len(self.ids)
                and all(int(s.get("applied_index") or 0) >= target for s in selves)
            ):
                return time.monotonic() - started
            time.sleep(0.2)
        raise BenchError(f"the nodes did not catch up within {timeout_s:.0f} s")

    def rss_kb(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for nid, proc in self.procs.items():
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            out[nid] = int(line.split()[1])
            except OSError:
                pass
        return out

    def log_tail(self, nid: str, lines: int = 20) -> str:
        try:
            text = (self.root / f"{nid}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if not self.keep_dir:
            shutil.rmtree(self.root, ignore_errors=True)


class TermSampler:
    """Polls every node's term and leader every ``interval_s`` in a background thread.

    ``mark()`` starts a window; ``elections()`` is the number of term increments seen since
    (the highest term any node reported), ``leader_changes()`` how often the agreed leader
    changed. A new term without a new leader (a failed election) still counts as an election.
    """

    def __init__(self, cluster: LocalCluster, interval_s: float = 0.2) -> None:
        self._cluster = cluster
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._term = 0
        self._leader: str | None = None
        self._term0 = 0
        self._changes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="term-sampler", daemon=True)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def mark(self) -> None:
        with self._lock:
            self._term0 = self._term
            self._changes = 0

    def elections(self) -> int:
        with self._lock:
            return self._term - self._term0

    def leader_changes(self) -> int:
        with self._lock:
            return self._changes

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        for nid in self._cluster.ids:
            view = _get_json(f"http://{self._cluster.api[nid]}/v1/cluster", 1.0)
            if not isinstance(view, dict):
                continue
            me = view.get("self") or {}
            with self._lock:
                self._term = max(self._term, int(me.get("term") or 0))
                leader = view.get("leader")
                if me.get("role") == "leader" and leader is not None:
                    if self._leader is not None and leader != self._leader:
                        self._changes += 1
                    self._leader = leader
