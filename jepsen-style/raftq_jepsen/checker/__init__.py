"""Checkers for jepsen-style histories: ``check_run(run_dir)`` judges one run directory.

It reads ``history.jsonl``, ``nodes.json``, ``nemesis.jsonl`` and ``run.json``, runs every
checker, and writes ``results.json`` (top-level ``"valid"``), ``report.md`` and
``timeline.png`` next to them. ``jepsen-style/README.md`` ("Checkers and results") defines
each check and the shape of ``results.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from raftq_jepsen.checker.convergence import (
    DRAIN_LIMIT_S,
    check_availability,
    check_convergence,
    check_drain,
)
from raftq_jepsen.checker.forged import check_forged, split_forged
from raftq_jepsen.checker.history import HistoryError, Op, load_history
from raftq_jepsen.checker.index import build_index
from raftq_jepsen.checker.jobs import check_jobs
from raftq_jepsen.checker.limits import check_limits
from raftq_jepsen.checker.linear import Bounds, check_linearizable
from raftq_jepsen.checker.membership import check_membership
from raftq_jepsen.checker.priority import check_priority
from raftq_jepsen.checker.report import write_report
from raftq_jepsen.checker.schedules import check_schedules
from raftq_jepsen.checker.total_queue import check_total_queue
from raftq_jepsen.checker.workflows import check_workflows

__all__ = ["Bounds", "HistoryError", "check_run", "judge"]

# Checks whose "valid" decides the run; availability is reported only.
JUDGED = (
    "total_queue",
    "jobs",
    "priority",
    "convergence",
    "drain",
    "linearizable",
    "forged_forward",
    "membership",
    "schedules",
    "limits",
    "workflows",
)


def _read_json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HistoryError(f"{path.name}: not JSON ({e.msg})") from e


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise HistoryError(f"{path.name} line {n}: not JSON ({e.msg})") from e
    return rows


def judge(
    run_dir: Path, bounds: Bounds | None = None, drain_limit_s: int = DRAIN_LIMIT_S
) -> dict[str, Any]:
    """Run every checker on ``run_dir`` and return the results (writes nothing)."""
    return _judge(run_dir, bounds, drain_limit_s)[0]


def _judge(
    run_dir: Path, bounds: Bounds | None, drain_limit_s: int
) -> tuple[dict[str, Any], list[Op], list[dict[str, Any]]]:
    t0 = time.monotonic()
    history = run_dir / "history.jsonl"
    if not history.exists():
        raise HistoryError(f"{history}: no such file")
    ops, forged = split_forged(load_history(history))
    nodes = _read_json(run_dir / "nodes.json", [])
    run = _read_json(run_dir / "run.json", {})
    windows = _read_jsonl(run_dir / "nemesis.jsonl")
    schedules = _read_json(run_dir / "schedules.json", None)
    try:
        ix = build_index(ops)
        limited = frozenset(run.get("limits") or {})
        checks: dict[str, Any] = {
            "total_queue": check_total_queue(ix),
            "jobs": check_jobs(ix),
            "priority": check_priority(ix, limited),
            "convergence": check_convergence(nodes, run),
            "drain": check_drain(run, drain_limit_s),
            "linearizable": check_linearizable(ix, bounds, limited),
            "forged_forward": check_forged(forged, windows),
            "membership": check_membership(nodes, run, windows),
            "schedules": check_schedules(schedules, ops),
            "limits": check_limits(ix, run),
            "availability": check_availability(ops, windows),
            "workflows": check_workflows(ops),
        }
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, HistoryError):
            raise
        raise HistoryError(f"malformed value in the history: {e!r}") from e
    results = {
        "valid": all(checks[name]["valid"] for name in JUDGED),
        "run_dir": str(run_dir),
        "ops": len(ops),
        "events": sum(1 if op.done_ns is None else 2 for op in ops),
        "check_seconds": round(time.monotonic() - t0, 3),
        "run": run,
        "checks": checks,
    }
    return results, ops, windows


def check_run(run_dir: Path, bounds: Bounds | None = None) -> dict[str, Any]:
    """Judge ``run_dir``; write results.json, report.md and timeline.png; return the results."""
    run_dir = Path(run_dir)
    results, ops, windows = _judge(run_dir, bounds, DRAIN_LIMIT_S)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_report(run_dir, results, ops, windows)
    return results
