"""``jepsen-style/check HISTORY_DIR``: re-judge a stored run; exit 0 only when valid."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raftq_jepsen.checker import Bounds, HistoryError, check_run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jepsen-style/check",
        description="Check a jepsen-style run directory (history.jsonl, nodes.json, "
        "nemesis.jsonl, run.json); writes results.json, report.md and timeline.png there.",
    )
    parser.add_argument("run_dir", type=Path, help="the run directory")
    parser.add_argument(
        "--wgl-time-limit",
        type=float,
        default=10.0,
        help="seconds of linearizability search per queue group (then 'unknown')",
    )
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        print(f"check: {args.run_dir}: not a directory", file=sys.stderr)
        return 2
    try:
        results = check_run(args.run_dir, Bounds(time_limit_s=args.wgl_time_limit))
    except HistoryError as e:
        print(f"check: {e}", file=sys.stderr)
        return 2
    bad = {
        name: {k: v for k, v in c.get("violations", {}).items() if v}
        for name, c in results["checks"].items()
        if not c["valid"]
    }
    lin = results["checks"]["linearizable"]["counts"]
    verdict = "VALID" if results["valid"] else "INVALID"
    print(
        f"{verdict}: {results['ops']} ops checked in {results['check_seconds']} s; "
        f"linearizability {lin['ok']} ok / {lin['illegal']} illegal / {lin['unknown']} unknown"
        + (f"; violations {bad}" if bad else "")
        + f"; report {args.run_dir / 'report.md'}"
    )
    return 0 if results["valid"] else 1
