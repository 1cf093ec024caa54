"""The cluster configuration as frozen dataclasses (``raftq.config.load`` builds them).

The file describes the whole cluster; every node loads the same file and picks itself with
``--node ID``. Example (see ``cluster/three-node.toml`` and ``docs/operations.md``)::

    [cluster]
    name = "demo"
    data_dir = "data"            # relative to this file; one sub-folder per node
    # secret = "..."             # required once any raft address is not loopback

    [[nodes]]
    id = "n1"
    raft = "127.0.0.1:7101"      # peer port: never expose it to clients
    api = "127.0.0.1:7001"       # HTTP API

Environment overrides (applied by ``load_config`` / ``parse_config``; an empty value counts as
unset): ``RAFTQ_SECRET`` replaces ``[cluster].secret``, ``RAFTQ_DATA_DIR`` replaces
``[cluster].data_dir`` (a relative value is taken from the current directory).

Every problem found is collected and raised in one ``ConfigError``; nothing here asserts.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

from raftq.errors import ConfigError

__all__ = [
    "ENV_DATA_DIR",
    "ENV_SECRET",
    "MIN_SECRET_CHARS",
    "NODE_ID_RE",
    "ClusterConfig",
    "Fsync",
    "LimitsConfig",
    "NodeConfig",
    "RaftConfig",
    "Role",
    "TLSConfig",
    "TokenConfig",
    "is_loopback_host",
    "split_host_port",
]

ENV_SECRET: Final = "RAFTQ_SECRET"
ENV_DATA_DIR: Final = "RAFTQ_DATA_DIR"

MIB: Final = 1024 * 1024
# The secret derives PySyncObj's peer encryption key; anyone holding it can run code on every
# node (peers exchange pickles), so it must not be guessable once peers talk over a network.
MIN_SECRET_CHARS: Final = 16
# Node ids name data sub-folders and appear in URLs and logs.
NODE_ID_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOSTNAME_RE: Final = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)

Fsync = Literal["always", "off"]


class Role(StrEnum):
    """What a token may do. ``admin`` everything; ``producer`` enqueue and read its queues;
    ``worker`` claim, heartbeat, ack, nack on its queues; ``reader`` read only."""

    ADMIN = "admin"
    PRODUCER = "producer"
    WORKER = "worker"
    READER = "reader"


def split_host_port(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[v6]:port"`` for IPv6) into its parts.

    Raises:
        ValueError: with a readable reason when the address is malformed.
    """
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("expected '[ipv6]:port'")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep or not host:
            raise ValueError("expected 'host:port'")
        if ":" in host:
            raise ValueError("write an IPv6 address as '[addr]:port'")
        if not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"{host!r} is not a valid host name or IPv4 address")
    if not port_text.isdigit():
        raise ValueError(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1..65535")
    return host, port


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1: addresses no other machine can reach."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """One cluster member. Both addresses are what the others dial, and what this node binds."""

    id: str  # matches NODE_ID_RE; unique in the cluster; names the node's data sub-folder
    raft: str  # "host:port" of the peer (PySyncObj) port: cluster-internal, never for clients
    api: str  # "host:port" of the HTTP API

    @property
    def raft_host(self) -> str:
        return split_host_port(self.raft)[0]

    @property
    def raft_port(self) -> int:
        return split_host_port(self.raft)[1]

    @property
    def api_host(self) -> str:
        return split_host_port(self.api)[0]

    @property
    def api_port(self) -> int:
        return split_host_port(self.api)[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """TLS on the client API (not on the raft port, which the secret protects)."""

    cert: Path  # PEM certificate chain, absolute
    key: Path  # PEM private key, absolute
    client_ca: Path | None = None  # set: clients must present a certificate signed by it (mTLS)
    # Trust anchor for reaching the other nodes' APIs over TLS (forwarding); default: client_ca
    # if set, else the system's CAs. With client_ca, a node presents cert/key to its peers.
    ca: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenConfig:
    """One API token. The token itself is never stored: only its SHA-256.

    ``sha256`` is always set after loading: taken from the file, or computed from the value of
    the environment variable ``token_env`` at load time (``token_env`` then records where it
    came from).
    """

    name: str  # unique; shown in logs instead of the token
    sha256: str  # lowercase hex SHA-256 of the token
    token_env: str | None = None
    role: Role
    queues: tuple[str, ...] = ("*",)  # fnmatch-style patterns of the queues it may touch


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    """Limits the HTTP layer enforces (below the state machine's own hard caps)."""

    max_body_bytes: int = 16 * MIB  # request body; larger -> 413
    max_payload_bytes: int = 1 * MIB  # one job's encoded payload; <= max_body_bytes
    max_batch_jobs: int = 1_000  # jobs in one enqueue request
    max_wait_ms: int = 60_000  # longest long-poll a claim may ask for
    rate_per_s: int = 0  # requests/s per token (per client address with auth off); 0 = no limit
    rate_burst: int = 0  # requests at once above the rate; 0 = rate_per_s


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    """Raft (PySyncObj) settings. See docs/operations.md for why the defaults are what they are."""

    # "always": a write is acknowledged only once fsynced on a majority; "off": page cache only
    # (survives kill -9, not power loss).
    fsync: Fsync = "always"
    election_min_ms: int = 400  # PySyncObj raftMinTimeout
    election_max_ms: int = 1_400  # PySyncObj raftMaxTimeout; > election_min_ms
    # PySyncObj's default 5000 makes a node snapshot (fork + pickle of the whole state) back to
    # back with a big state: measured stalls and elections. Bound: ~0.5 KB RAM per log entry.
    log_compaction_min_entries: int = 1_000_000
    log_compaction_min_time_s: int = 300
    # A snapshot writer (forked child) still running after this is killed; the next one
    # starts over. Measured: 13 s at 1M jobs, so the default only catches a hung writer.
    snapshot_write_timeout_s: int = 600
    submit_timeout_ms: int = 10_000  # deadline of one proposal; then OutcomeUnknown
    tick_interval_ms: int = 250  # how often the leader proposes `tick` (lease expiry, delays)
    # The largest step forward one node's wall clock may move cluster time by; a bigger one
    # needs a majority of the nodes' clocks (raftq.raft.cluster_clock). Keep it above twice
    # tick_interval_ms: a follower's estimate lags by up to that, and a new leader whose clock
    # is further ahead stamps that estimate until the other nodes' clocks are asked.
    clock_max_step_ms: int = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """The whole cluster, as every node sees it."""

    name: str
    data_dir: Path  # absolute; node N keeps its files in data_dir / N
    secret: str | None = field(default=None, repr=False)  # PySyncObj password (peer auth+enc)
    nodes: tuple[NodeConfig, ...]  # at least one; ids, raft and api addresses all distinct
    tls: TLSConfig | None = None
    tokens: tuple[TokenConfig, ...] = ()  # empty = auth off (only with loopback API addresses)
    metrics_open: bool = False  # [auth] metrics = "open": /metrics without a token
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    raft: RaftConfig = field(default_factory=RaftConfig)
    source: Path | None = None  # the file it was loaded from, if any

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tokens)

    def node(self, node_id: str) -> NodeConfig:
        """The node ``node_id``.

        Raises:
            ConfigError: when the config has no such node (the message names the known ids).
        """
        for n in self.nodes:
            if n.id == node_id:
                return n
        where = f" in {self.source}" if self.source else ""
        raise ConfigError([f"no node {node_id!r}{where}; known nodes: {', '.join(self.node_ids)}"])

    def node_data_dir(self, node_id: str) -> Path:
        """The data folder of ``node_id`` (``data_dir / node_id``); raises ``ConfigError`` if
        the node is unknown."""
        return self.data_dir / self.node(node_id).id

    def api_url(self, node_id: str) -> str:
        """``http(s)://host:port`` of a node's API."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.node(node_id).api}"
