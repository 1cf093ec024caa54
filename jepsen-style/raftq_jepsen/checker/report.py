"""``report.md`` (what a person reads after a run) and ``timeline.png``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from raftq_jepsen.checker.history import Op

__all__ = ["write_report", "write_timeline"]

_TITLES = {
    "total_queue": "total-queue (lost / unexpected / duplicated)",
    "jobs": "per job (ack once, fencing, payload)",
    "priority": "strict priority and FIFO",
    "convergence": "replica convergence",
    "drain": "eventual delivery (drain)",
    "linearizable": "linearizability (WGL per queue)",
    "forged_forward": "forged node-to-node requests refused (401)",
    "membership": "members agree at the end; membership changes happened",
}


def _fmt(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def write_report(run_dir: Path, results: dict[str, Any], ops: list[Op], windows: Any = ()) -> None:
    checks = results["checks"]
    run = results.get("run", {})
    lines = [
        f"# jepsen-style run: {'VALID' if results['valid'] else 'INVALID'}",
        "",
        f"- directory: `{results['run_dir']}`",
        f"- nemeses: {_fmt(run.get('nemeses', '?'))}; nodes: {_fmt(run.get('nodes', '?'))}; "
        f"time limit: {run.get('time_limit', '?')} s; seed: {run.get('seed', '?')}; "
        f"commit: {run.get('commit', '?')}",
        f"- operations: {results['ops']}; checked in {results['check_seconds']} s",
        "",
        "| check | valid | violations |",
        "|---|---|---|",
    ]
    for name, title in _TITLES.items():
        c = checks[name]
        bad = {k: v for k, v in c.get("violations", {}).items() if v}
        lines.append(
            f"| {title} | {'yes' if c['valid'] else '**NO**'} | {_fmt(bad) if bad else '-'} |"
        )
    lines += ["", "![timeline](timeline.png)", ""]
    for name, title in _TITLES.items():
        c = checks[name]
        lines += [f"## {title}", "", f"counts: `{_fmt(c.get('counts', {}))}`", ""]
        for kind, examples in c.get("examples", {}).items():
            lines.append(f"- **{kind}** ({c['violations'].get(kind, len(examples))}):")
            lines += [f"  - `{_fmt(e)}`" for e in examples]
        if name == "linearizable":
            lin = c["counts"]
            lines.append(
                f"components: {lin['components']} ({lin['ok']} ok, {lin['illegal']} illegal, "
                f"{lin['unknown']} unknown: unknown is *not checked*, never passed)"
            )
            for comp in c["components"]:
                if comp["result"] != "ok":
                    lines.append(f"- `{_fmt(comp)}`")
        lines.append("")
    avail = checks["availability"]
    lines += [
        "## availability per nemesis (reported, not judged)",
        "",
        "| nemesis | ops invoked in its windows | ok | ok fraction |",
        "|---|---|---|---|",
    ]
    for name, a in avail["per_nemesis"].items():
        lines.append(f"| {name} | {a['ops']} | {a['ok']} | {a['ok_fraction']} |")
    (run_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_timeline(run_dir / "timeline.png", ops, list(windows), run)


def write_timeline(
    path: Path, ops: list[Op], windows: list[dict[str, Any]], run: dict[str, Any]
) -> None:
    """Throughput (ok ops/s) and latency (median and max of completed ops per second) over
    time, with each fault window shaded and the heal and drain marked."""
    # Imported here: matplotlib is a dev-only dependency and slow to import, and only the
    # timeline needs it (the checkers run without it).
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # headless: no display on CI
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t0 = min((op.start_ns for op in ops), default=run.get("start_ns", 0) or 0)
    per_s: dict[int, list[float]] = defaultdict(list)
    fails: dict[int, int] = defaultdict(int)
    for op in ops:
        if op.done_ns is None:
            continue
        sec = (op.done_ns - t0) // 1_000_000_000
        if op.ok:
            per_s[sec].append((op.done_ns - op.start_ns) / 1e6)
        else:
            fails[sec] += 1
    secs = sorted(per_s.keys() | fails.keys())
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(11, 6))
    ax1.plot(secs, [len(per_s.get(s, ())) for s in secs], label="ok ops/s", color="tab:blue")
    ax1.plot(secs, [fails.get(s, 0) for s in secs], label="fail+info ops/s", color="tab:red")
    ax1.set_ylabel("ops / s")
    ax1.legend(loc="upper right", fontsize=8)
    lat = [s for s in secs if per_s.get(s)]
    ax2.plot(lat, [sorted(per_s[s])[len(per_s[s]) // 2] for s in lat], label="median")
    ax2.plot(lat, [max(per_s[s]) for s in lat], label="max", alpha=0.6)
    ax2.set_yscale("log")
    ax2.set_ylabel("latency of ok ops (ms)")
    ax2.set_xlabel("seconds since the first operation")
    ax2.legend(loc="upper right", fontsize=8)
    colors = plt.get_cmap("tab10")
    names = sorted({str(w.get("nemesis")) for w in windows})
    for w in windows:
        lo = (int(w["start_ns"]) - t0) / 1e9
        hi = (int(w.get("end_ns") or w["start_ns"]) - t0) / 1e9
        color = colors(names.index(str(w.get("nemesis"))) % 10)
        for ax in (ax1, ax2):
            ax.axvspan(lo, hi, color=color, alpha=0.15, lw=0)
    for key, style in (("heal_ns", "g--"), ("drain_start_ns", "k:"), ("drain_end_ns", "k--")):
        if isinstance(run.get(key), int):
            x = (run[key] - t0) / 1e9
            for ax in (ax1, ax2):
                ax.axvline(x, color=style[0], linestyle=style[1:], lw=1)
    ax1.set_title("shaded: fault windows (" + ", ".join(names) + "); green: heal; black: drain")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
