"""A PNG chart of one `raftq bench --peers --json FILE` run: raftq and its peers side by side.

.venv/bin/python bench/plot_bench.py FILE.json docs/img/benchmarks.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> int:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    r = json.loads(src.read_text())
    systems = {"raftq": r}
    systems.update({k: v for k, v in r.get("peers", {}).items() if "error" not in v})
    names = list(systems)
    panels = [
        ("enqueue_per_s", "enqueue/s (each confirmed)"),
        ("process_per_s", "claim+ack/s (4 workers)"),
        ("mixed_per_s", "mixed jobs/s"),
        ("paced_p99_ms", "paced 500/s: e2e p99 ms (lower is better)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    colors = ["#d62728" if n == "raftq" else "#7f7f7f" for n in names]
    for ax, (key, title) in zip(axes, panels, strict=True):
        values = [float(systems[n].get(key) or 0) for n in names]
        bars = ax.bar(names, values, color=colors)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        for b, v in zip(bars, values, strict=True):
            ax.annotate(
                f"{v:,.0f}" if v >= 10 else f"{v:.1f}",
                (b.get_x() + b.get_width() / 2, v),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    o = r["options"]
    fig.suptitle(
        f"raftq bench, one run {r['date']} (commit {r['commit']}): {o['nodes']} nodes, fsync "
        f"{o['fsync']}, {o['n']} jobs x {o['payload_bytes']} B, claim batch {o['claim_batch']}",
        fontsize=9,
    )
    fig.tight_layout()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
