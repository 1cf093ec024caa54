"""A real raftq cluster for tests: `raftq serve` processes on loopback with free ports.

Like hashicorp/raft's MakeCluster: start, find the leader, kill -9 / restart nodes, and check
that replicas converge on the same digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from raftq.node.spawn import serve_argv, start_node
from tests.support.ports import free_ports

__all__ = ["Cluster", "free_ports", "tokens_toml"]


def http_json(
    url: str,
    body: Any = None,
    method: str | None = None,
    timeout: float = 5.0,
    *,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


class Cluster:
    def __init__(self, root: Path, config_path: Path, nodes: list[dict[str, str]]) -> None:
        self.root = root
        self.config_path = config_path
        self.ids = [n["id"] for n in nodes]
        self.raft = {n["id"]: n["raft"] for n in nodes}
        self.api = {n["id"]: n["api"] for n in nodes}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.log_args = ["--log-level", "INFO"]  # e.g. add "--log-format", "json"
        self.headers: dict[str, str] = {}  # sent by view() (e.g. an Authorization header)
        self.ssl_context: ssl.SSLContext | None = None  # set: the API is reached over https
        self.env: dict[str, dict[str, str]] = {}  # node id -> extra environment (libfaketime)

    @classmethod
    def generate(
        cls,
        root: Path,
        n: int = 3,
        *,
        extra_raft: str = "",
        secret: str | None = "test-secret",
        extra: str = "",
    ) -> Cluster:
        """Write a config for ``n`` nodes on free loopback ports under ``root`` (``extra``:
        more TOML appended, e.g. ``[[auth.tokens]]``)."""
        ports = free_ports(2 * n)
        nodes = [
            {"id": f"n{i + 1}", "raft": f"127.0.0.1:{ports[i]}", "api": f"127.0.0.1:{ports[n + i]}"}
            for i in range(n)
        ]
        lines = ["[cluster]", 'name = "test"', 'data_dir = "data"']
        if secret:
            lines.append(f'secret = "{secret}"')
        lines.append("")
        if extra_raft:
            lines += ["[raft]", extra_raft, ""]
        for node in nodes:
            lines += ["[[nodes]]", *(f'{k} = "{v}"' for k, v in node.items()), ""]
        if extra:
            lines.append(extra)
        path = root / "cluster.toml"
        path.write_text("\n".join(lines))
        return cls(root, path, nodes)

    @classmethod
    def from_file(cls, root: Path, src: Path) -> Cluster:
        """Run a config file as it is (its ports and ids), from a copy under ``root``."""
        path = root / src.name
        shutil.copy(src, path)
        return cls(root, path, tomllib.loads(path.read_text())["nodes"])

    # -- processes ------------------------------------------------------------------------

    def start(self, *ids: str) -> None:
        for nid in ids or self.ids:
            log = open(self.root / f"{nid}.log", "ab")  # noqa: SIM115  # owned by the process
            self.procs[nid] = start_node(
                serve_argv(self.config_path, nid, extra=self.log_args),
                stdout=log,
                cwd=self.root,
                env={**os.environ, **self.env.get(nid, {})},
            )
            log.close()

    def kill(self, nid: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[nid]
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(10)

    def alive(self, nid: str) -> bool:
        return self.procs[nid].poll() is None

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(10)

    def drain(self, nid: str, timeout_s: int = 30) -> subprocess.CompletedProcess[str]:
        """``raftq node drain`` of ``nid`` (returns once the node's API is gone, or fails)."""
        argv = [sys.executable, "-m", "raftq", "node", "drain", "--config", str(self.config_path)]
        return subprocess.run(
            [*argv, "--node", nid, "--timeout", str(timeout_s)],
            check=False,
            capture_output=True,
            text=True,
            timeout=2 * timeout_s,
            cwd=self.root,
        )

    def log_tail(self, nid: str, lines: int = 40) -> str:
        text = (self.root / f"{nid}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- views ----------------------------------------------------------------------------

    def url(self, nid: str, path: str) -> str:
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{self.api[nid]}{path}"

    def view(self, nid: str) -> dict[str, Any] | None:
        try:
            status, body = http_json(
                self.url(nid, "/v1/cluster"),
                timeout=2,
                headers=self.headers,
                context=self.ssl_context,
            )
        except OSError:
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def leader(self, timeout: float = 15.0, among: list[str] | None = None) -> str:
        """The id of the leader that a majority of live nodes agrees on."""
        deadline = time.monotonic() + timeout
        nodes = among or [nid for nid in self.ids if self.alive(nid)]
        while time.monotonic() < deadline:
            views = [self.view(nid) for nid in nodes]
            roles = [v["self"]["id"] for v in views if v and v["self"]["role"] == "leader"]
            if len(roles) == 1:
                votes = sum(1 for v in views if v and v.get("leader") == roles[0])
                if votes > len(self.ids) // 2 or votes == len(nodes):
                    return roles[0]
            time.sleep(0.05)
        raise AssertionError(f"no leader within {timeout}s; logs:\n" + self._all_logs())

    def wait_ready(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        leader = self.leader(timeout)
        for nid in self.ids:
            if not self.alive(nid):
                continue
            while True:
                try:
                    status, _ = http_json(
                        self.url(nid, "/readyz"), timeout=2, context=self.ssl_context
                    )
                except OSError:
                    status = 0
                if status == 200:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{nid} not ready; log:\n{self.log_tail(nid)}")
                time.sleep(0.05)
        return leader

    def followers(self) -> list[str]:
        leader = self.leader()
        return [nid for nid in self.ids if nid != leader and self.alive(nid)]

    def wait_converged(self, timeout: float = 30.0) -> str:
        """Wait until every live node reports the same applied index and digest."""
        deadline = time.monotonic() + timeout
        last: list[Any] = []
        while time.monotonic() < deadline:
            views = [self.view(nid) for nid in self.ids if self.alive(nid)]
            last = [(v["self"]["applied_index"], v["self"]["digest"]) if v else None for v in views]
            if all(last) and len(set(last)) == 1:
                return str(last[0][1])  # type: ignore[index]
            time.sleep(0.1)
        raise AssertionError(f"replicas did not converge: {last}")

    def _all_logs(self) -> str:
        return "\n".join(f"--- {nid}\n{self.log_tail(nid, 20)}" for nid in self.ids)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tokens_toml(tokens: dict[str, tuple[str, str, str]]) -> str:
    """``[[auth.tokens]]`` tables of ``{name: (role, token, queue patterns as TOML)}``."""
    out = []
    for name, (role, token, queues) in tokens.items():
        digest = hashlib.sha256(token.encode()).hexdigest()
        out += ["[[auth.tokens]]", f'name = "{name}"', f'sha256 = "{digest}"', f'role = "{role}"']
        out += [f"queues = {queues}", ""]
    return "\n".join(out)
