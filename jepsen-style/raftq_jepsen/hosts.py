"""Hosts: one network namespace per node on a private bridge, and the node processes in them.

Topology (all names start with ``PREFIX``; nothing else on the machine is touched):

- ``jepsen-sw``: a "switch" namespace holding the bridge ``br0``;
- ``jepsen-nK``: node K's namespace, ``eth0`` = ``SUBNET.K/24``, its veth peer on ``br0``;
- the root namespace gets one veth ``jepsen-h`` (``SUBNET.100/24``) into the bridge, so the
  clients (the harness, in the root namespace) reach every node API over the bridge.

Faults between nodes are iptables rules inside the node namespaces that name peer addresses
only: a partition never cuts the clients off a node (as in Jepsen: the nemesis cuts the
network between nodes, clients keep talking to the nodes they picked).

Nodes are real ``python -m raftq serve`` processes started with ``ip netns exec`` (which execs,
so the PID we hold is the node's own: kill -9 and SIGSTOP reach the node itself). When clock
faults are wanted, every node runs under libfaketime with its own ``FAKETIME_TIMESTAMP_FILE``
that the nemesis rewrites at runtime. Disk faults (``disks.py``): with ``disk_tmpfs`` each
node's data dir is its own small tmpfs (unmounted on every exit path); with ``eio`` every node
runs under an LD_PRELOAD library that fails its data-dir writes with EIO on demand; with
``wall_shift`` under one that adds a per-node offset (a file) to its wall clock only.

Spare hosts (membership nemeses): ``spares`` more namespaces ``jepsen-n(N+1)``... are built
with the others but their nodes are not in the initial cluster (``cluster.toml`` lists the first
``n``); they start with ``--join`` and ``cluster-join.toml``, which lists every host. ``nodes`` is
the harness's view of the current members, ``spares`` the hosts outside the cluster; a node
moves between the two as membership changes (``admit``, ``retire``).

Only one harness may own these names at a time: ``Hosts`` takes ``LOCK_PATH`` (flock) and then
removes any stale namespaces and root veth left by a killed earlier run.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from raftq.node.spawn import serve_argv, start_node
from raftq_jepsen import disks

__all__ = [
    "FAKETIME_LIB",
    "LOCK_PATH",
    "PREFIX",
    "SUBNET",
    "Hosts",
    "NodeProc",
    "ensure_tools",
]

logger = logging.getLogger(__name__)

PREFIX = "jepsen"
SUBNET = "10.213.7"  # private /24 used only inside our namespaces and the root veth
HOST_IP = f"{SUBNET}.100"
SWITCH_NS = f"{PREFIX}-sw"
ROOT_VETH = f"{PREFIX}-h"
RAFT_PORT = 7100
API_PORT = 7000
LOCK_PATH = Path("/tmp/raftq-jepsen.lock")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
MAX_NODES = 9
DELAY_QUEUE = 7  # NFQUEUE number of the delay nemesis (per namespace)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an ip/iptables command; raise with its stderr on failure when ``check``."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def ensure_tools(*, clock: bool, cc: bool = False) -> list[str]:
    """What is missing to run here (empty: all good). ``make``/``.ci/run`` install them."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces and iptables need it)")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install iproute2 iptables)")
    if clock and not Path(FAKETIME_LIB).exists():
        missing.append(f"{FAKETIME_LIB} (apt-get install libfaketime)")
    if cc and shutil.which("cc") is None and shutil.which("gcc") is None:
        missing.append("a C compiler for the disk-error shim (apt-get install gcc)")
    return missing


def node_ns(i: int) -> str:
    return f"{PREFIX}-n{i}"


def node_ip(i: int) -> str:
    return f"{SUBNET}.{i}"


