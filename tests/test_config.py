"""raftq.config: the example files, defaults, env overrides, paths, and every validation problem."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from raftq.config import (
    ClusterConfig,
    LimitsConfig,
    RaftConfig,
    Role,
    is_loopback_host,
    load_config,
    parse_config,
    split_host_port,
)
from raftq.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SECRET = "0123456789abcdef0123"  # long enough for non-loopback raft addresses
DIGEST = hashlib.sha256(b"tok").hexdigest()

LOOPBACK_NODES = (
    ("n1", "127.0.0.1:7101", "127.0.0.1:7001"),
    ("n2", "127.0.0.1:7102", "127.0.0.1:7002"),
    ("n3", "127.0.0.1:7103", "127.0.0.1:7003"),
)


def toml(
    *,
    cluster: str = 'name = "t"\ndata_dir = "data"',
    nodes: tuple[tuple[str, str, str], ...] = LOOPBACK_NODES,
    extra: str = "",
) -> str:
    parts = [f"[cluster]\n{cluster}\n"]
    for node_id, raft, api in nodes:
        parts.append(f'[[nodes]]\nid = "{node_id}"\nraft = "{raft}"\napi = "{api}"\n')
    parts.append(extra)
    return "\n".join(parts)


def parse(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> ClusterConfig:
    return parse_config(text, tmp_path, env or {})


def problems_of(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path, env)
    return err.value.problems


# --- valid configs ---------------------------------------------------------------------------


# Each example has its own ports, so both can run on one machine at once (issue 20: with the
# same ports, nodes of the two clusters reached each other).
@pytest.mark.parametrize(
    ("name", "count", "raft_base", "api_base"),
    [("three-node", 3, 7101, 7001), ("five-node", 5, 7201, 8201)],
)
def test_example_files_load(name: str, count: int, raft_base: int, api_base: int) -> None:
    path = REPO / "cluster" / f"{name}.toml"
    config = load_config(path, env={})
    assert config.name == name
    assert config.node_ids == tuple(f"n{i}" for i in range(1, count + 1))
    assert [n.raft_port for n in config.nodes] == [raft_base + i for i in range(count)]
    assert [n.api_port for n in config.nodes] == [api_base + i for i in range(count)]
    assert {n.raft_host for n in config.nodes} == {"127.0.0.1"}
    # `make run` from the repo root keeps data under ./data (gitignored), one folder per node.
    assert config.data_dir == REPO / "data" / name
    assert config.node_data_dir("n2") == REPO / "data" / name / "n2"
    assert config.api_url("n1") == f"http://127.0.0.1:{api_base}"
    assert config.source == path
    assert config.secret is None and config.tls is None and not config.auth_enabled
    assert config.limits == LimitsConfig() and config.raft == RaftConfig()


def test_example_files_share_no_address() -> None:
    """Both examples can run side by side: no raft or API address of one is in the other."""
    three, five = (
        load_config(REPO / "cluster" / f"{n}.toml", env={}) for n in ("three-node", "five-node")
    )
    addresses = {a for n in three.nodes for a in (n.raft, n.api)}
    assert not addresses & {a for n in five.nodes for a in (n.raft, n.api)}


def test_defaults(tmp_path: Path) -> None:
    config = parse(toml(), tmp_path)
    assert config.limits.max_body_bytes == 16 * 1024 * 1024
    assert config.limits.max_payload_bytes == 1024 * 1024
    assert config.limits.max_batch_jobs == 1000
    assert config.limits.max_wait_ms == 60_000
    assert config.raft.fsync == "always"
    assert (config.raft.election_min_ms, config.raft.election_max_ms) == (400, 1400)
    assert config.raft.log_compaction_min_entries == 1_000_000
    assert config.raft.log_compaction_min_time_s == 300
    assert config.raft.submit_timeout_ms == 10_000
    assert config.raft.tick_interval_ms == 250
    assert config.source is None


def test_full_config(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("node.pem", "node.key", "ca.pem"):
        (certs / name).write_text("x")
    extra = f"""
