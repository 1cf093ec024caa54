"""The peer systems of ``raftq bench --peers``: ``../shared/bench-peers/run_all.sh``.

The peers' directory is read-only, and ``run_all.sh`` writes ``results/`` next to itself, so
it runs from a copy in a temporary directory. It installs what is missing (Debian packages,
a client venv under /tmp), starts and stops its own servers, and takes ``/tmp/bench.lock``
around each measured repetition: call it while NOT holding that lock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PEERS", "find_peers_dir", "run_peers"]

DEFAULT_PEERS = ("nats_r3", "rmq_quorum", "arq")


def find_peers_dir(start: Path | None = None) -> Path | None:
    """``../shared/bench-peers`` from the working directory or one level up (a worktree)."""
    base = (start or Path.cwd()).resolve()
    for parent in (base, *base.parents[:2]):
        candidate = parent.parent / "shared" / "bench-peers"
        if (candidate / "run_all.sh").is_file():
            return candidate
    return None


def run_peers(peers_dir: Path, names: list[str], n: int) -> dict[str, dict[str, Any]]:
    """One repetition of each configuration; returns ``{name: raw result}`` (the peers'
    ``raw.jsonl`` records, or ``{"error": ...}`` for a configuration that produced none)."""
    with tempfile.TemporaryDirectory(prefix="raftq-bench-peers-") as tmp:
        work = Path(tmp) / "bench-peers"
        shutil.copytree(peers_dir, work)
        for p in [work, *work.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
        env = dict(os.environ, REPS="1")
        argv = ["bash", "run_all.sh", "--n", str(n), "--only", ",".join(names)]
        proc = subprocess.run(
            argv, cwd=work, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False
        )
        raw = work / "results" / "raw.jsonl"
        found: dict[str, dict[str, Any]] = {}
        if raw.is_file():
            for line in raw.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    found[str(rec.get("config"))] = rec
        for name in names:
            if name not in found:
                found[name] = {"error": f"no result (run_all.sh exit code {proc.returncode})"}
        return found


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