@dataclass
class NodeProc:
    """One node: its namespace, addresses, process and clock file."""

    index: int  # 1-based
    id: str
    ns: str
    ip: str
    log_path: Path
    clock_file: Path
    data_dir: Path
    eio_flag: Path  # while it exists, data-dir writes fail with EIO (``eio`` hosts only)
    wall_file: Path  # seconds added to the wall clock (``wall_shift`` hosts only)
    # A spare host's node: started with the join config (every host) and, while ``join`` is
    # set, ``--join join`` (an API address of a member).
    spare: bool = False
    join: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_ns: int = 0  # monotonic ns of the last start (libfaketime counts rates from it)
    paused: bool = False
    clock_offset_s: float = 0.0  # what the clock file says now
    clock_rate: float = 1.0
    wall_offset_s: float = 0.0  # what the wall file says now
    log: IO[bytes] | None = field(default=None, repr=False)
    # The harness ended the process itself (kill, stop): an exit that is no news.
    expected_exit: bool = False
    # Exits the harness did not cause: {"time_ns" (monotonic), "code", "last_line"}.
    exits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.ip}:{API_PORT}"

    @property
    def url(self) -> str:
        return f"http://{self.api}"

    @property
    def raft(self) -> str:
        return f"{self.ip}:{RAFT_PORT}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Hosts:
    """Create the namespaces and nodes of one run, and remove them on ``close`` (always).

    Args:
        run_dir: where the config, data and node logs go.
        n: number of nodes (1..9).
        faketime: start nodes under libfaketime (clock nemeses).
        test_fault: value of ``RAFTQ_TEST_FAULT`` for the nodes (positive controls only).
        raft_overrides: extra ``[raft]`` keys of the generated config.
        disk_tmpfs: give each node's data dir its own small tmpfs (the disk-full nemesis).
        eio: start nodes under the EIO shim (the disk-error nemesis).
        wall_shift: start nodes under the wall-clock shim (the clock-jump nemesis).
        spares: hosts built beyond the ``n`` nodes of the initial cluster (membership nemeses).
    """

    def __init__(
        self,
        run_dir: Path,
        n: int,
        *,
        faketime: bool,
        test_fault: str | None = None,
        raft_overrides: dict[str, int] | None = None,
        disk_tmpfs: bool = False,
        eio: bool = False,
        wall_shift: bool = False,
        spares: int = 0,
    ) -> None:
        if not 1 <= n <= MAX_NODES:
            raise ValueError(f"--nodes must be 1..{MAX_NODES}")
        if spares < 0 or n + spares > MAX_NODES:
            raise ValueError(f"--nodes plus spare hosts must be at most {MAX_NODES}")
        self.run_dir = run_dir
        self.n = n
        self.faketime = faketime
        self.test_fault = test_fault
        self.raft_overrides = raft_overrides or {}
        self.disk_tmpfs = disk_tmpfs
        self.eio = eio
        self.eio_lib: Path | None = None
        self.wall_shift = wall_shift
        self.wall_lib: Path | None = None
        self._mounts: list[Path] = []
        self.secret = secrets.token_urlsafe(24)
        self.token = secrets.token_urlsafe(24)  # API token (sent as Bearer; admin role)
        self.spare_count = spares
        self.config_path = run_dir / "cluster.toml"
        self.join_config_path = run_dir / "cluster-join.toml"
        self.nodes: list[NodeProc] = []  # the current members (the harness's view)
        self.spares: list[NodeProc] = []  # hosts outside the cluster
        self._lock: IO[str] | None = None
        self.delayers: list[subprocess.Popen[bytes]] = []
        self._created: list[str] = []

    # -- setup / teardown -------------------------------------------------------------------

    def open(self) -> None:
        """Take the lock, clean stale leftovers, build the network, write the config."""
        self._lock = LOCK_PATH.open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another jepsen run holds %s: waiting", LOCK_PATH)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        cleanup_stale()
        self._check_subnet_free()
        self._build_network()
        self._write_config()
        for i in range(1, self.n + self.spare_count + 1):
            nid = f"n{i}"
            node = NodeProc(
                index=i,
                id=nid,
                ns=node_ns(i),
                ip=node_ip(i),
                log_path=self.run_dir / "logs" / f"{nid}.log",
                clock_file=self.run_dir / "clock" / nid,
                data_dir=self.run_dir / "data" / nid,
                eio_flag=self.run_dir / "eio" / f"{nid}.on",
                wall_file=self.run_dir / "wall" / nid,
                spare=i > self.n,
            )
            node.clock_file.parent.mkdir(parents=True, exist_ok=True)
            node.log_path.parent.mkdir(parents=True, exist_ok=True)
            node.clock_file.write_text("+0 x1\n")
            (self.spares if node.spare else self.nodes).append(node)
            if self.disk_tmpfs:
                disks.mount_tmpfs(node.data_dir, node.ns)
                self._mounts.append(node.data_dir)
        if self.eio:
            self.eio_lib = disks.build_eio_shim(self.run_dir / "eio")
        if self.wall_shift:
            self.wall_lib = disks.build_shim("wallclock_shim.c", self.run_dir / "wall")

    @property
    def all_nodes(self) -> list[NodeProc]:
        """Every host, member or spare, in host order."""
        return sorted(self.nodes + self.spares, key=lambda n: n.index)

    def by_id(self, node_id: str) -> NodeProc | None:
        return next((n for n in self.all_nodes if n.id == node_id), None)

    def admit(self, node: NodeProc) -> None:
        """Count ``node`` among the members from now on (the cluster said it is one)."""
        if node in self.spares:
            self.spares.remove(node)
            self.nodes.append(node)
            self.nodes.sort(key=lambda n: n.index)

    def retire(self, node: NodeProc) -> None:
        """Count ``node`` among the spares from now on (the cluster said it left)."""
        if node in self.nodes:
            self.nodes.remove(node)
            self.spares.append(node)
            self.spares.sort(key=lambda n: n.index)

    def close(self) -> None:
        """Kill every node we started, delete every namespace and the root veth."""
        self._stop_delayers()
        for node in self.all_nodes:
            self._reap(node)
        for ns in reversed(self._created):
            _run("ip", "netns", "del", ns, check=False)
        _run("ip", "link", "del", ROOT_VETH, check=False)
        self._created.clear()
        for path in reversed(self._mounts):
            disks.umount(path)
        self._mounts.clear()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _reap(self, node: NodeProc) -> None:
        if node.proc is not None and node.proc.poll() is None:
            with _suppress_lookup():
                os.kill(node.proc.pid, signal.SIGCONT)
                os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait()
        node.expected_exit = True
        node.paused = False
        if node.log is not None:
            node.log.close()
            node.log = None

    def _check_subnet_free(self) -> None:
        addrs = _run("ip", "-o", "-4", "addr", "show").stdout
        if f" {SUBNET}." in addrs:
            raise RuntimeError(f"{SUBNET}.0/24 is already in use in the root namespace")

    def _build_network(self) -> None:
        _run("ip", "netns", "add", SWITCH_NS)
        self._created.append(SWITCH_NS)
        _run("ip", "-n", SWITCH_NS, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", SWITCH_NS, "link", "set", "br0", "up")
        for i in range(1, self.n + self.spare_count + 1):
            ns = node_ns(i)
            _run("ip", "netns", "add", ns)
            self._created.append(ns)
            peer = f"p{i}"
            _run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer,
                 "netns", SWITCH_NS)  # fmt: skip
            _run("ip", "-n", SWITCH_NS, "link", "set", peer, "master", "br0")
            _run("ip", "-n", SWITCH_NS, "link", "set", peer, "up")
            _run("ip", "-n", ns, "addr", "add", f"{node_ip(i)}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", ROOT_VETH, "type", "veth", "peer", "name", "ph",
             "netns", SWITCH_NS)  # fmt: skip
        _run("ip", "-n", SWITCH_NS, "link", "set", "ph", "master", "br0")
        _run("ip", "-n", SWITCH_NS, "link", "set", "ph", "up")
        _run("ip", "addr", "add", f"{HOST_IP}/24", "dev", ROOT_VETH)
        _run("ip", "link", "set", ROOT_VETH, "up")

    def _write_config(self) -> None:
        """``cluster.toml`` (the initial members) and, with spare hosts, ``cluster-join.toml``
        (every host: a joining node finds its own addresses there; the members it joins are
        the cluster's replicated ones, not this list)."""
        self.config_path.write_text(self._config_text(self.n))
        if self.spare_count:
            self.join_config_path.write_text(self._config_text(self.n + self.spare_count))

    def _config_text(self, hosts: int) -> str:
        digest = hashlib.sha256(self.token.encode()).hexdigest()
        lines = [
            "[cluster]",
            f'name = "{PREFIX}"',
            f'data_dir = "{self.run_dir / "data"}"',
            f'secret = "{self.secret}"',
            "",
            "[[auth.tokens]]",
            'name = "jepsen"',
            f'sha256 = "{digest}"',
            'role = "admin"',
            "",
            "[raft]",
        ]
        lines += [f"{k} = {v}" for k, v in sorted(self.raft_overrides.items())]
        for i in range(1, hosts + 1):
            lines += [
                "",
                "[[nodes]]",
                f'id = "n{i}"',
                f'raft = "{node_ip(i)}:{RAFT_PORT}"',
                f'api = "{node_ip(i)}:{API_PORT}"',
            ]
        return "\n".join(lines) + "\n"

    # -- node processes ---------------------------------------------------------------------

    def start(self, node: NodeProc) -> None:
        """Start (or restart) ``node``'s process; returns at once (it binds in the background)."""
        if node.alive():
            raise RuntimeError(f"{node.id} is already running")
        self.note_exit(node)
        env = dict(os.environ)
        env.pop("RAFTQ_TEST_FAULT", None)
        env.pop("RAFTQ_TEST_FAULTS_ENABLED", None)
        if self.test_fault:
            env["RAFTQ_TEST_FAULT"] = self.test_fault
            env["RAFTQ_TEST_FAULTS_ENABLED"] = "yes-break-this-node"
        preload: list[str] = []
        if self.eio_lib is not None:
            preload.append(str(self.eio_lib))
            env["RAFTQ_JEPSEN_EIO_FLAG"] = str(node.eio_flag)
            env["RAFTQ_JEPSEN_EIO_DIR"] = str(node.data_dir)
        if self.wall_lib is not None:
            # Before libfaketime: its offset then applies underneath this one.
            preload.append(str(self.wall_lib))
            self.set_wall_offset(node, 0.0)  # a restart begins on the real clock
            env["RAFTQ_JEPSEN_WALL_OFFSET_FILE"] = str(node.wall_file)
        if self.faketime:
            # A restart begins on the real clock: libfaketime counts rates from process start.
            node.clock_file.write_text("+0 x1\n")
            node.clock_offset_s, node.clock_rate = 0.0, 1.0
            preload.append(FAKETIME_LIB)
            env["FAKETIME_TIMESTAMP_FILE"] = str(node.clock_file)
            env["FAKETIME_CACHE_DURATION"] = "1"  # re-read the file at most once a second
        if preload:
            env["LD_PRELOAD"] = " ".join(preload)
        if node.join:
            env["RAFTQ_TOKEN"] = self.token  # --join asks a member to add it: an admin token
        if node.log is None:
            node.log = node.log_path.open("ab")
        node.log.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
        node.log.flush()
        netns = ("ip", "netns", "exec", node.ns)
        config = self.config_for(node)
        extra = ("--join", node.join) if node.join else ()
        argv = serve_argv(config, node.id, log_level="info", prefix=netns, extra=extra)
        node.proc = start_node(argv, stdout=node.log, env=env)
        node.started_ns = time.monotonic_ns()
        node.paused = False
        node.expected_exit = False

    def config_for(self, node: NodeProc) -> Path:
        """The config file ``node`` runs with (spare hosts: the one that lists every host)."""
        return self.join_config_path if node.spare else self.config_path

    def note_exit(self, node: NodeProc) -> dict[str, Any] | None:
        """If ``node`` exited by itself (not by our kill or stop), record and return its exit
        code and the last line of its log (what it said when it stopped itself)."""
        if node.proc is None or node.proc.poll() is None or node.expected_exit:
            return None
        record: dict[str, Any] = {
            "time_ns": time.monotonic_ns(),
            "code": node.proc.returncode,
            "last_line": last_log_line(node.log_path),
        }
        node.exits.append(record)
        node.expected_exit = True  # recorded once
        logger.info("%s had exited by itself: %s", node.id, record)
        return record

    def kill(self, node: NodeProc) -> None:
        """kill -9 (a paused node is killed too)."""
        self.note_exit(node)
        if node.proc is not None and node.proc.poll() is None:
            with _suppress_lookup():
                os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait()
            node.expected_exit = True
        node.paused = False

    def stop(self, node: NodeProc, timeout_s: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL past ``timeout_s``)."""
        self.note_exit(node)
        if node.proc is None or node.proc.poll() is not None:
            return
        if node.paused:
            self.resume(node)
        node.expected_exit = True
        node.proc.terminate()
        try:
            node.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(node)

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every node at once, then wait for each (SIGKILL past ``timeout_s``)."""
        for node in self.all_nodes:
            self.note_exit(node)
            if node.alive():
                if node.paused:
                    self.resume(node)
                node.expected_exit = True
                node.proc.terminate()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        for node in self.all_nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(node)

    def wipe(self, node: NodeProc) -> int:
        """Delete everything in ``node``'s data dir (a new or wiped disk); the node must be down.
        The dir itself stays (it may be a tmpfs mount point). Returns the files deleted."""
        if node.alive():
            raise RuntimeError(f"{node.id} is running: kill it before wiping its data dir")
        count = 0
        if node.data_dir.exists():
            for child in node.data_dir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    count += sum(1 for p in child.rglob("*") if not p.is_dir())
                    shutil.rmtree(child)
                else:
                    count += 1
                    child.unlink()
        return count

    def pause(self, node: NodeProc) -> None:
        if node.alive():
            os.kill(node.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            node.paused = True

    def resume(self, node: NodeProc) -> None:
        if node.alive():
            os.kill(node.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        node.paused = False

    def set_clock(self, node: NodeProc, offset_s: float, rate: float) -> None:
        """Write the node's libfaketime spec. To keep its clocks continuous when only the rate
        changes, the caller passes the offset that makes them so (``continuous_offset``)."""
        node.clock_file.write_text(f"{offset_s:+.3f} x{rate:g}\n")
        node.clock_offset_s, node.clock_rate = offset_s, rate

    def set_wall_offset(self, node: NodeProc, offset_s: float) -> None:
        """Step ``node``'s wall clock to real + ``offset_s`` (seen within 200 ms); its
        monotonic clocks do not move (``wallclock_shim.c``)."""
        node.wall_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = node.wall_file.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:.3f}\n")
        tmp.replace(node.wall_file)  # the shim never reads a half-written file
        node.wall_offset_s = offset_s

    def continuous_offset(self, node: NodeProc, new_rate: float) -> float:
        """The offset that keeps ``node``'s fake clock continuous when its rate becomes
        ``new_rate`` now: libfaketime computes fake = start + rate * elapsed + offset."""
        elapsed_s = (time.monotonic_ns() - node.started_ns) / 1e9
        return node.clock_offset_s + elapsed_s * (node.clock_rate - new_rate)

    # -- network faults (iptables inside node namespaces) ------------------------------------

    def ipt(self, node: NodeProc, *rule: str) -> None:
        _run("ip", "netns", "exec", node.ns, "iptables", "-w", *rule)

    def drop_from(self, node: NodeProc, peers: list[NodeProc], *, both: bool = True) -> None:
        """``node`` drops packets from ``peers`` (and to them when ``both``)."""
        for p in peers:
            self.ipt(node, "-A", "INPUT", "-s", p.ip, "-j", "DROP")
            if both:
                self.ipt(node, "-A", "OUTPUT", "-d", p.ip, "-j", "DROP")

    def lossy(self, node: NodeProc, peers: list[NodeProc], probability: float) -> None:
        """``node`` drops a random ``probability`` of the packets from ``peers``."""
        for p in peers:
            self.ipt(node, "-A", "INPUT", "-s", p.ip, "-m", "statistic", "--mode", "random",
                     "--probability", f"{probability:.2f}", "-j", "DROP")  # fmt: skip

    def delay(self, node: NodeProc, peers: list[NodeProc], delay_ms: int, jitter_ms: int) -> None:
        """Hold every packet ``node`` sends to ``peers`` for ``delay_ms`` (+ up to ``jitter_ms``):
        a delayer process (``raftq_jepsen.delayer``) in its namespace serves an NFQUEUE."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node.ns, sys.executable, "-m", "raftq_jepsen.delayer",
             "--queue", str(DELAY_QUEUE), "--delay-ms", str(delay_ms),
             "--jitter-ms", str(jitter_ms)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        self.delayers.append(proc)
        for p in peers:
            # --queue-bypass: until the delayer binds (and after it exits) packets just pass.
            self.ipt(node, "-A", "OUTPUT", "-d", p.ip, "-j", "NFQUEUE", "--queue-num",
                     str(DELAY_QUEUE), "--queue-bypass")  # fmt: skip

    def heal_network(self) -> None:
        for node in self.all_nodes:
            self.ipt(node, "-F", "INPUT")
            self.ipt(node, "-F", "OUTPUT")
        self._stop_delayers()

    def _stop_delayers(self) -> None:
        """SIGTERM: a delayer releases every packet it holds, then exits."""
        for proc in self.delayers:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.delayers:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.delayers.clear()


class _suppress_lookup:  # noqa: N801 - used like contextlib.suppress
    """Ignore ProcessLookupError (the process died meanwhile)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, *_: object) -> bool:
        return et is not None and issubclass(et, ProcessLookupError)


def cleanup_stale() -> None:
    """Remove namespaces and the root veth left by a killed earlier run (ours by prefix).

    Processes still running inside a stale namespace are killed first: deleting a namespace
    does not stop them. Called with the lock held, so they cannot belong to a live run.
    """
    names = _run("ip", "netns", "list", check=False).stdout.split("\n")
    for line in names:
        ns = line.split(" ")[0].strip()
        if not ns.startswith(f"{PREFIX}-"):
            continue
        pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with _suppress_lookup():
                os.kill(int(pid), signal.SIGKILL)
        logger.warning("removing stale namespace %s (%d processes killed)", ns, len(pids))
        _run("ip", "netns", "del", ns, check=False)
    if _run("ip", "link", "show", ROOT_VETH, check=False).returncode == 0:
        _run("ip", "link", "del", ROOT_VETH, check=False)
    for path in disks.stale_mounts(PREFIX):
        logger.warning("unmounting a stale data-dir tmpfs %s", path)
        disks.umount(path)


def last_log_line(path: Path) -> str:
    """The last non-empty line of a node log (at most its last 64 KiB are read)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""
