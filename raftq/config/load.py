"""Loading the cluster configuration: TOML text -> ``ClusterConfig``, every problem listed.

Environment overrides: ``RAFTQ_SECRET`` replaces ``[cluster].secret``, ``RAFTQ_DATA_DIR``
replaces ``[cluster].data_dir`` (a relative value is taken from the current directory); an
empty value counts as unset. Every problem found is collected and raised in one
``ConfigError``; nothing here asserts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from raftq.config._table import Table
from raftq.config.model import (
    ENV_DATA_DIR,
    ENV_SECRET,
    MIB,
    MIN_SECRET_CHARS,
    NODE_ID_RE,
    ClusterConfig,
    Fsync,
    LimitsConfig,
    NodeConfig,
    RaftConfig,
    Role,
    TLSConfig,
    TokenConfig,
    is_loopback_host,
    split_host_port,
)
from raftq.core import limits as core_limits
from raftq.errors import ConfigError

__all__ = ["load_config", "parse_config"]

_MAKE_SECRET: Final = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_CLUSTER_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SHA256_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> ClusterConfig:
    """Read and validate a config file. Relative paths in it are taken from its directory.

    Args:
        path: the TOML file.
        env: environment for the overrides and ``token_env``; ``os.environ`` when ``None``.

    Raises:
        ConfigError: listing every problem found (or why the file cannot be read).
    """
    file = Path(os.path.abspath(path))
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError([f"cannot read config file {path}: {e.strerror or e}"]) from e
    except UnicodeDecodeError as e:
        raise ConfigError(
            [f"config file {path} is not UTF-8 ({e.reason} at byte {e.start})"]
        ) from e
    return parse_config(text, file.parent, env, source=file)


def parse_config(
    text: str,
    base_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    source: Path | None = None,
) -> ClusterConfig:
    """Validate TOML text; relative paths in it are taken from ``base_dir``.

    Raises:
        ConfigError: listing every problem found.
    """
    env = os.environ if env is None else env
    base = Path(os.path.abspath(base_dir))
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{source or 'config'}: not valid TOML: {e}"]) from e
    problems: list[str] = []
    config = _Parser(base, env, problems).parse(Table(doc, "", problems), source)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None


class _Parser:
    def __init__(self, base: Path, env: Mapping[str, str], problems: list[str]) -> None:
        self.base = base
        self.env = env
        self.problems = problems
        self.raft_hosts: list[tuple[str, str]] = []
        self.api_hosts: list[tuple[str, str]] = []
        self.had_tokens = False  # some [[auth.tokens]] were written, even if invalid

    def path(self, value: str) -> Path:
        return Path(os.path.abspath(self.base / Path(value).expanduser()))

    def parse(self, root: Table, source: Path | None) -> ClusterConfig | None:
        cluster = root.table("cluster")
        if cluster is None:
            self.problems.append("[cluster]: missing (required: name, data_dir)")
        name, data_dir, secret = self.cluster(cluster or Table({}, "cluster", []))
        nodes = self.nodes(root)
        tls = self.tls(root.table("tls"))
        tokens, metrics_open = self.auth(root.table("auth"))
        limits = self.limits(root.table("limits"))
        raft = self.raft(root.table("raft"))
        root.finish()
        self.check_security(secret, tokens, limits.rate_per_s > 0)
        if self.problems or name is None or data_dir is None:
            return None
        return ClusterConfig(
            name=name,
            data_dir=data_dir,
            secret=secret,
            nodes=nodes,
            tls=tls,
            tokens=tokens,
            metrics_open=metrics_open,
            limits=limits,
            raft=raft,
            source=source,
        )

    def cluster(self, t: Table) -> tuple[str | None, Path | None, str | None]:
        name = t.text("name", required=True)
        if name is not None and not _CLUSTER_NAME_RE.fullmatch(name):
            t.problem("name", f"{name!r} must match [A-Za-z0-9_.-]{{1,64}}")
            name = None
        env_dir = _env(self.env, ENV_DATA_DIR)
        raw_dir = t.text("data_dir", required=env_dir is None)
        data_dir: Path | None = None
        if env_dir is not None:
            data_dir = Path(os.path.abspath(Path(env_dir).expanduser()))
        elif raw_dir is not None:
            data_dir = self.path(raw_dir)
        secret = t.text("secret")
        env_secret = _env(self.env, ENV_SECRET)
        if env_secret is not None:
            secret = env_secret
        t.finish()
        return name, data_dir, secret

    def nodes(self, root: Table) -> tuple[NodeConfig, ...]:
        tables = root.tables("nodes")
        if not tables:
            if tables is not None or not root.has("nodes"):
                self.problems.append("nodes: at least one [[nodes]] entry is required")
            return ()
        nodes: list[NodeConfig] = []
        ids: dict[str, str] = {}
        endpoints: dict[tuple[str, int], str] = {}
        for t in tables:
            node_id = t.text("id", required=True)
            raft = t.text("raft", required=True)
            api = t.text("api", required=True)
            t.finish()
            ok = node_id is not None and raft is not None and api is not None
            if node_id is not None:
                if not NODE_ID_RE.fullmatch(node_id) or node_id in (".", ".."):
                    t.problem(
                        "id",
                        f"{node_id!r} must be 1 to 64 of A-Z a-z 0-9 _ . - (and not '.' or '..')",
                    )
                    ok = False
                elif node_id in ids:
                    t.problem("id", f"duplicate node id {node_id!r} (also {ids[node_id]})")
                    ok = False
                else:
                    ids[node_id] = t.path("id")
            label = node_id or t.where
            for key, address, hosts in (
                ("raft", raft, self.raft_hosts),
                ("api", api, self.api_hosts),
            ):
                if address is None:
                    continue
                if self.endpoint(t, key, address, endpoints):
                    hosts.append((label, address))
                else:
                    ok = False
            if ok and node_id is not None and raft is not None and api is not None:
                nodes.append(NodeConfig(id=node_id, raft=raft, api=api))
        return tuple(nodes)

    def endpoint(self, t: Table, key: str, address: str, seen: dict[tuple[str, int], str]) -> bool:
        try:
            host, port = split_host_port(address)
        except ValueError as e:
            t.problem(key, f"bad address {address!r}: {e}")
            return False
        if _is_unspecified(host):
            t.problem(
                key,
                f"{address!r}: other nodes and clients dial this address, so it must be a "
                "concrete interface address, not a wildcard",
            )
            return False
        norm = (host.lower().rstrip("."), port)
        if norm in seen:
            t.problem(key, f"address {address!r} is already used by {seen[norm]}")
            return False
        seen[norm] = t.path(key)
        return True

    def tls(self, t: Table | None) -> TLSConfig | None:
        if t is None:
            return None
        cert = self.file(t, "cert", required=True)
        key = self.file(t, "key", required=True)
        client_ca = self.file(t, "client_ca", required=False)
        ca = self.file(t, "ca", required=False)
        t.finish()
        if cert is None or key is None:
            return None
        return TLSConfig(cert=cert, key=key, client_ca=client_ca, ca=ca)

    def file(self, t: Table, key: str, *, required: bool) -> Path | None:
        value = t.text(key, required=required)
        if value is None:
            return None
        path = self.path(value)
        if not path.is_file():
            t.problem(key, f"file not found: {path}")
            return None
        return path

    def auth(self, t: Table | None) -> tuple[tuple[TokenConfig, ...], bool]:
        if t is None:
            return (), False
        tables = t.tables("tokens")
        metrics = t.text("metrics")
        t.finish()
        if metrics not in (None, "open", "reader"):
            t.problem("metrics", f"{metrics!r} must be 'open' or 'reader'")
        self.had_tokens = bool(tables)
        tokens: list[TokenConfig] = []
        names: dict[str, str] = {}
        digests: dict[str, str] = {}
        for tt in tables or ():
            token = self.token(tt)
            if token is None:
                continue
            if token.name in names:
                tt.problem(
                    "name", f"duplicate token name {token.name!r} (also {names[token.name]})"
                )
                continue
            if token.sha256 in digests:
                tt.problem("sha256", f"the same token as {digests[token.sha256]}")
                continue
            names[token.name] = tt.path("name")
            digests[token.sha256] = tt.where
            tokens.append(token)
        return tuple(tokens), metrics == "open"

    def token(self, t: Table) -> TokenConfig | None:
        name = t.text("name", required=True)
        sha256 = t.text("sha256")
        token_env = t.text("token_env")
        role_text = t.text("role", required=True)
        queues = t.texts("queues")
        t.finish()
        ok = name is not None
        role: Role | None = None
        if role_text is not None:
            try:
                role = Role(role_text)
            except ValueError:
                roles = ", ".join(r.value for r in Role)
                t.problem("role", f"unknown role {role_text!r} (one of: {roles})")
        if t.has("queues") and queues == ():
            t.problem("queues", "list at least one queue pattern, or omit it for all queues")
            ok = False
        elif t.has("queues") and queues is None:
            ok = False
        digest: str | None = None
        if (sha256 is None) == (token_env is None):
            t.problem("sha256", "set exactly one of sha256 and token_env")
        elif sha256 is not None:
            if _SHA256_RE.fullmatch(sha256):
                digest = sha256.lower()
            else:
                t.problem("sha256", "must be 64 hex characters (the SHA-256 of the token)")
        elif token_env is not None:
            digest = self.token_digest(t, token_env)
        if not ok or name is None or role is None or digest is None:
            return None
        return TokenConfig(
            name=name, sha256=digest, token_env=token_env, role=role, queues=queues or ("*",)
        )

    def token_digest(self, t: Table, var: str) -> str | None:
        if not _ENV_NAME_RE.fullmatch(var):
            t.problem("token_env", f"{var!r} is not an environment variable name")
            return None
        value = _env(self.env, var)
        if value is None:
            t.problem("token_env", f"environment variable {var} is not set")
            return None
        return hashlib.sha256(value.encode()).hexdigest()

    def limits(self, t: Table | None) -> LimitsConfig:
        d = LimitsConfig()
        if t is None:
            return d
        limits = LimitsConfig(
            max_body_bytes=t.integer("max_body_bytes", d.max_body_bytes, low=1024, high=1024 * MIB),
            max_payload_bytes=t.integer(
                "max_payload_bytes", d.max_payload_bytes, low=1, high=core_limits.MAX_PAYLOAD_BYTES
            ),
            max_batch_jobs=t.integer(
                "max_batch_jobs", d.max_batch_jobs, low=1, high=core_limits.MAX_BATCH_JOBS
            ),
            max_wait_ms=t.integer("max_wait_ms", d.max_wait_ms, low=0, high=600_000),
            rate_per_s=t.integer("rate_per_s", d.rate_per_s, low=0, high=1_000_000),
            rate_burst=t.integer("rate_burst", d.rate_burst, low=0, high=1_000_000),
        )
        t.finish()
        if limits.max_payload_bytes > limits.max_body_bytes:
            t.problem(
                "max_payload_bytes",
                f"{limits.max_payload_bytes} is larger than max_body_bytes "
                f"({limits.max_body_bytes}): such a payload could never arrive",
            )
        return limits

    def raft(self, t: Table | None) -> RaftConfig:
        d = RaftConfig()
        if t is None:
            return d
        fsync_text = t.text("fsync")
        fsync: Fsync = d.fsync
        if fsync_text == "always":
            fsync = "always"
        elif fsync_text == "off":
            fsync = "off"
        elif fsync_text is not None:
            t.problem("fsync", f"{fsync_text!r} must be 'always' or 'off'")
        raft = RaftConfig(
            fsync=fsync,
            election_min_ms=t.integer("election_min_ms", d.election_min_ms, low=50, high=60_000),
            election_max_ms=t.integer("election_max_ms", d.election_max_ms, low=100, high=120_000),
            log_compaction_min_entries=t.integer(
                "log_compaction_min_entries", d.log_compaction_min_entries, low=1, high=10**8
            ),
            log_compaction_min_time_s=t.integer(
                "log_compaction_min_time_s", d.log_compaction_min_time_s, low=1, high=7 * 86_400
            ),
            snapshot_write_timeout_s=t.integer(
                "snapshot_write_timeout_s", d.snapshot_write_timeout_s, low=1, high=86_400
            ),
            submit_timeout_ms=t.integer(
                "submit_timeout_ms", d.submit_timeout_ms, low=100, high=600_000
            ),
            tick_interval_ms=t.integer("tick_interval_ms", d.tick_interval_ms, low=10, high=60_000),
            clock_max_step_ms=t.integer(
                "clock_max_step_ms", d.clock_max_step_ms, low=100, high=3_600_000
            ),
        )
        t.finish()
        if raft.election_max_ms <= raft.election_min_ms:
            t.problem(
                "election_max_ms",
                f"{raft.election_max_ms} must be greater than election_min_ms "
                f"({raft.election_min_ms})",
            )
        return raft

    def check_security(
        self, secret: str | None, tokens: tuple[TokenConfig, ...], rate_limited: bool
    ) -> None:
        """The secret and the tokens, judged on every well-formed address (even of a node
        with other problems), so one run reports them too."""

        def exposed(hosts: list[tuple[str, str]]) -> list[str]:
            return [
                f"{label} ({address})"
                for label, address in hosts
                if not is_loopback_host(split_host_port(address)[0])
            ]

        exposed_raft = exposed(self.raft_hosts)
        if exposed_raft and secret is None:
            self.problems.append(
                "cluster.secret: required because raft addresses are not loopback: "
                f"{', '.join(exposed_raft)} (set it in the file or in {ENV_SECRET}; "
                f"{_MAKE_SECRET})"
            )
        elif exposed_raft and secret is not None and len(secret) < MIN_SECRET_CHARS:
            self.problems.append(
                f"cluster.secret: too short for raft addresses that are not loopback "
                f"({len(secret)} characters, at least {MIN_SECRET_CHARS}; {_MAKE_SECRET})"
            )
        elif secret is None and len(self.raft_hosts) > 1 and (tokens or rate_limited):
            # Followers relay requests to the leader, which must know they come from a node
            # (or it would count them again, or could not tell them from a forged relay);
            # only the secret's signature says so (raftq.server.peer_auth).
            needs = "[[auth.tokens]]" if tokens else "limits.rate_per_s"
            self.problems.append(
                f"cluster.secret: required with {needs} in a cluster of "
                f"{len(self.raft_hosts)} nodes: nodes sign the requests they forward with it "
                f"(set it in the file or in {ENV_SECRET}; {_MAKE_SECRET})"
            )
        exposed_api = exposed(self.api_hosts)
        if not tokens and not self.had_tokens and exposed_api:
            self.problems.append(
                "auth.tokens: at least one [[auth.tokens]] is required because API addresses "
                f"are not loopback: {', '.join(exposed_api)} (no tokens = auth off, loopback only)"
            )
