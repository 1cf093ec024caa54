"""raftq.cli in-process: usage and config errors, exit codes, client commands against a fake
client, `serve` with a fake runtime, and the `cluster up` launcher with fake node processes."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from raftq.bench.cluster import BenchError
from raftq.cli import client as cli_client
from raftq.cli import cluster as launcher
from raftq.cli.common import CliError, UsageError
from raftq.cli.main import main
from raftq.config import ClusterConfig, parse_config
from raftq.errors import NoLeader, OutcomeUnknown, RaftqError, Rejected, TransportError

REPO = Path(__file__).resolve().parent.parent
THREE = str(REPO / "cluster" / "three-node.toml")


# `main` installs a stderr handler on the root logger: taken away after each test.
pytestmark = pytest.mark.usefixtures("restore_root_logging")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("raftq: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- usage -----------------------------------------------------------------------------------


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("serve", "cluster", "enqueue", "status", "queues", "job", "dead"):
        assert command in out
    code, out, _ = run(capsys, "enqueue", "--help")
    assert code == 0 and "--priority" in out and "--delay-ms" in out
    code, out, _ = run(capsys, "cluster", "up", "--help")
    assert code == 0 and "--config" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("raftq ")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("serve", "--node", "n1"), "the following arguments are required: --config"),
        (("cluster",), "required: COMMAND (see 'raftq cluster --help')"),
        (("enqueue", "q"), "required: PAYLOAD (see 'raftq enqueue --help')"),
        (("enqueue", "q", "1", "--priority", "10"), "argument --priority: 10 is not in 0..9"),
        (("enqueue", "q", "1", "--delay-ms", "-5"), "argument --delay-ms: -5 is negative"),
        (("enqueue", "q", "1", "--delay-ms", "1", "--run-at-ms", "2"), "not allowed with"),
        (("enqueue", "q", "{nope"), "PAYLOAD is not JSON"),
        (("job", "abc"), "argument ID: 'abc' is not an integer"),
        (("dead", "q", "--limit", "0"), "argument --limit: 0 must be at least 1"),
        (("status", "--nodes", " , "), "--nodes lists no node"),
        (("serve", "--config", THREE, "--node", "n1", "--log-level", "loud"), "--log-level"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert fragment in one_error_line(err)


# --- config errors and serve -----------------------------------------------------------------


def test_config_errors_list_every_problem_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[cluster]\nname = "x"\nextra = 1\n')
    for argv in (
        ("serve", "--config", str(path), "--node", "n1"),
        ("cluster", "up", "--config", str(path)),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        lines = err.splitlines()
        assert lines[0] == f"raftq: error: invalid configuration in {path}:"
        assert lines[1:] == [
            "  - cluster.data_dir: missing (required)",
            "  - cluster: unknown key 'extra' (known keys: data_dir, name, secret)",
            "  - nodes: at least one [[nodes]] entry is required",
        ]
        assert "Traceback" not in err


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "serve", "--config", str(tmp_path / "no.toml"), "--node", "n1")
    assert code == 2
    assert one_error_line(err) == (
        f"raftq: error: cannot read config file {tmp_path / 'no.toml'}: No such file or directory"
    )


def test_serve_unknown_node(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "serve", "--config", THREE, "--node", "n9")
    assert code == 2
    assert "--node n9: no such node" in one_error_line(err)
    assert "known: n1, n2, n3" in err


def _fake_runtime(
    monkeypatch: pytest.MonkeyPatch, run_node: Callable[[ClusterConfig, str], int]
) -> None:
    module = types.ModuleType("raftq.node.process")
    module.run_node = run_node  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "raftq.node.process", module)


def test_serve_runs_the_node_with_logging_set_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []

    def run_node(config: ClusterConfig, node_id: str) -> int:
        calls.append((config.name, node_id))
        logging.getLogger("raftq.test").info("hello from %s", node_id)
        logging.getLogger("raftq.test").debug("not shown at info")
        return 7

    _fake_runtime(monkeypatch, run_node)
    code, _, err = run(capsys, "serve", "--config", THREE, "--node", "n2", "--log-format", "json")
    assert code == 7
    assert calls == [("three-node", "n2")]
    (line,) = err.splitlines()
    record = json.loads(line)
    assert record["msg"] == "hello from n2" and record["node"] == "n2"
    assert record["level"] == "info" and record["logger"] == "raftq.test"


@pytest.mark.parametrize(
    ("exc", "code", "fragment"),
    [
        (OSError(98, "Address already in use"), 1, "raftq: error: Address already in use"),
        (RuntimeError("boom"), 1, "raftq: error: unexpected RuntimeError: boom"),
        (KeyboardInterrupt(), 130, "raftq: error: interrupted"),
    ],
)
def test_serve_failures_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException,
    code: int,
    fragment: str,
) -> None:
    def run_node(config: ClusterConfig, node_id: str) -> int:
        raise exc

    _fake_runtime(monkeypatch, run_node)
    got, _, err = run(capsys, "serve", "--config", THREE, "--node", "n1", "--log-level", "INFO")
    assert got == code
    assert fragment in one_error_line(err)


# --- client commands against a fake client ---------------------------------------------------


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail: BaseException | None = None
        self.down: set[str] = set()
        self.digests: dict[str, str] = {}  # node address -> digest it reports (default one)

    def last(self) -> Any:
        return self.calls[-1]

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))
        if self.fail is not None:
            raise self.fail

    def enqueue(self, queue: str, payload: Any, **kwargs: Any) -> int:
        self._call("enqueue", queue, payload, **kwargs)
        return 42

    def cluster_of(self, node: str) -> dict[str, Any]:
        self.calls.append(("cluster_of", (node,), {}))
        if node in self.down:
            raise TransportError(f"cannot connect to {node}")
        i = node[-1]
        return {
            "self": {
                "id": f"n{i}",
                "role": "leader" if i == "1" else "follower",
                "term": 3,
                "commit_index": 10,
                "applied_index": 9 + (i == "1"),
                "digest": self.digests.get(node, "abcdef0123456789"),
            },
            "leader": "n1",
            "nodes": [
                {"id": f"n{i}", "api": f"127.0.0.1:700{i}", "raft": f"127.0.0.1:710{i}"}
                for i in (1, 2, 3)
            ],
        }

    def queues(self) -> list[dict[str, Any]]:
        self._call("queues")
        return [
            {
                "queue": "emails",
                "paused": False,
                "depth": {"queued": 5, "delayed": 1, "leased": 2, "dead": 0},
            },
            {"queue": "sms", "paused": True, "depth": {"queued": 0}},
        ]

    def get_job(self, job_id: int, *, linearizable: bool = False) -> dict[str, Any]:
        self._call("get_job", job_id, linearizable=linearizable)
        return {
            "id": job_id,
            "queue": "emails",
            "state": "queued",
            "priority": 5,
            "attempts": 0,
            "max_attempts": 5,
            "payload": {"to": "a@example.com"},
            "result": None,
            "error": None,
            "run_at_ms": 0,
            "created_ms": 1_700_000_000_000,
            "extra": b"\x00\x01",
            "progress": {"done": 3, "of": 10},
            "checkpoint": None,
            "cancel_requested": True,
            "batch": 4,
            "on_dependency_failure": "run",
            "dependencies": [
                {"id": 10, "state": "succeeded", "result": 1},
                {"id": 11, "state": "pending", "result": None},
            ],
        }

    def batch(self, batch_id: int) -> dict[str, Any]:
        self._call("batch", batch_id)
        return {
            "batch": batch_id,
            "ids": [1, 2, 3],
            "counts": {"queued": 1, "succeeded": 2, "dead": 0},
            "total": 3,
            "done": False,
            "fired": [],
        }

    def dead(self, queue: str, *, limit: int = 100) -> list[dict[str, Any]]:
        self._call("dead", queue, limit=limit)
        return [{"id": 7, "attempts": 5, "error": "x" * 200}]

    def requeue_dead(self, queue: str, ids: list[int] | None = None) -> int:
        self._call("requeue_dead", queue, ids)
        return len(ids) if ids else 3


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()

    @contextmanager
    def open_client(args: Any, *, retry: bool = True) -> Iterator[FakeClient]:
        client.calls.append(("open", (args.nodes, args.token, args.timeout_ms), {"retry": retry}))
        yield client

    monkeypatch.setattr(cli_client, "open_client", open_client)
    return client


def test_enqueue(capsys: pytest.CaptureFixture[str], fake: FakeClient) -> None:
    code, out, err = run(
        capsys,
        *("enqueue", "emails", '{"to": "a@example.com"}', "--priority", "9", "--delay-ms", "500"),
        *("--key", "k1", "--max-attempts", "3", "--lease-ms", "1000", "--nodes", "h:1"),
        *("--token", "secret-token", "--timeout-ms", "2000"),
    )
    assert (code, out, err) == (0, "42\n", "")
    assert fake.calls == [
        ("open", ("h:1", "secret-token", 2000), {"retry": True}),
        (
            "enqueue",
            ("emails", {"to": "a@example.com"}),
            {
                "priority": 9,
                "delay_ms": 500,
                "run_at_ms": None,
                "key": "k1",
                "max_attempts": 3,
                "lease_ms": 1000,
            },
        ),
    ]


def test_enqueue_reads_stdin(
    capsys: pytest.CaptureFixture[str], fake: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('[1, "two"]\n'))
    code, out, _ = run(capsys, "enqueue", "q", "-")
    assert (code, out) == (0, "42\n")
    assert fake.calls[1][1] == ("q", [1, "two"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("not json"))
    code, _, err = run(capsys, "enqueue", "q", "-")
    assert code == 2 and "stdin is not JSON" in one_error_line(err)


@pytest.mark.parametrize(
    ("exc", "code", "fragment"),
    [
        (TransportError("no node answered"), 3, "cannot reach the cluster: no node answered"),
        (NoLeader("no leader within 10000 ms"), 3, "cannot reach the cluster: no leader"),
        (Rejected("paused", "queue q is paused", 409), 1, "refused (paused): queue q is paused"),
        (OutcomeUnknown("deadline passed"), 1, "outcome unknown, the operation may have been"),
        (ValueError("odd"), 1, "unexpected ValueError: odd"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_client_errors_map_to_exit_codes(
    capsys: pytest.CaptureFixture[str],
    fake: FakeClient,
    exc: BaseException,
    code: int,
    fragment: str,
) -> None:
    fake.fail = exc
    got, out, err = run(capsys, "enqueue", "q", "1")
    assert got == code and out == ""
    assert fragment in one_error_line(err)


def test_status(capsys: pytest.CaptureFixture[str], fake: FakeClient) -> None:
    fake.down = {"127.0.0.1:7003"}
    code, out, err = run(capsys, "status")
    assert (code, err) == (0, "")
    header, n1, n2, n3 = out.splitlines()
    assert header.split() == [
        *("NODE", "API", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "DIGEST", "REACHABLE"),
    ]
    assert n1.split() == [
        *("n1", "127.0.0.1:7001", "leader", "3", "10", "10", "0", "abcdef012345", "yes"),
        *("*", "leader"),
    ]
    assert n2.split()[:9] == [
        *("n2", "127.0.0.1:7002", "follower", "3", "10", "9", "1", "abcdef012345", "yes"),
    ]
    assert n3.split() == ["n3", "127.0.0.1:7003", "-", "-", "-", "-", "-", "-", "NO"]

    # status: one attempt per node, 2 s each by default
    assert fake.calls[0] == ("open", (None, None, 2000), {"retry": False})
    code, out, _ = run(capsys, "status", "--json")
    nodes = json.loads(out)["nodes"]
    assert [(n["id"], n["reachable"], n["role"], n["lag"]) for n in nodes] == [
        ("n1", True, "leader", 0),
        ("n2", True, "follower", 1),
        ("n3", False, None, None),
    ]
    assert nodes[0]["cluster"]["self"]["id"] == "n1" and nodes[2]["cluster"] is None


def test_status_flags_different_digests_at_the_same_applied_index(
    capsys: pytest.CaptureFixture[str], fake: FakeClient
) -> None:
    """Issue 20: a replica whose digest differs from the others' at the same applied index
    diverged; the table alone showed it as twelve hex digits among others."""
    fake.digests = {"127.0.0.1:7003": "99999999999999"}  # n2 and n3 are both at index 9
    code, out, err = run(capsys, "status")
    assert code == 1
    assert len(out.splitlines()) == 4  # the table as always
    assert one_error_line(err) == (
        "raftq: error: DIGESTS DIFFER at applied index 9 (n3: 999999999999; n2: abcdef012345): "
        "these replicas diverged; stop the node(s) whose digest differs from the majority's, "
        'move their data dir aside and start them again empty (docs/operations.md, "Digests '
        'differ")'
    )
    code, out, err = run(capsys, "status", "--json")
    assert code == 1 and "DIGESTS DIFFER" in err
    assert json.loads(out)["diverged"] == [
        {"applied_index": 9, "digests": {"abcdef0123456789": ["n2"], "99999999999999": ["n3"]}}
    ]
    # Different digests at different applied indexes are not a difference.
    fake.digests = {"127.0.0.1:7001": "99999999999999"}  # n1 alone at index 10
    code, _, err = run(capsys, "status")
    assert (code, err) == (0, "")


def test_status_discovers_members_from_one_node(
    capsys: pytest.CaptureFixture[str], fake: FakeClient
) -> None:
    code, out, _ = run(capsys, "status", "--nodes", "http://127.0.0.1:7002/", "--json")
    assert code == 0
    asked = [c[1][0] for c in fake.calls if c[0] == "cluster_of"]
    assert asked == ["127.0.0.1:7002", "127.0.0.1:7001", "127.0.0.1:7003"]
    assert [n["id"] for n in json.loads(out)["nodes"]] == ["n1", "n2", "n3"]


def test_status_with_no_node_answering_exits_3(
    capsys: pytest.CaptureFixture[str], fake: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.fail = TransportError("down")
    fake.down = {"a:1", "b:2"}
    monkeypatch.setenv("RAFTQ_NODES", "a:1,b:2")
    code, out, err = run(capsys, "status")
    assert code == 3
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["NO", "NO"]
    assert one_error_line(err) == "raftq: error: no node answered (tried a:1, b:2)"


def test_queues(capsys: pytest.CaptureFixture[str], fake: FakeClient) -> None:
    code, out, _ = run(capsys, "queues")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["QUEUE", "PAUSED", "QUEUED", "DELAYED", "LEASED", "DEAD"],
        ["emails", "no", "5", "1", "2", "0"],
        ["sms", "yes", "0", "0", "0", "0"],
    ]
    code, out, _ = run(capsys, "queues", "--json")
    assert json.loads(out)[0]["queue"] == "emails"


def test_job(capsys: pytest.CaptureFixture[str], fake: FakeClient) -> None:
    code, out, _ = run(capsys, "job", "12", "--linearizable")
    assert code == 0
    assert fake.last() == ("get_job", (12,), {"linearizable": True})
    assert "state:" in out and "queued" in out
    assert '{"to": "a@example.com"}' in out
    assert "1700000000000 (2023-11-14T22:13:20.000Z)" in out
    rows = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in out.splitlines()}
    assert rows["dependencies"] == "10 succeeded, 11 pending"
    assert rows["on_dependency_failure"] == "run" and rows["batch"] == "4"
    assert rows["progress"] == '{"done": 3, "of": 10}' and rows["cancel_requested"] == "yes"
    code, out, _ = run(capsys, "job", "12", "--json")
    job = json.loads(out)
    assert job["id"] == 12 and job["extra"] == {"base64": "AAE="}


def test_batch(capsys: pytest.CaptureFixture[str], fake: FakeClient) -> None:
    code, out, _ = run(capsys, "batch", "4")
    assert code == 0 and fake.last() == ("batch", (4,), {})
    assert [line.split() for line in out.splitlines()] == [
        ["batch:", "4"],
        ["jobs:", "3", "(running)"],
        ["queued:", "1"],
        ["succeeded:", "2"],
        ["fired:", "-"],
    ]
    code, out, _ = run(capsys, "batch", "4", "--json")
    assert json.loads(out)["counts"]["succeeded"] == 2


def test_dead_list_and_requeue(capsys: pytest.CaptureFixture[str], fake: FakeClient) -> None:
    code, out, _ = run(capsys, "dead", "emails", "--limit", "5")
    assert code == 0
    assert fake.last() == ("dead", ("emails",), {"limit": 5})
    header, row = out.splitlines()
    assert header.split() == ["ID", "ATTEMPTS", "ERROR"]
    assert row.startswith("7") and row.endswith("...")
    code, out, _ = run(capsys, "dead", "emails", "--requeue")
    assert (code, out) == (0, "requeued 3 job(s) of emails\n")
    assert fake.last() == ("requeue_dead", ("emails", None), {})
    code, out, _ = run(capsys, "dead", "emails", "--requeue", "7", "8", "--json")
    assert json.loads(out) == {"requeued": 2}
    assert fake.last() == ("requeue_dead", ("emails", [7, 8]), {})


def test_node_list() -> None:
    assert cli_client.node_list("a:1, b:2,", {}) == ["a:1", "b:2"]
    assert cli_client.node_list(None, {"RAFTQ_NODES": "c:3"}) == ["c:3"]
    assert cli_client.node_list(None, {}) == [
        "127.0.0.1:7001",
        "127.0.0.1:7002",
        "127.0.0.1:7003",
    ]


# --- the launcher ----------------------------------------------------------------------------

FAKE_NODE = r"""
import signal, sys, time
node, mode = sys.argv[1], sys.argv[2]
def bye(signum, frame):
    print(f"bye {node}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else bye)
# stderr first: both share one pipe, so a test that stops the nodes once every "up" line is
# seen has read this one too.
print(f"warning on stderr {node}", file=sys.stderr, flush=True)
print(f"up {node}", flush=True)
if mode == "die":
    time.sleep(0.3)
    sys.exit(3)
if mode == "refuse":
    sys.exit(2)
while True:
    time.sleep(0.02)
"""


def _fake_nodes_catching_sigterm() -> int:
    """How many fake nodes (child processes of this one running ``FAKE_NODE``) have a SIGTERM
    handler installed (/proc). Only those: a test run earlier in this process may have left
    other children (a module's cluster) that catch SIGTERM too."""
    count = 0
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if FAKE_NODE.encode() not in cmdline:
                continue
            caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
            if int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1:
                count += 1
    return count


def fake_nodes(**modes: str) -> launcher.CommandBuilder:
    def build(node_id: str) -> list[str]:
        return [sys.executable, "-c", FAKE_NODE, node_id, modes.get(node_id, "ok")]

    return build


class Watch(io.StringIO):
    """Output that sets ``ready`` once every node has printed its "up" line."""

    def __init__(self, ids: tuple[str, ...]) -> None:
        super().__init__()
        self.ids = ids
        self.ready = threading.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        if all(f"up {i}" in self.getvalue() for i in self.ids):
            self.ready.set()
        return n


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    text = "\n".join(
        ["[cluster]", 'name = "t"', 'data_dir = "data"']
        + [
            f'[[nodes]]\nid = "{i}"\nraft = "127.0.0.1:{7100 + n}"\napi = "127.0.0.1:{7000 + n}"'
            for n, i in enumerate(("n1", "n2", "node3"), 1)
        ]
    )
    return parse_config(text, tmp_path, {}, source=tmp_path / "c.toml")


def _stop_when_ready(out: Watch, stop: Callable[[], None]) -> threading.Thread:
    def waiter() -> None:
        if out.ready.wait(20):
            stop()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    return thread


@pytest.mark.integration
def test_launcher_runs_every_node_and_stops_them_on_request(config: ClusterConfig) -> None:
    out = Watch(config.node_ids)
    stop = threading.Event()
    _stop_when_ready(out, stop.set)
    code = launcher.run_cluster(config, fake_nodes(), out=out, stop=stop)
    text = out.getvalue()
    assert code == 0, text
    for node in config.nodes:
        assert f"{node.id} api http://{node.api} raft {node.raft} pid " in text
    # Node output is prefixed with its id, padded to the longest label ("cluster").
    assert "n1      | up n1\n" in text and "node3   | up node3\n" in text
    assert "n2      | warning on stderr n2\n" in text
    assert all(f"| bye {i}" in text for i in config.node_ids)  # each got SIGTERM
    assert text.endswith("cluster | stopped\n")


@pytest.mark.integration
def test_launcher_keeps_the_others_running_when_a_node_dies(config: ClusterConfig) -> None:
    """A dead node is reported; the others serve on until the launcher is stopped, which then
    exits non-zero (a node died)."""
    out = Watch(("n1", "node3"))
    stop = threading.Event()

    def stop_when_reported() -> None:
        deadline = time.monotonic() + 20
        while "exited unexpectedly" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the others would have been stopped by now if a death stopped them
        stop.set()

    threading.Thread(target=stop_when_reported, daemon=True).start()
    code = launcher.run_cluster(config, fake_nodes(n2="die"), out=out, stop=stop)
    text = out.getvalue()
    assert code == 1, text
    assert (
        "cluster | node n2 exited unexpectedly (exit status 3); the others keep running; "
        "--restart-dead restarts dead nodes" in text
    )
    died_at = text.index("node n2 exited unexpectedly")
    stopping_at = text.index("stopping every node")
    assert died_at < stopping_at  # nothing was stopped because n2 died
    assert "| bye n1" in text[stopping_at:] and "| bye node3" in text[stopping_at:]
    assert text.endswith("cluster | stopped, with errors (see above)\n")


@pytest.mark.integration
def test_launcher_restarts_a_dead_node_and_leaves_a_flapping_one_down(
    config: ClusterConfig,
) -> None:
    """With --restart-dead a node that died is started again; one that dies again and again
    right after starting is left down; when every node is down for good the launcher ends."""
    out = io.StringIO()
    code = launcher.run_cluster(
        config, fake_nodes(n1="die", n2="die", node3="die"), out=out, restart_dead_s=0.1
    )
    text = out.getvalue()
    assert code == 1, text
    for node in config.node_ids:
        assert text.count(f"{node} api http://") == 3, text  # started, then restarted twice
        assert (
            f"node {node} exited unexpectedly (exit status 3); the others keep running; "
            "restarting it in 0.1 s" in text
        )
        assert (
            f"node {node} exited unexpectedly (exit status 3); the others keep running; it died 3 "
            "times within 30 s of starting: left down" in text
        )
    assert "cluster | every node is down" in text


@pytest.mark.integration
def test_launcher_restarts_a_dead_node_when_r_is_typed(config: ClusterConfig) -> None:
    read_end, write_end = os.pipe()
    out = Watch(("n1", "node3"))
    stop = threading.Event()

    def type_r_then_stop() -> None:
        deadline = time.monotonic() + 20
        while "type r and Enter" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.write(write_end, b"r\n")
        while out.getvalue().count("n2 api http://") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=type_r_then_stop, daemon=True).start()
    typed = os.fdopen(read_end)
    try:
        code = launcher.run_cluster(
            config, fake_nodes(n2="die"), out=out, stop=stop, commands=typed
        )
    finally:
        os.close(write_end)  # first: the launcher's reader thread gets the end of its input
        typed.close()
    text = out.getvalue()
    assert code == 1, text
    assert (
        "node n2 exited unexpectedly (exit status 3); the others keep running; "
        "type r and Enter to restart it" in text
    )
    assert text.count("n2 api http://") == 2, text


@pytest.mark.integration
def test_launcher_leaves_down_a_node_that_refuses_its_config(config: ClusterConfig) -> None:
    out = io.StringIO()
    code = launcher.run_cluster(
        config, fake_nodes(n1="refuse", n2="refuse", node3="refuse"), out=out, restart_dead_s=0
    )
    text = out.getvalue()
    assert code == 1, text
    assert (
        "node n1 exited unexpectedly (exit status 2); the others keep running; it refused to "
        "start: fix the cause, then start the launcher again" in text
    )
    assert text.count("n1 api http://") == 1
    assert "cluster | every node is down" in text


@pytest.mark.integration
def test_launcher_kills_a_node_that_ignores_sigterm(config: ClusterConfig) -> None:
    out = Watch(config.node_ids)
    stop = threading.Event()
    _stop_when_ready(out, stop.set)
    code = launcher.run_cluster(
        config, fake_nodes(n1="stubborn"), out=out, stop=stop, stop_timeout_s=0.5
    )
    text = out.getvalue()
    assert code == 1, text
    assert "node n1 did not stop in time: killing it" in text
    assert "| bye n2" in text


@pytest.mark.integration
def test_launcher_cannot_start_a_node(config: ClusterConfig, tmp_path: Path) -> None:
    def build(node_id: str) -> list[str]:
        if node_id == "n2":
            return [str(tmp_path / "no-such-program")]
        return list(fake_nodes()(node_id))

    out = io.StringIO()
    code = launcher.run_cluster(config, build, out=out)
    text = out.getvalue()
    assert code == 1
    assert "cluster | cannot start node n2:" in text
    assert "node3" not in text.split("cannot start")[1]  # nothing started after the failure


@pytest.mark.integration
def test_cluster_up_stops_cleanly_on_sigterm(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `main`: the launcher gets SIGTERM (here: sent to this process) and stops."""
    assert threading.current_thread() is threading.main_thread()
    seen: list[tuple[str, str | None, str | None]] = []

    def serve_command(
        path: Path, *, log_level: str | None = None, log_format: str | None = None
    ) -> launcher.CommandBuilder:
        seen.append((str(path), log_level, log_format))
        return fake_nodes()

    monkeypatch.setattr(launcher, "serve_command", serve_command)
    previous = signal.getsignal(signal.SIGTERM)

    def terminate_once_handled() -> None:
        deadline = time.monotonic() + 20
        while signal.getsignal(signal.SIGTERM) == previous and time.monotonic() < deadline:
            time.sleep(0.01)
        # Let the nodes start: each child has its own SIGTERM handler installed.
        while _fake_nodes_catching_sigterm() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_once_handled, daemon=True)
    killer.start()
    code, out, _ = run(capsys, "cluster", "up", "--config", THREE, "--log-level", "DEBUG")
    killer.join()
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers restored
    assert code == 0, out
    assert seen == [(THREE, "debug", "text")]
    assert "n1 api http://127.0.0.1:7001" in out
    assert "stopping every node" in out
    assert out.endswith("cluster | stopped\n")


def test_serve_command() -> None:
    build = launcher.serve_command(Path("/x/c.toml"), log_level="info", log_format="json")
    assert build("n1") == [
        *(sys.executable, "-m", "raftq", "serve", "--config", "/x/c.toml", "--node", "n1"),
        *("--log-level", "info", "--log-format", "json"),
    ]
    assert launcher.serve_command(Path("c.toml"))("n2")[-2:] == ["--node", "n2"]


def test_token_new_prints_a_token_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert hashlib.sha256(first["token"].encode()).hexdigest() == first["sha256"]
    assert len(first["token"]) >= 40
    assert main(["token", "new", "--name", "ingest", "--role", "worker", "--queue", "e.*"]) == 0
    out = capsys.readouterr().out
    token = out.split("token:")[1].split()[0]
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert f'sha256 = "{digest}"' in out and token != first["token"]
    assert 'role = "worker"' in out and 'queues = ["e.*"]' in out
    entry = out.split("# for the config file (the token itself is not in it):\n")[1]
    assert token not in entry  # only the hash goes in the config file


def test_cli_errors_belong_to_the_error_tree_and_keep_their_exit_codes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``CliError``, ``UsageError`` and ``BenchError`` are ``RaftqError``s (one tree), and the
    command line still reports each with its own exit status and message."""
    assert issubclass(CliError, RaftqError) and issubclass(UsageError, CliError)
    assert issubclass(BenchError, RaftqError)
    code, _, err = run(capsys, "data", "verify", str(tmp_path / "missing"))
    assert (code, err) == (1, f"raftq: error: {tmp_path / 'missing'}: not a directory\n")
    code, _, err = run(capsys, "enqueue", "q", "{not json", "--nodes", "127.0.0.1:1")
    assert code == 2 and err.startswith("raftq: error: ") and err.count("\n") == 1, err