[tls]
cert = "certs/node.pem"
key = "certs/node.key"
client_ca = "certs/ca.pem"

[[auth.tokens]]
name = "ingest"
sha256 = "{DIGEST.upper()}"
role = "producer"
queues = ["emails.*", "sms"]

[[auth.tokens]]
name = "ops"
token_env = "OPS_TOKEN"
role = "admin"

[limits]
max_body_bytes = 2_000_000
max_payload_bytes = 1_000
max_batch_jobs = 50
max_wait_ms = 0

[raft]
fsync = "off"
election_min_ms = 1000
election_max_ms = 3000
log_compaction_min_entries = 100
log_compaction_min_time_s = 60
submit_timeout_ms = 2000
tick_interval_ms = 100
"""
    nodes = (
        ("a", "10.0.0.1:7101", "10.0.0.1:7001"),
        ("b", "[fd00::2]:7101", "[fd00::2]:7001"),
        ("c.d_e-1", "node-c.example.com:7101", "node-c.example.com:7001"),
    )
    cluster = f'name = "prod"\ndata_dir = "/var/lib/raftq"\nsecret = "{SECRET}"'
    config = parse(toml(cluster=cluster, nodes=nodes, extra=extra), tmp_path, {"OPS_TOKEN": "op"})
    assert config.secret == SECRET
    assert config.data_dir == Path("/var/lib/raftq")
    assert config.tls is not None
    assert config.tls.cert == certs / "node.pem"
    assert config.tls.key == certs / "node.key"
    assert config.tls.client_ca == certs / "ca.pem"
    assert config.api_url("a") == "https://10.0.0.1:7001"
    ingest, ops = config.tokens
    assert (ingest.name, ingest.sha256, ingest.token_env) == ("ingest", DIGEST, None)
    assert ingest.role is Role.PRODUCER and ingest.queues == ("emails.*", "sms")
    assert ops.sha256 == hashlib.sha256(b"op").hexdigest() and ops.token_env == "OPS_TOKEN"
    assert ops.role == "admin" and ops.queues == ("*",)
    assert config.limits == LimitsConfig(
        max_body_bytes=2_000_000, max_payload_bytes=1_000, max_batch_jobs=50, max_wait_ms=0
    )
    assert config.raft == RaftConfig(
        fsync="off",
        election_min_ms=1000,
        election_max_ms=3000,
        log_compaction_min_entries=100,
        log_compaction_min_time_s=60,
        submit_timeout_ms=2000,
        tick_interval_ms=100,
    )
    b = config.node("b")
    assert (b.raft_host, b.raft_port, b.api_host, b.api_port) == ("fd00::2", 7101, "fd00::2", 7001)
    assert config.node("c.d_e-1").api_host == "node-c.example.com"


def test_config_is_frozen_and_hides_the_secret(tmp_path: Path) -> None:
    config = parse(toml(cluster=f'name = "t"\ndata_dir = "d"\nsecret = "{SECRET}"'), tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "other"  # type: ignore[misc]
    assert SECRET not in repr(config)


def test_unknown_node_names_the_known_ids(tmp_path: Path) -> None:
    config = parse(toml(), tmp_path)
    with pytest.raises(ConfigError, match=r"no node 'n9'.*n1, n2, n3"):
        config.node("n9")
    with pytest.raises(ConfigError):
        config.node_data_dir("n9")


# --- paths and environment -------------------------------------------------------------------


def test_relative_paths_come_from_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "c.pem").write_text("x")
    (conf_dir / "k.pem").write_text("x")
    path = conf_dir / "raftq.toml"
    path.write_text(toml(extra='[tls]\ncert = "c.pem"\nkey = "./k.pem"\n'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path, env={})
    assert config.data_dir == conf_dir / "data"
    assert config.node_data_dir("n1") == conf_dir / "data" / "n1"
    assert config.tls is not None and config.tls.cert == conf_dir / "c.pem"
    relative = load_config(Path("..") / "etc" / "raftq.toml", env={})
    assert relative.data_dir == conf_dir / "data"
    assert relative.source == path


def test_parent_relative_data_dir(tmp_path: Path) -> None:
    config = parse(toml(cluster='name = "t"\ndata_dir = "../data/x"'), tmp_path / "cluster")
    assert config.data_dir == tmp_path / "data" / "x"


def test_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = 'name = "t"\ndata_dir = "data"\nsecret = "from-the-file-xxxxxxx"'
    monkeypatch.chdir(tmp_path)
    env = {"RAFTQ_SECRET": "from-the-environment", "RAFTQ_DATA_DIR": "run/here"}
    config = parse_config(toml(cluster=cluster), tmp_path / "conf", env)
    assert config.secret == "from-the-environment"
    assert config.data_dir == tmp_path / "run" / "here"  # relative to the current directory
    # An empty variable counts as unset.
    config = parse_config(
        toml(cluster=cluster), tmp_path, {"RAFTQ_SECRET": "", "RAFTQ_DATA_DIR": ""}
    )
    assert config.secret == "from-the-file-xxxxxxx"
    assert config.data_dir == tmp_path / "data"


def test_env_supplies_required_values(tmp_path: Path) -> None:
    nodes = (("n1", "10.0.0.1:7101", "127.0.0.1:7001"),)
    env = {"RAFTQ_SECRET": SECRET, "RAFTQ_DATA_DIR": str(tmp_path / "d")}
    config = parse(toml(cluster='name = "t"', nodes=nodes), tmp_path, env)
    assert config.secret == SECRET
    assert config.data_dir == tmp_path / "d"


def test_os_environ_is_the_default_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTQ_DATA_DIR", str(tmp_path / "from-env"))
    assert parse_config(toml(), tmp_path).data_dir == tmp_path / "from-env"


def test_loopback_raft_needs_no_secret_and_any_secret_works(tmp_path: Path) -> None:
    assert parse(toml(), tmp_path).secret is None
    short = parse(toml(cluster='name = "t"\ndata_dir = "d"\nsecret = "test-secret"'), tmp_path)
    assert short.secret == "test-secret"


def test_loopback_variants(tmp_path: Path) -> None:
    nodes = (
        ("n1", "localhost:7101", "localhost:7001"),
        ("n2", "127.0.0.2:7102", "127.1.2.3:7002"),
        ("n3", "[::1]:7103", "[::1]:7003"),
    )
    config = parse(toml(nodes=nodes), tmp_path)
    assert not config.auth_enabled and config.secret is None


# --- one problem at a time --------------------------------------------------------------------

NON_LOOPBACK = (("n1", "10.0.0.1:7101", "127.0.0.1:7001"),)
PUBLIC_API = (("n1", "127.0.0.1:7101", "10.0.0.1:7001"),)
TOKEN = f'[[auth.tokens]]\nname = "t"\nsha256 = "{DIGEST}"\nrole = "admin"\n'
# Tokens in a cluster of several nodes need a secret (forwards are signed with it).
WITH_SECRET = f'name = "t"\ndata_dir = "data"\nsecret = "{SECRET}"'


def _token(body: str) -> str:
    return f"[[auth.tokens]]\n{body}\n"


CASES: dict[str, tuple[str, str]] = {
    # name: (toml text, a fragment of the single expected problem)
    "missing cluster": (
        '[[nodes]]\nid = "n1"\nraft = "127.0.0.1:1"\napi = "127.0.0.1:2"\n',
        "[cluster]: missing",
    ),
    "missing name": (toml(cluster='data_dir = "d"'), "cluster.name: missing (required)"),
    "missing data_dir": (toml(cluster='name = "t"'), "cluster.data_dir: missing (required)"),
    "empty name": (toml(cluster='name = ""\ndata_dir = "d"'), "cluster.name: must not be empty"),
    "bad cluster name": (toml(cluster='name = "a b"\ndata_dir = "d"'), "cluster.name: 'a b' must"),
    "unknown top-level key": ("colour = 1\n" + toml(), "top level: unknown key 'colour'"),
    "unknown cluster key": (
        toml(cluster='name = "t"\ndata_dir = "d"\ndatadir = "x"'),
        "cluster: unknown key 'datadir' (known keys: data_dir, name, secret)",
    ),
    "unknown node key": (
        toml(
            extra='[[nodes]]\nid = "n4"\nraft = "127.0.0.1:7104"\napi = "127.0.0.1:7004"\n'
            "port = 1\n"
        ),
        "nodes[3]: unknown key 'port'",
    ),
    "unknown limits key": (
        toml(extra="[limits]\nmax_jobs = 1\n"),
        "limits: unknown key 'max_jobs'",
    ),
    "unknown raft key": (
        toml(extra="[raft]\nelection_ms = 1\n"),
        "raft: unknown key 'election_ms'",
    ),
    "unknown auth key": (toml(extra="[auth]\nenabled = true\n"), "auth: unknown key 'enabled'"),
    "unknown token key": (
        toml(cluster=WITH_SECRET, extra=TOKEN + 'expires = "never"\n'),
        "auth.tokens[0]: unknown key",
    ),
    "name not a string": (
        toml(cluster='name = 5\ndata_dir = "d"'),
        "cluster.name: expected a string, got an integer",
    ),
    "int given as string": (
        toml(extra='[limits]\nmax_wait_ms = "5"\n'),
        "limits.max_wait_ms: expected an integer, got a string",
    ),
    "bool for int": (
        toml(extra="[raft]\ntick_interval_ms = true\n"),
        "expected an integer, got a boolean",
    ),
    "float for int": (
        toml(extra="[raft]\ntick_interval_ms = 2.5\n"),
        "expected an integer, got a float",
    ),
    "cluster not a table": (
        toml(cluster="").replace("[cluster]\n", "cluster = 1\n"),
        "cluster: expected a table",
    ),
    "nodes not an array": (
        '[cluster]\nname = "t"\ndata_dir = "d"\n[nodes]\nid = "n1"\n',
        "nodes: expected an array of tables",
    ),
    "node not a table": (
        'nodes = [1]\n[cluster]\nname = "t"\ndata_dir = "d"\n',
        "nodes[0]: expected a table",
    ),
    "no nodes": (toml(nodes=()), "nodes: at least one [[nodes]] entry is required"),
    "empty nodes": (
        'nodes = []\n[cluster]\nname = "t"\ndata_dir = "d"\n',
        "at least one [[nodes]]",
    ),
    "node missing api": (
        toml(extra='[[nodes]]\nid = "n4"\nraft = "127.0.0.1:7104"\n'),
        "nodes[3].api: missing",
    ),
    "duplicate id": (
        toml(nodes=(*LOOPBACK_NODES, ("n1", "127.0.0.1:7104", "127.0.0.1:7004"))),
        "nodes[3].id: duplicate node id 'n1' (also nodes[0].id)",
    ),
    "duplicate raft": (
        toml(nodes=(*LOOPBACK_NODES, ("n4", "127.0.0.1:7101", "127.0.0.1:7004"))),
        "nodes[3].raft: address '127.0.0.1:7101' is already used by nodes[0].raft",
    ),
    "duplicate api": (
        toml(nodes=(*LOOPBACK_NODES, ("n4", "127.0.0.1:7104", "127.0.0.1:7003"))),
        "nodes[3].api: address '127.0.0.1:7003' is already used by nodes[2].api",
    ),
    "api equals another raft": (
        toml(nodes=(*LOOPBACK_NODES, ("n4", "127.0.0.1:7104", "127.0.0.1:7102"))),
        "already used by nodes[1].raft",
    ),
    "same node raft and api": (
        toml(nodes=(("n1", "127.0.0.1:7101", "127.0.0.1:7101"),)),
        "nodes[0].api: address '127.0.0.1:7101' is already used by nodes[0].raft",
    ),
    "no port": (toml(nodes=(("n1", "127.0.0.1", "127.0.0.1:7001"),)), "expected 'host:port'"),
    "port not a number": (
        toml(nodes=(("n1", "127.0.0.1:x", "127.0.0.1:7001"),)),
        "port 'x' is not a number",
    ),
    "port zero": (
        toml(nodes=(("n1", "127.0.0.1:0", "127.0.0.1:7001"),)),
        "port 0 is out of range 1..65535",
    ),
    "port too big": (
        toml(nodes=(("n1", "127.0.0.1:7101", "127.0.0.1:65536"),)),
        "port 65536 is out of range",
    ),
    "bad host": (
        toml(nodes=(("n1", "bad_host!:7101", "127.0.0.1:7001"),)),
        "is not a valid host name",
    ),
    "bare ipv6": (
        toml(nodes=(("n1", "::1:7101", "127.0.0.1:7001"),)),
        "write an IPv6 address as '[addr]:port'",
    ),
    "bad bracketed ipv6": (
        toml(nodes=(("n1", "[zz]:7101", "127.0.0.1:7001"),)),
        "is not an IPv6 address",
    ),
    "wildcard address": (
        toml(nodes=(("n1", "127.0.0.1:7101", "0.0.0.0:7001"),)),
        "must be a concrete interface address",
    ),
    "node id charset": (
        toml(nodes=(("n 1", "127.0.0.1:7101", "127.0.0.1:7001"),)),
        "nodes[0].id: 'n 1' must be",
    ),
    "node id too long": (
        toml(nodes=(("n" * 65, "127.0.0.1:7101", "127.0.0.1:7001"),)),
        "must be 1 to 64",
    ),
    "node id dot-dot": (
        toml(nodes=(("..", "127.0.0.1:7101", "127.0.0.1:7001"),)),
        "not '.' or '..'",
    ),
    "secret required": (
        toml(nodes=NON_LOOPBACK),
        "cluster.secret: required because raft addresses are not loopback: n1 (10.0.0.1:7101)",
    ),
    "secret too short": (
        toml(cluster='name = "t"\ndata_dir = "d"\nsecret = "short"', nodes=NON_LOOPBACK),
        "cluster.secret: too short",
    ),
    "empty secret": (
        toml(cluster='name = "t"\ndata_dir = "d"\nsecret = ""'),
        "cluster.secret: must not be empty",
    ),
    "tokens required": (
        toml(nodes=PUBLIC_API),
        "auth.tokens: at least one [[auth.tokens]] is required because API addresses are not "
        "loopback: n1 (10.0.0.1:7001)",
    ),
    "tokens without secret": (
        toml(extra=TOKEN),
        "cluster.secret: required with [[auth.tokens]] in a cluster of 3 nodes: nodes sign the "
        "requests they forward with it (set it in the file or in RAFTQ_SECRET; make one with:",
    ),
    "rate limit without secret": (
        toml(extra="[limits]\nrate_per_s = 5\n"),
        "cluster.secret: required with limits.rate_per_s in a cluster of 3 nodes",
    ),
    "token with sha256 and env": (
        toml(extra=_token(f'name = "t"\nsha256 = "{DIGEST}"\ntoken_env = "X"\nrole = "admin"')),
        "auth.tokens[0].sha256: set exactly one of sha256 and token_env",
    ),
    "token with neither": (toml(extra=_token('name = "t"\nrole = "admin"')), "set exactly one of"),
    "token bad sha256": (
        toml(extra=_token('name = "t"\nsha256 = "abc"\nrole = "admin"')),
        "must be 64 hex characters",
    ),
    "token env unset": (
        toml(extra=_token('name = "t"\ntoken_env = "NOPE"\nrole = "admin"')),
        "environment variable NOPE is not set",
    ),
    "token env bad name": (
        toml(extra=_token('name = "t"\ntoken_env = "1-x"\nrole = "admin"')),
        "is not an environment variable name",
    ),
    "token missing name": (
        toml(extra=_token(f'sha256 = "{DIGEST}"\nrole = "admin"')),
        "auth.tokens[0].name: missing",
    ),
    "token missing role": (
        toml(extra=_token(f'name = "t"\nsha256 = "{DIGEST}"')),
        "auth.tokens[0].role: missing",
    ),
    "token unknown role": (
        toml(extra=_token(f'name = "t"\nsha256 = "{DIGEST}"\nrole = "root"')),
        "unknown role 'root' (one of: admin, producer, worker, reader)",
    ),
    "token empty queue list": (
        toml(extra=_token(f'name = "t"\nsha256 = "{DIGEST}"\nrole = "worker"\nqueues = []')),
        "auth.tokens[0].queues: list at least one queue pattern",
    ),
    "token empty queue pattern": (
        toml(extra=_token(f'name = "t"\nsha256 = "{DIGEST}"\nrole = "worker"\nqueues = ["a", ""]')),
        "auth.tokens[0].queues[1]: must not be empty",
    ),
    "token queue not a string": (
        toml(extra=_token(f'name = "t"\nsha256 = "{DIGEST}"\nrole = "worker"\nqueues = [1]')),
        "auth.tokens[0].queues[0]: expected a string",
    ),
    "duplicate token name": (
        toml(
            cluster=WITH_SECRET,
            extra=TOKEN + _token(f'name = "t"\nsha256 = "{"0" * 64}"\nrole = "reader"'),
        ),
        "auth.tokens[1].name: duplicate token name 't'",
    ),
    "duplicate token value": (
        toml(
            cluster=WITH_SECRET,
            extra=TOKEN + _token(f'name = "u"\nsha256 = "{DIGEST}"\nrole = "reader"'),
        ),
        "auth.tokens[1].sha256: the same token as auth.tokens[0]",
    ),
    "limit out of range": (
        toml(extra="[limits]\nmax_batch_jobs = 0\n"),
        "limits.max_batch_jobs: 0 is out of range 1..10_000",
    ),
    "payload above hard cap": (
        toml(extra="[limits]\nmax_payload_bytes = 17_000_000\n"),
        "max_payload_bytes: 17000000 is out of range",
    ),
    "payload above body": (
        toml(extra="[limits]\nmax_body_bytes = 2048\nmax_payload_bytes = 4096\n"),
        "limits.max_payload_bytes: 4096 is larger than max_body_bytes (2048)",
    ),
    "bad fsync": (
        toml(extra='[raft]\nfsync = "sometimes"\n'),
        "raft.fsync: 'sometimes' must be 'always' or 'off'",
    ),
    "election max not above min": (
        toml(extra="[raft]\nelection_min_ms = 500\nelection_max_ms = 500\n"),
        "raft.election_max_ms: 500 must be greater than election_min_ms (500)",
    ),
    "negative timeout": (
        toml(extra="[raft]\nsubmit_timeout_ms = -1\n"),
        "raft.submit_timeout_ms: -1 is out of range",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_is_reported(case: str, tmp_path: Path) -> None:
    text, fragment = CASES[case]
    problems = problems_of(text, tmp_path)
    assert len(problems) == 1, problems
    assert fragment in problems[0]


def test_every_problem_at_once(tmp_path: Path) -> None:
    text = """
