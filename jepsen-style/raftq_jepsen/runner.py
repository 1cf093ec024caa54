"""``jepsen-style/run``: one test = hosts up, workload + nemesis, heal, restart, drain, check.

Exit codes: 0 the checker judged the history valid; 1 it found a violation; 2 usage error;
3 the run could not be judged (harness failure, or no checker on this branch).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from raftq_jepsen.client import new_session
from raftq_jepsen.history import History
from raftq_jepsen.hosts import Hosts, NodeProc, ensure_tools
from raftq_jepsen.membership import members_of
from raftq_jepsen.nemesis import (
    DESCRIPTIONS,
    SNAPSHOT_RACE_RAFT,
    SPARE_HOSTS,
    SPARE_NEMESES,
    NemesisContext,
    expand,
    heal_all,
    leader_members,
    run_schedule,
)
from raftq_jepsen.schedule_probe import ScheduleProbe
from raftq_jepsen.workload import NodeRef, Workload, WorkloadParams, drain, set_limits

__all__ = ["EXIT_INVALID", "EXIT_UNKNOWN", "EXIT_USAGE", "RunOptions", "availability", "main"]

logger = logging.getLogger("raftq_jepsen")

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_UNKNOWN = 3
REPO = Path(__file__).resolve().parents[2]
TEST_FAULTS = (
    "ack-before-commit",
    "follower-claims",
    "skip-token-check",
    "nack-drops",
    "release-counts-attempt",
    "ignore-limits",
    "journal-ignores-write-errors",
    "accept-forged-forward",
    "clock-unbounded",
    "install-stale-snapshot",
    "wiped-node-votes",
    "schedule-fires-twice",
    "deps-release-early",
)
SHIM_NEMESES = ("disk-error", "clock-jump")  # compile an LD_PRELOAD library at run time
# Raft settings of the test cluster: compaction often, so snapshots are installed under faults.
RAFT = {
    "log_compaction_min_entries": 2_000,
    "log_compaction_min_time_s": 10,
    "submit_timeout_ms": 4_000,
    "tick_interval_ms": 250,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    nemeses: list[str]
    time_limit_s: float
    nodes: int
    out: Path
    seed: int
    quiet_s: float
    drain_limit_s: float
    test_fault: str | None
    params: WorkloadParams


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jepsen-style/run",
        description="Run one jepsen-style test of raftq: a real cluster in network namespaces, "
        "concurrent clients, faults, heal, restart, drain, then the checker. Exit 0 only when "
        "the history is valid.",
    )
    p.add_argument("--list", action="store_true", help="print the nemesis names and exit")
    p.add_argument("--nemesis", default="none", help="NAME[,NAME...] or 'all' (default: none)")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="S",
                   help="seconds of workload under faults (default 60)")  # fmt: skip
    p.add_argument("--nodes", type=int, default=3, metavar="N", help="cluster size (default 3)")
    p.add_argument("--out", type=Path, metavar="DIR", help="run directory (created)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--quiet", type=float, default=None, metavar="S",
                   help="seconds before the first fault (default: min(10, limit/6))")  # fmt: skip
    p.add_argument("--drain-limit", type=float, default=60.0, metavar="S",
                   help="give up draining after S seconds (default 60)")  # fmt: skip
    p.add_argument("--producers", type=int, default=4)
    p.add_argument("--workers", type=int, default=5, help="worker tasks in the harness")
    p.add_argument("--zombies", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--worker-hold", default="0,0.4", metavar="MIN,MAX",
                   help="seconds a worker task holds its jobs (default 0,0.4)")  # fmt: skip
    p.add_argument("--test-fault", choices=TEST_FAULTS, default=None,
                   help="POSITIVE CONTROLS ONLY: start deliberately broken nodes")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.list:
        for name, text in DESCRIPTIONS.items():
            print(f"{name:20} {text}")
        return 0
    if args.out is None:
        print("jepsen-style/run: error: --out DIR is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        names = expand([n.strip() for n in args.nemesis.split(",") if n.strip()])
    except ValueError as e:
        print(f"jepsen-style/run: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.time_limit <= 0 or args.nodes < 1:
        print("jepsen-style/run: error: --time-limit and --nodes must be positive", file=sys.stderr)
        return EXIT_USAGE
    missing = ensure_tools(clock="clock" in names, cc=any(n in names for n in SHIM_NEMESES))
    if missing:
        print(f"jepsen-style/run: error: missing: {'; '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        lo, hi = (float(x) for x in args.worker_hold.split(","))
    except ValueError:
        print("jepsen-style/run: error: --worker-hold takes MIN,MAX seconds", file=sys.stderr)
        return EXIT_USAGE
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    opts = RunOptions(
        nemeses=names,
        time_limit_s=args.time_limit,
        nodes=args.nodes,
        out=args.out,
        seed=seed,
        quiet_s=args.quiet if args.quiet is not None else min(10.0, args.time_limit / 6),
        drain_limit_s=args.drain_limit,
        test_fault=args.test_fault,
        params=WorkloadParams(
            producers=args.producers,
            workers=args.workers,
            zombies=args.zombies,
            worker_hold_s=(lo, hi),
        ),
    )
    try:
        run_json = run(opts)
    except KeyboardInterrupt:
        print("jepsen-style/run: interrupted; everything was cleaned up", file=sys.stderr)
        return 130
    except Exception as e:  # a harness failure: one line, the details are in the logs
        logger.debug("run failed", exc_info=True)
        print(f"jepsen-style/run: error: {e} (node logs in {opts.out / 'logs'})", file=sys.stderr)
        return EXIT_UNKNOWN
    _print_summary(opts, run_json)
    return judge(opts.out)


def judge(run_dir: Path) -> int:
    """Call the checker on ``run_dir``; its verdict is the exit code."""
    try:
        from raftq_jepsen.checker import check_run  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError as e:
        print(
            f"jepsen-style/run: cannot judge {run_dir}: the checker "
            f"(raftq_jepsen.checker.check_run) is not available ({e}); the history is kept",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    try:
        results = check_run(run_dir)
    except Exception as e:  # the checker could not read the run: no verdict
        print(f"jepsen-style/run: the checker failed on {run_dir}: {e}", file=sys.stderr)
        return EXIT_UNKNOWN
    valid = results.get("valid")
    print(f"checker: valid={valid} (results in {run_dir / 'results.json'})")
    if valid is True:
        return 0
    return EXIT_INVALID if valid is False else EXIT_UNKNOWN


def run(opts: RunOptions) -> dict[str, Any]:
    """Run the test; hosts are removed whatever happens (Ctrl-C and SIGTERM included)."""
    opts.out.mkdir(parents=True, exist_ok=True)
    hosts = Hosts(
        opts.out.resolve(),
        opts.nodes,
        faketime="clock" in opts.nemeses,
        test_fault=opts.test_fault,
        raft_overrides=raft_settings(opts.nemeses),
        disk_tmpfs="disk-full" in opts.nemeses,
        eio="disk-error" in opts.nemeses,
        wall_shift="clock-jump" in opts.nemeses,
        spares=spare_hosts(opts.nemeses),
    )

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C as SIGTERM: raised where the loop runs, not asyncio.run's cancellation of the
    # main task, which a wait that turns a cancellation into a timeout (and suppresses it)
    # could swallow, so that the run went on to its end.
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        hosts.open()
        return asyncio.run(_run(opts, hosts))
    finally:
        hosts.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spare_hosts(nemeses: list[str]) -> int:
    """Hosts built beyond ``--nodes`` for the membership nemeses (none otherwise)."""
    return SPARE_HOSTS if any(n in SPARE_NEMESES for n in nemeses) else 0


def raft_settings(nemeses: list[str]) -> dict[str, int]:
    """The ``[raft]`` overrides of a run: ``RAFT``, with compaction every few hundred entries
    when the snapshot-race nemesis is in it."""
    if "snapshot-race" in nemeses:
        return RAFT | SNAPSHOT_RACE_RAFT
    return dict(RAFT)


async def _wait_ready(
    session: aiohttp.ClientSession, nodes: list[NodeProc], limit_s: float
) -> bool:
    """Until every node answers /readyz 200 (a leader known and caught up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        ok = 0
        for n in nodes:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with session.get(n.url + "/readyz", timeout=aiohttp.ClientTimeout(1)) as r:
                    ok += r.status == 200
        if ok == len(nodes):
            return True
        await asyncio.sleep(0.2)
    return False


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(3)) as r:
        return await r.json()


