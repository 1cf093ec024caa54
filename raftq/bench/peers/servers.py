"""The peers' servers, started by the benchmark for one run and stopped again.

Each set listens on loopback only, on ports free at start, with its data, config and logs in
a temporary directory of its own. Every process is a child started here and stopped by its
PID (SIGTERM, then SIGKILL after a grace period); nothing is ever stopped by name, and the
directory is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from raftq.bench.cluster import BenchError, free_ports

__all__ = ["NatsCluster", "RabbitNode", "RedisNode", "ServerSet"]


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"a peer server exited with code {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise BenchError(f"a peer server did not open 127.0.0.1:{port} within {timeout_s:.0f} s")


class ServerSet:
    """Processes of one peer system; ``connection()`` is what its driver needs to reach it."""

    kind = "?"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"raftq-bench-{self.kind}-"))
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        raise NotImplementedError

    def connection(self) -> dict[str, Any]:
        raise NotImplementedError

    def _spawn(self, argv: list[str], log: str, env: dict[str, str] | None = None) -> Any:
        with open(self.root / log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.root
            )
        self._procs.append(proc)
        return proc

    def _before_stop(self) -> None:
        """A graceful shutdown of the system's own, before its processes get SIGTERM."""

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._before_stop()
        for proc in reversed(self._procs):  # started last, stopped first
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)


class NatsCluster(ServerSet):
    """NATS with JetStream: ``nodes`` servers routed into one cluster (file storage)."""

    kind = "nats"

    def __init__(self, nodes: int = 3) -> None:
        super().__init__()
        self.nodes = nodes
        ports = free_ports(2 * nodes)
        self.client_ports, self.route_ports = ports[:nodes], ports[nodes:]

    def _conf(self, i: int) -> str:
        store = self.root / f"n{i}"
        store.mkdir()
        lines = [
            f"server_name: n{i}",
            "host: 127.0.0.1",
            f"port: {self.client_ports[i]}",
            "jetstream {",
            f'  store_dir: "{store}"',
            "  max_memory_store: 1GB",
            "  max_file_store: 8GB",
            "}",
        ]
        if self.nodes > 1:
            routes = ", ".join(
                f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != i
            )
            lines += [
                "cluster {",
                "  name: raftq-bench",
                f"  listen: 127.0.0.1:{self.route_ports[i]}",
                f"  routes: [{routes}]",
                "}",
            ]
        conf = self.root / f"n{i}.conf"
        conf.write_text("\n".join(lines) + "\n")
        return str(conf)

    def start(self) -> None:
        procs = [
            self._spawn(["nats-server", "-c", self._conf(i)], f"n{i}.log")
            for i in range(self.nodes)
        ]
        for proc, port in zip(procs, self.client_ports, strict=True):
            _wait_port(port, 60, proc)

    def connection(self) -> dict[str, Any]:
        return {"urls": [f"nats://127.0.0.1:{p}" for p in self.client_ports]}


class RabbitNode(ServerSet):
    """One RabbitMQ node, with an ``epmd`` of its own on a free port (the system one, if any,
    is neither used nor disturbed)."""

    kind = "rabbitmq"
    _BIN = Path("/usr/lib/rabbitmq/bin")

    def __init__(self) -> None:
        super().__init__()
        self.port, self.dist_port, self.epmd_port = free_ports(3)
        self.node = f"raftqbench{os.getpid()}@localhost"
        self._env = self._environment()

    def _environment(self) -> dict[str, str]:
        (self.root / "home").mkdir()  # HOME holds the Erlang cookie that rabbitmqctl reads
        (self.root / "log").mkdir()
        conf = self.root / "rabbitmq.conf"
        conf.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "log.console = false\nlog.file.level = warning\n"
        )
        plugins = self.root / "enabled_plugins"
        plugins.write_text("[].\n")
        return dict(
            os.environ,
            HOME=str(self.root / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_CONFIG_FILE=str(conf),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(plugins),
            RABBITMQ_PID_FILE=str(self.root / "rabbitmq.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )

    def _ctl(self, *args: str, timeout_s: float = 60) -> str:
        argv = [str(self._BIN / "rabbitmqctl"), "-n", self.node, *args]
        try:
            r = subprocess.run(
                argv, env=self._env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"rabbitmqctl {' '.join(args)}: no answer in {timeout_s} s") from e
        if r.returncode != 0:
            raise BenchError(f"rabbitmqctl {' '.join(args)} failed: {r.stderr.strip()[-300:]}")
        return r.stdout

    def start(self) -> None:
        epmd = ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"]
        _wait_port(self.epmd_port, 20, self._spawn(epmd, "epmd.log", self._env))
        # The start script itself (the /usr/sbin wrapper switches to the rabbitmq user); it
        # stays the parent of beam.smp and passes SIGTERM on.
        node = self._spawn([str(self._BIN / "rabbitmq-server")], "server.log", self._env)
        deadline = time.monotonic() + 180
        while True:
            try:
                self._ctl("await_startup", "--timeout", "120", timeout_s=150)
                break
            except BenchError:
                if time.monotonic() > deadline or node.poll() is not None:
                    raise
                time.sleep(1)
        _wait_port(self.port, 30, node)

    def _before_stop(self) -> None:
        if len(self._procs) > 1 and self._procs[1].poll() is None:
            self._ctl("stop", timeout_s=60)
            self._procs[1].wait(60)

    def connection(self) -> dict[str, Any]:
        return {"url": f"amqp://guest:guest@127.0.0.1:{self.port}/"}


class RedisNode(ServerSet):
    """One Redis server with its append-only file fsynced every second (its usual setting)."""

    kind = "redis"

    def __init__(self) -> None:
        super().__init__()
        (self.port,) = free_ports(1)

    def start(self) -> None:
        conf = self.root / "redis.conf"
        conf.write_text(
            f"bind 127.0.0.1\nport {self.port}\ndaemonize no\ndir {self.root}\n"
            f'logfile {self.root / "redis.log"}\nappendonly yes\nappendfsync everysec\nsave ""\n'
        )
        _wait_port(self.port, 20, self._spawn(["redis-server", str(conf)], "redis.out"))

    def connection(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}
