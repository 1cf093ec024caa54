"""``raftq bench``: usage errors, and one small real run (3 real nodes, fsync on) whose JSON
holds the figures the docs and the issue name. Speed is never asserted, only completeness."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import raftq
from raftq.bench.commits import commit_summary, parse_commits
from raftq.bench.peers.install import ensure_servers
from raftq.bench.peers.run import PEERS, peer_summary, prepare_peers, run_peers
from raftq.bench.peers.servers import RedisNode
from raftq.bench.phases import Workload
from raftq.bench.runner import ratios
from raftq.cli.main import main


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--n", "0"], "--n"),
        (["--n", "x"], "--n"),
        (["--payload-bytes", "8"], "--payload-bytes"),
        (["--fsync", "sometimes"], "--fsync"),
        (["--jobs-queued", "-1"], "--jobs-queued"),
        (["--peers", ","], "--peers"),
        (["--peers", "nats_r3,nosuch"], "--peers"),
        (["--json", "/nonexistent/dir/out.json"], "--json"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # argparse adds its usage line


@pytest.mark.integration
def test_the_peer_driver_imports_with_the_standard_library_alone() -> None:
    """The drivers run in the peers' client venv, which holds no raftq dependency: importing
    them must need nothing but the standard library and raftq's own source."""
    root = str(Path(raftq.__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.append({root!r}); import raftq.bench.peers.drive as d; "
        "print(sorted(d.PEERS))"
    )
    # -I: no user site, no PYTHONPATH; -S: no site-packages at all (aiohttp, msgpack...).
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(sorted(PEERS))


@pytest.mark.integration
def test_a_peer_server_is_started_on_loopback_and_stopped_by_pid() -> None:
    ensure_servers(["redis-server"])  # installed if missing (Debian package)
    node = RedisNode()
    try:
        node.start()
        conn = node.connection()
        assert conn["host"] == "127.0.0.1"
        with socket.create_connection((conn["host"], conn["port"]), 2) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(64) == b"+PONG\r\n"
        pids = [p.pid for p in node._procs]
        assert pids
    finally:
        node.stop()
    for pid in pids:  # gone and reaped, not merely signalled (stop() waited for them)
        assert not Path(f"/proc/{pid}").exists()
    assert not node.root.exists()


@pytest.mark.integration
def test_a_small_real_peer_run_completes_every_phase() -> None:
    """arq on a real Redis, through the client venv and the driver, as ``--peers`` runs it:
    every job confirmed, processed once, none left, in every phase."""
    python = prepare_peers(["arq"])
    w = Workload(n=200, n_paced=50, rate=200)
    rec = run_peers(["arq"], python, w, lock=False)["arq"]
    assert "error" not in rec, rec
    assert rec["config"] == "arq" and rec["n"] == 200
    assert rec["enqueue"]["errors"] == 0 and rec["enqueue"]["rate"] > 0
    assert rec["process"]["remaining"] == 0 and rec["process"]["dups"] == 0
    for phase, n in (("mixed", 200), ("paced", 50)):
        assert rec[phase]["n"] == n
        assert rec[phase]["errors"] == 0 and rec[phase]["dups"] == 0, rec[phase]
        assert rec[phase]["remaining"] == 0, rec[phase]
        assert 0 <= rec[phase]["e2e_p50_ms"] <= rec[phase]["e2e_p99_ms"], rec[phase]
    summary = peer_summary(rec)
    assert set(summary) == {
        "enqueue_per_s",
        "process_per_s",
        "mixed_per_s",
        "paced_p50_ms",
        "paced_p99_ms",
    }


def test_ratios_and_peer_errors() -> None:
    result = {
        "enqueue_per_s": 2000.0,
        "process_per_s": 500.0,
        "mixed_per_s": 100.0,
        "paced_p50_ms": 4.0,
        "paced_p99_ms": None,
        "peers": {
            "a": {
                "enqueue_per_s": 1000.0,
                "process_per_s": 1000.0,
                "mixed_per_s": 0,
                "paced_p50_ms": 2.0,
                "paced_p99_ms": 3.0,
            },
            "b": peer_summary({"error": "no result"}),
        },
    }
    r = ratios(result)
    assert r["a"] == {
        "enqueue_per_s": 2.0,
        "process_per_s": 0.5,
        "mixed_per_s": None,
        "paced_p50_ms": 2.0,
        "paced_p99_ms": None,
    }
    assert set(r["b"].values()) == {None}


def _commit_metrics(counts: tuple[int, int, int], total_s: float, entries: int) -> str:
    """A node's /metrics text with the three group-commit histograms (buckets 1 ms, 5 ms)."""
    c1, c5, n = counts
    lines = []
    for name in ("raftq_raft_commit_duration_seconds", "raftq_raft_group_commit_wait_seconds"):
        lines += [
            f"# TYPE {name} histogram",
            f'{name}_bucket{{le="0.001"}} {c1}',
            f'{name}_bucket{{le="0.005"}} {c5}',
            f'{name}_bucket{{le="+Inf"}} {n}',
            f"{name}_sum {total_s}",
            f"{name}_count {n}",
        ]
    batch = "raftq_raft_group_commit_batch_commands"
    lines += [
        f"# TYPE {batch} histogram",
        f'{batch}_bucket{{le="+Inf"}} {entries}',
        f"{batch}_sum {entries * 4}",
        f"{batch}_count {entries}",
    ]
    return "\n".join(lines) + "\n"


def test_commit_summary_is_the_difference_of_two_readings() -> None:
    before = parse_commits(_commit_metrics((10, 10, 10), 0.005, 10))
    # 100 more entries: 50 under 1 ms, 40 between 1 and 5 ms, 10 above; 0.2 s in all.
    after = parse_commits(_commit_metrics((60, 100, 110), 0.205, 110))
    s = commit_summary(before, after)
    assert s["entries"] == 100 and s["commands_per_entry"] == 4.0
    assert s["commit_mean_ms"] == s["wait_mean_ms"] == 2.0
    assert s["commit_p50_ms"] == 1.0  # rank 50 of 100: the top of the first bucket
    # Rank 99 is past the last finite bound: histogram_quantile answers that bound.
    assert s["commit_p99_ms"] == 5.0
    assert commit_summary({}, {})["entries"] is None


@pytest.mark.integration
def test_a_small_real_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "raftq", "bench", "--n", "300", "--n-paced", "100"]
    argv += ["--rate", "200", "--no-lock", "--json", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "enqueue" in proc.stderr  # progress lines
    assert "raftq" in proc.stdout and "elections during the run" in proc.stdout
    result = json.loads(out.read_text())
    for key in ("enqueue_per_s", "process_per_s", "mixed_per_s"):
        assert isinstance(result[key], float) and result[key] > 0
    for key in ("paced_p50_ms", "paced_p99_ms"):
        assert isinstance(result[key], float) and result[key] >= 0
    assert isinstance(result["elections"], int) and result["elections"] >= 0
    assert result["options"]["fsync"] == "always" and result["options"]["nodes"] == 3
    phases = result["raftq"]
    # Every job confirmed, processed exactly once, none left behind.
    assert phases["enqueue"]["errors"] == 0
    assert phases["process"]["remaining"] == 0 and phases["process"]["dups"] == 0
    for phase in ("mixed", "paced"):
        assert phases[phase]["errors"] == 0
        assert phases[phase]["remaining"] == 0
        assert phases[phase]["dups"] == 0
    # Each phase's writes went through the leader's group commit: entries, their commands and
    # commit times come from the nodes' histograms.
    for phase in ("process", "mixed", "paced"):
        raft = phases[phase]["raft"]
        assert raft["entries"] > 0 and raft["commands_per_entry"] >= 1, raft
        assert 0 < raft["commit_p50_ms"] <= raft["commit_p99_ms"], raft
        assert raft["commit_mean_ms"] > 0 and raft["wait_mean_ms"] >= 0, raft
    assert "where the writes' time went" in proc.stdout