async def _node_states(
    session: aiohttp.ClientSession, nodes: list[NodeProc], queues: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Each node's final view, once every node applied the same index (up to 15 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    out: dict[str, Any] = {}
    while True:
        out = {}
        for n in nodes:
            try:
                body = await _get(session, n.url + "/v1/cluster")
                me = body["self"]
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as e:
                out[n.id] = {"id": n.id, "error": f"unreachable: {type(e).__name__}"}
                continue
            out[n.id] = {"id": n.id} | {
                k: me.get(k) for k in ("applied_index", "commit_index", "digest", "term", "role")
            }
            view = members_of(body)
            if view is not None:  # the membership this node applied (servers that have one)
                out[n.id]["members"] = list(view.ids)
        applied = {v.get("applied_index") for v in out.values()}
        if (len(applied) == 1 and None not in applied) or loop.time() > deadline:
            break
        await asyncio.sleep(0.3)
    for n in nodes:
        if "error" in out[n.id]:
            continue
        dead: dict[str, list[int]] = {}
        for q in queues:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError, ValueError):
                body = await _get(session, f"{n.url}/v1/queues/{q}/dead?limit=1000")
                ids = [int(j["id"]) for j in body.get("jobs", [])]
                if ids:
                    dead[q] = ids
        out[n.id]["dead"] = dead
    return [out[n.id] for n in nodes]


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "raftq"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