typo = 1
[cluster]
name = "a b"
colour = "red"

[[nodes]]
id = "n1"
raft = "10.0.0.1:7101"
api = "10.0.0.1:99999"

[[nodes]]
id = "n1"
raft = "10.0.0.2:7101"
api = "10.0.0.2:7001"

[tls]
cert = "nope.pem"

[[auth.tokens]]
name = "a"
role = "god"

[limits]
max_body_bytes = true

[raft]
fsync = "sometimes"
"""
    problems = problems_of(text, tmp_path)
    expected = [
        "cluster.name: 'a b' must",
        "cluster.data_dir: missing",
        "cluster: unknown key 'colour'",
        "nodes[0].api: bad address '10.0.0.1:99999'",
        "nodes[1].id: duplicate node id 'n1'",
        "tls.cert: file not found",
        "tls.key: missing",
        "auth.tokens[0].role: unknown role 'god'",
        "auth.tokens[0].sha256: set exactly one",
        "limits.max_body_bytes: expected an integer, got a boolean",
        "raft.fsync: 'sometimes'",
        "top level: unknown key 'typo'",
        "cluster.secret: required because raft addresses are not loopback: "
        "n1 (10.0.0.1:7101), n1 (10.0.0.2:7101)",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    assert len(problems) == len(expected), problems
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path)
    message = str(err.value)
    assert message.startswith("invalid configuration:\n  - ")
    assert message.count("\n  - ") == len(expected)


def test_tls_problems(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "a-dir").mkdir()
    problems = problems_of(toml(extra='[tls]\ncert = "cert.pem"\nkey = "nope.key"\n'), tmp_path)
    assert problems == [f"tls.key: file not found: {tmp_path / 'nope.key'}"]
    problems = problems_of(toml(extra='[tls]\nkey = "cert.pem"\nclient_ca = "a-dir"\n'), tmp_path)
    assert problems == [
        "tls.cert: missing (required)",
        f"tls.client_ca: file not found: {tmp_path / 'a-dir'}",
    ]


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[cluster\nname = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML: .*line 1"):
        load_config(path, env={})


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.toml"):
        load_config(tmp_path / "missing.toml", env={})
    (tmp_path / "latin1.toml").write_bytes(b'[cluster]\nname = "\xe9"\n')
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_config(tmp_path / "latin1.toml", env={})


# --- address helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:7001", ("127.0.0.1", 7001)),
        ("localhost:1", ("localhost", 1)),
        ("node-1.example.com:65535", ("node-1.example.com", 65535)),
        ("[::1]:7001", ("::1", 7001)),
        ("[fe80::1]:80", ("fe80::1", 80)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


@pytest.mark.parametrize(
    "address", ["", "7001", ":7001", "host:", "host:-1", "host:70000", "[::1]7001", "[::1", "a b:1"]
)
def test_split_host_port_rejects(address: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        split_host_port(address)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("192.168.1.2", False),
        ("example.com", False),
        ("::2", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_security_settings_of_issue_9(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "c.pem").write_text("x")
    text = toml(
        cluster=WITH_SECRET,
        extra=(
            '[tls]\ncert = "c.pem"\nkey = "c.pem"\nca = "ca.pem"\n\n'
            "[limits]\nrate_per_s = 50\nrate_burst = 100\n\n"
            f'[auth]\nmetrics = "open"\n\n[[auth.tokens]]\nname = "t"\nsha256 = "{DIGEST}"\n'
            'role = "reader"\n'
        ),
    )
    c = parse(text, tmp_path)
    assert c.tls is not None and c.tls.ca == tmp_path / "ca.pem"
    assert (c.limits.rate_per_s, c.limits.rate_burst) == (50, 100)
    assert c.metrics_open is True
    assert parse(toml(), tmp_path).metrics_open is False  # protected unless opened
    assert parse(toml(), tmp_path).limits.rate_per_s == 0  # no rate limit by default
    problems = problems_of(
        toml(extra='[auth]\nmetrics = "public"\n\n[limits]\nrate_per_s = -1\n'), tmp_path
    )
    assert any("auth.metrics: 'public' must be 'open' or 'reader'" in p for p in problems)
    assert any("limits.rate_per_s" in p for p in problems), problems
