"""Checker runtime on a synthetic history (issue 6): the real state machine's history, made
by ``tests/chaos/sim.py`` (independent queues, concurrent processes, uncertain outcomes, a
drain), judged by ``check_run`` (results.json, report.md, timeline.png).

    flock /tmp/bench.lock .venv/bin/python bench/bench_checker.py --ops 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "jepsen-style")]

from raftq_jepsen.checker import Bounds, check_run  # noqa: E402

from tests.chaos.hist import History  # noqa: E402
from tests.chaos.sim import simulate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=20_000, help="client ops before the drain")
    parser.add_argument("--procs", type=int, default=10)
    parser.add_argument("--queues", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wgl-time-limit", type=float, default=10.0, help="s per queue")
    parser.add_argument("--wgl-total", type=float, default=60.0, help="s over all queues")
    args = parser.parse_args()
    t0 = time.monotonic()
    events = simulate(args.seed, args.ops, args.procs, args.queues)
    made_s = time.monotonic() - t0
    with tempfile.TemporaryDirectory() as d:
        run_dir = History(events=events, now_ns=events[-1]["time_ns"]).write(Path(d) / "run")
        t1 = time.monotonic()
        results = check_run(
            run_dir, Bounds(time_limit_s=args.wgl_time_limit, total_time_s=args.wgl_total)
        )
        total_s = time.monotonic() - t1
    lin = results["checks"]["linearizable"]
    comps = sorted(c["ms"] for c in lin["components"])
    print(f"history: {results['ops']} ops ({len(events)} events), made in {made_s:.1f} s")
    judged = results["check_seconds"]
    print(f"check_run: {total_s:.2f} s in all (judging {judged} s), valid={results['valid']}")
    print(
        f"linearizability: {lin['counts']['components']} components, ok {lin['counts']['ok']}, "
        f"illegal {lin['counts']['illegal']}, unknown {lin['counts']['unknown']}, "
        f"{lin['counts']['ms'] / 1000:.2f} s; "
        f"per component median {comps[len(comps) // 2]:.0f} ms, "
        f"max {comps[-1]:.0f} ms; ops per component ~{lin['counts']['ops'] // max(1, len(comps))}"
    )


if __name__ == "__main__":
    main()
