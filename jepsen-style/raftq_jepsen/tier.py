"""``make chaos``: the full tier, one run per nemesis, and its summary in docs/reliability.md.

Each nemesis runs alone for ``--time-limit`` seconds (default 60) on ``--nodes`` nodes (default
3; ``--nodes 5`` is the five-node release gate), each run in its own process
(``jepsen-style/run``) and directory under ``--out``; the tier passes when every run exits 0 and
the runs together recorded at least ``--min-ops`` operations.

The three-node tier rewrites the top of docs/reliability.md (up to ``KEEP``); a tier of another
size rewrites only its own section, between ``section_marks(nodes)``, after ``KEEP``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from raftq_jepsen.nemesis import NEMESES

__all__ = ["main", "render", "section_marks", "write_page"]

HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parent
VERDICTS = {0: "valid", 1: "INVALID", 2: "usage error", 3: "not judged"}


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def render(
    rows: list[dict[str, Any]],
    *,
    date: str,
    commit: str,
    min_ops: int,
    time_limit_s: float,
    nodes: int = 3,
) -> str:
    """The markdown of docs/reliability.md (of its ``nodes``-node section when not 3)."""
    total = sum(r.get("operations", 0) for r in rows)
    ok = all(r["exit"] == 0 for r in rows) and total >= min_ops
    size = "" if nodes == 3 else f" --nodes {nodes}"
    if time_limit_s >= 60:
        kind = (
            "full tier (`make chaos`)" if nodes == 3 else f"full tier (`jepsen-style/chaos{size}`)"
        )
    else:
        kind = f"SHORTENED tier (`jepsen-style/chaos{size} --time-limit {time_limit_s:g}`)"
    title = "# Reliability: the jepsen-style tier" if nodes == 3 else f"## The {nodes}-node tier"
    lines = [
        title,
        "",
        f"Last {kind}: **{date}**, commit `{commit}`: "
        f"**{'PASSED' if ok else 'FAILED'}**, {total} operations (target >= {min_ops}).",
        "",
        f"Each row is one `jepsen-style/run --nemesis NAME --time-limit {time_limit_s:g} "
        f"--nodes {nodes}` "
        "(method and formats: `jepsen-style/README.md`). *ok share* is the share of "
        "completed client operations that succeeded inside that nemesis's fault windows "
        "(reported, not judged); *drain* is from the start of the drain to its end.",
        "",
        "| nemesis | verdict | operations | ok share in faults | ok share outside | "
        "drain s | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        av = r.get("availability", {})
        inside = av.get(r["nemesis"], {}).get("ok_share")
        outside = av.get("(no fault)", {}).get("ok_share")
        drain_s = (r.get("drain_end_ns", 0) - r.get("drain_start_ns", 0)) / 1e9
        lines.append(
            f"| {r['nemesis']} | {VERDICTS.get(r['exit'], r['exit'])} | "
            f"{r.get('operations', '-')} | {inside} | {outside} | {drain_s:.1f} | "
            f"{r.get('wall_time_s', '-')} |"
        )
    if rows:
        where = rows[0]["dir"].rsplit("/", 1)[0]
        lines += ["", f"Run directories (histories, reports): `{where}/` on the machine that ran "
                  "the tier.", ""]  # fmt: skip
    return "\n".join(lines)


KEEP = "<!-- what follows is kept as it is when jepsen-style/chaos rewrites this page -->"


def keep_notes(text: str, report: Path) -> str:
    """``text`` followed by what the existing ``report`` holds from its ``KEEP`` line on (runs
    recorded by hand, such as a combined run of several nemeses)."""
    try:
        old = report.read_text()
    except OSError:
        return text
    at = old.find(KEEP)
    return text if at < 0 else text.rstrip("\n") + "\n\n" + old[at:]


def section_marks(nodes: int) -> tuple[str, str]:
    """The lines around the section of a tier of ``nodes`` nodes (not 3) in the page."""
    return f"<!-- tier nodes={nodes} -->", f"<!-- /tier nodes={nodes} -->"


def write_page(text: str, report: Path, nodes: int) -> None:
    """Write a tier's report into the page: the three-node tier replaces the top (what follows
    ``KEEP`` stays); another size replaces its own marked section, or appends it after
    ``KEEP`` (which is written first when the page has none)."""
    if nodes == 3:
        report.write_text(keep_notes(text, report))
        return
    try:
        old = report.read_text()
    except OSError:
        old = ""
    begin, end = section_marks(nodes)
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    a, b = old.find(begin), old.find(end)
    if a >= 0 and b > a:
        new = old[:a] + block + old[b + len(end) :].lstrip("\n")
    else:
        if KEEP not in old:
            old = old.rstrip("\n") + ("\n\n" if old else "") + KEEP + "\n"
        new = old.rstrip("\n") + "\n\n" + block
    report.write_text(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jepsen-style/chaos", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("/tmp/raftq-chaos"))
    p.add_argument("--time-limit", type=float, default=60.0)
    p.add_argument("--nodes", type=int, default=3, help="cluster size (5: the release gate)")
    p.add_argument("--nemesis", default=",".join(NEMESES), help="default: every nemesis")
    p.add_argument("--min-ops", type=int, default=15_000)
    p.add_argument("--report", type=Path, default=REPO / "docs" / "reliability.md")
    p.add_argument("--from", dest="from_dir", type=Path, default=None, metavar="DIR",
                   help="only write the report, from the runs already in DIR")  # fmt: skip
    args = p.parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = args.out / stamp
    rows: list[dict[str, Any]] = []
    for name in [n.strip() for n in args.nemesis.split(",") if n.strip()]:
        if args.from_dir is not None:
            run_dir = args.from_dir / name
            if not run_dir.is_dir():
                continue
            valid = _load(run_dir / "results.json").get("valid")
            rc = {True: 0, False: 1}.get(valid, 3) if isinstance(valid, bool) else 3
            rows.append({"nemesis": name, "exit": rc, "dir": str(run_dir),
                         **_load(run_dir / "run.json")})  # fmt: skip
            continue
        run_dir = base / name
        cmd = [str(HERE / "run"), "--nemesis", name, "--time-limit", str(args.time_limit),
               "--nodes", str(args.nodes), "--out", str(run_dir)]  # fmt: skip
        print(f"chaos: {name} ...", flush=True)
        rc = subprocess.run(cmd, check=False).returncode
        row = {"nemesis": name, "exit": rc, "dir": str(run_dir), **_load(run_dir / "run.json")}
        rows.append(row)
        print(f"chaos: {name}: {VERDICTS.get(rc, rc)}, {row.get('operations')} operations")
    commit = rows[0].get("commit", "unknown") if rows else "unknown"
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = render(
        rows,
        date=date,
        commit=commit,
        min_ops=args.min_ops,
        time_limit_s=args.time_limit,
        nodes=args.nodes,
    )
    write_page(text, args.report, args.nodes)
    print(text)
    total = sum(r.get("operations", 0) for r in rows)
    return 0 if rows and all(r["exit"] == 0 for r in rows) and total >= args.min_ops else 1


if __name__ == "__main__":
    sys.exit(main())