async def _run(opts: RunOptions, hosts: Hosts) -> dict[str, Any]:
    out = opts.out
    origin = time.monotonic_ns()
    wall_start = time.time()
    for node in hosts.nodes:
        hosts.start(node)
    (out / "nemesis.jsonl").write_text("")
    history = History(out / "history.jsonl", origin)
    run_json: dict[str, Any] = {
        "nodes": [n.id for n in hosts.nodes],
        "node_api": {n.id: n.url for n in hosts.all_nodes},
        "spare_hosts": [n.id for n in hosts.spares],
        "nemeses": opts.nemeses,
        "time_limit_s": opts.time_limit_s,
        "quiet_s": opts.quiet_s,
        "seed": opts.seed,
        "commit": _commit(),
        "test_fault": opts.test_fault,
        "workload": opts.params.to_json(),
        "raft": raft_settings(opts.nemeses),
        "wall_start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall_start)),
        "start_ns": 0,
    }
    try:
        return await _phases(opts, hosts, history, run_json, origin, wall_start)
    finally:
        history.close()


async def _phases(
    opts: RunOptions,
    hosts: Hosts,
    history: History,
    run_json: dict[str, Any],
    origin: int,
    wall_start: float,
) -> dict[str, Any]:
    """Workload and nemesis, heal, restart, drain, final node states; fills ``run_json``."""
    out = opts.out
    loop = asyncio.get_running_loop()
    rng = random.Random(opts.seed)

    def now() -> int:
        return time.monotonic_ns() - origin

    async with new_session(hosts.token) as session:
        if not await _wait_ready(session, hosts.nodes, 60):
            raise RuntimeError("the cluster did not become ready within 60 s (see logs/)")
        refs = [NodeRef(n.id, n.url) for n in hosts.nodes]
        await set_limits(session, refs, opts.params)
        run_json["limits"] = opts.params.to_json()["limits"]
        workload = Workload(
            history, session, refs, opts.params, hosts.token, rng.getrandbits(64), str(out)
        )
        ctx = NemesisContext(hosts, workload, session, rng, out / "nemesis.jsonl", origin)
        # One schedule fires through the run (raftq_jepsen.schedule_probe, checker.schedules).
        probe = ScheduleProbe(session, refs)
        try:
            await probe.start(wall_start * 1000)
            run_json["workload_start_ns"] = now()
            await workload.start()
            end_at = loop.time() + opts.time_limit_s
            await run_schedule(ctx, opts.nemeses, end_at=end_at, quiet_s=opts.quiet_s)
            await asyncio.sleep(max(0.0, end_at - loop.time()))
            # Every window healed itself when it ended; stop the clients (operations in
            # flight finish or time out), then make sure nothing is left cut off or paused.
            await workload.stop()
            run_json["workload_end_ns"] = now()
            await probe.pause()
            await heal_all(ctx)
            run_json["heal_ns"] = now()
            record = await probe.collect()
            (out / "schedules.json").write_text(json.dumps(record, indent=2) + "\n")
        except BaseException:
            await workload.abort()
            raise
        # Restart every node (SIGTERM; a node killed by the last fault is simply started).
        await asyncio.to_thread(hosts.stop_all)
        for node in hosts.nodes:
            hosts.start(node)
        run_json["restart_ns"] = now()
        # The members at the end (the harness's view, made the leader's at the heal when the
        # run changes membership): convergence is judged over them, the drain runs on them.
        run_json["members"] = [n.id for n in hosts.nodes]
        refs = [NodeRef(n.id, n.url) for n in hosts.nodes]
        await set_limits(session, refs, opts.params)
        run_json["limits"] = opts.params.to_json()["limits"]
        ready = await _wait_ready(session, hosts.nodes, 30)
        run_json["ready_after_restart"] = ready
        run_json["drain_start_ns"] = now()
        trace: list[list[Any]] = []
        drained = await drain(
            history, session, refs, opts.params, limit_s=opts.drain_limit_s, trace=trace
        )
        run_json["drain_trace"] = trace
        run_json["drain_end_ns"] = now()
        run_json["drained"] = drained
        history.close()
        if hosts.spare_count:
            view = await leader_members(ctx)
            run_json["members_reported"] = None if view is None else list(view.ids)
        nodes_json = await _node_states(session, hosts.nodes, opts.params.queues)
        for node, entry in zip(hosts.nodes, nodes_json, strict=True):
            hosts.note_exit(node)
            # Exits the harness did not cause (a node that stopped itself, e.g. on a disk
            # fault): when (run time), exit code, the last line it logged.
            entry["exits"] = [e | {"time_ns": e["time_ns"] - origin} for e in node.exits]
        (out / "nodes.json").write_text(json.dumps(nodes_json, indent=2) + "\n")
    run_json["end_ns"] = now()
    run_json["wall_time_s"] = round(time.time() - wall_start, 1)
    run_json["operations"] = history.operations
    run_json["counts"] = dict(sorted(history.counts.items()))
    run_json["availability"] = availability(out / "history.jsonl", ctx.windows)
    (out / "run.json").write_text(json.dumps(run_json, indent=2) + "\n")
    return run_json


def availability(history_path: Path, windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of completed operations that were ``ok``, inside each nemesis's windows (by the
    completion time) and outside every window. Reported, not judged (the checker owns the
    verdicts); drain operations are left out."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for w in windows:
        spans.setdefault(w["nemesis"], []).append((w["start_ns"], w["end_ns"]))
    tally: dict[str, list[int]] = {}
    with history_path.open() as f:
        for line in f:
            e = json.loads(line)
            if e["type"] == "invoke" or e["process"] >= 1000:
                continue
            keys = [
                name for name, ss in spans.items() if any(a <= e["time_ns"] <= b for a, b in ss)
            ]
            for k in keys or ["(no fault)"]:
                t = tally.setdefault(k, [0, 0])
                t[0] += e["type"] == "ok"
                t[1] += 1
    return {k: {"ok": ok, "ops": n, "ok_share": round(ok / n, 3) if n else None}
            for k, (ok, n) in sorted(tally.items())}  # fmt: skip


def _print_summary(opts: RunOptions, r: dict[str, Any]) -> None:
    drain_s = (r["drain_end_ns"] - r["drain_start_ns"]) / 1e9
    print(
        f"run {opts.out}: {r['operations']} operations in {r['wall_time_s']} s wall, "
        f"nemeses {','.join(opts.nemeses)}, seed {opts.seed}; drain {drain_s:.1f} s "
        f"({'complete' if r['drained'] else 'INCOMPLETE'})"
    )
    for name, a in r["availability"].items():
        print(f"  availability {name:20} {a['ok']}/{a['ops']} ok ({a['ok_share']})")


if __name__ == "__main__":
    sys.exit(main())
