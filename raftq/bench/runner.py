"""``raftq bench``: one run of ``raftq.bench.phases`` on a fresh local raftq cluster,
optionally with the client levers off and on, and the peers (``raftq.bench.peers``), in the
same run.

The raftq part runs under ``flock /tmp/bench.lock`` (the machine is shared); the peers take
that lock themselves for each server boot and each measured repetition, after raftq's part
released it.
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from raftq import runloop
from raftq.bench.cluster import LocalCluster, TermSampler
from raftq.bench.commits import commit_summary, read_commits
from raftq.bench.lock import bench_lock
from raftq.bench.peers.run import peer_summary, prepare_peers, run_peers
from raftq.bench.progress import Progress
from raftq.bench.workload import (
    Workload,
    make_payload,
    run_concurrent,
    run_enqueue,
    run_process,
)
from raftq.client import Client

__all__ = ["LEVERS", "BenchOptions", "run_bench"]

# The client levers, from none to all, with the hand-written worker loop (each measured on the
# same cluster in one run); then raftq.worker.Worker over HTTP claims and over the worker
# stream (its default, and the main phases'), each with the settings of the main phases and
# with prefetch 30 (jobs claimed, or credit granted, ahead of its free slots); last the stream
# worker on a queue with limits that never bind and its jobs over 1,000 groups (the limiter's
# cost, against the stream row above it).
_LOOP = "loop"
LEVERS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "one request per operation",
        {"coalesce": False, "claim_batch": 1, "pipeline": False, "worker": _LOOP},
    ),
    (
        "+ batch claim (max 10)",
        {"coalesce": False, "claim_batch": 10, "pipeline": False, "worker": _LOOP},
    ),
    (
        "+ coalesced enqueue and ack",
        {"coalesce": True, "claim_batch": 10, "pipeline": False, "worker": _LOOP},
    ),
    (
        "+ acks pipelined with claims",
        {"coalesce": True, "claim_batch": 10, "pipeline": True, "worker": _LOOP},
    ),
    (
        "+ claim batch 100 (peers: 10)",
        {"coalesce": True, "claim_batch": 100, "pipeline": True, "worker": _LOOP},
    ),
    (
        "Worker over HTTP (max 10)",
        {"coalesce": True, "claim_batch": 10, "worker": "raftq", "stream": False},
    ),
    (
        "Worker over HTTP (prefetch 30)",
        {"claim_batch": 10, "worker": "raftq", "prefetch": 30, "stream": False},
    ),
    (
        "Worker on the stream (max 10)",
        {"coalesce": True, "claim_batch": 10, "pipeline": True, "worker": "raftq"},
    ),
    (
        "Worker on the stream (prefetch 30)",
        {"coalesce": True, "claim_batch": 10, "worker": "raftq", "prefetch": 30},
    ),
    (
        "stream, limits on (1,000 groups)",
        {"coalesce": True, "claim_batch": 10, "pipeline": True, "worker": "raftq", "groups": 1000},
    ),
)


@dataclass(frozen=True, slots=True)
class BenchOptions:
    workload: Workload = field(default_factory=Workload)
    nodes: int = 3
    fsync: bool = True
    jobs_queued: int = 0  # jobs preloaded in another queue before the phases
    levers: bool = False
    levers_n: int = 2_000  # jobs per lever measurement (one request per op is slow)
    peers: tuple[str, ...] = ()  # names of raftq.bench.peers.run.PEERS
    lock: bool = True
    # Measure the phases a second time on a fresh cluster with fsync off: the like-for-like
    # row beside peers that do not sync each message (NATS).
    fsync_off_row: bool = False


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


async def _preload(urls: list[str], jobs: int, payload_bytes: int) -> None:
    progress = Progress("preload", jobs)
    async with Client(urls, timeout_ms=60_000, retry_ms=60_000) as c:
        sem = asyncio.Semaphore(4)

        async def batch(start: int, k: int) -> None:
            async with sem:
                items = [{"payload": make_payload(start + i, payload_bytes)} for i in range(k)]
                await c.enqueue_many("bench-backlog", items)
                progress.add(k)

        await asyncio.gather(*(batch(s, min(1000, jobs - s)) for s in range(0, jobs, 1000)))
    progress.finish()


async def _phases(
    urls: list[str], w: Workload, tag: str, sampler: TermSampler, apis: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase in ("enqueue", "process", "mixed", "paced"):
        before = sampler.elections()
        commits_before = await asyncio.to_thread(read_commits, apis)
        if phase == "enqueue":
            out[phase] = await run_enqueue(urls, f"{tag}-a", w)
        elif phase == "process":
            out[phase] = await run_process(urls, f"{tag}-a", w)
        elif phase == "mixed":
            out[phase] = await run_concurrent(urls, f"{tag}-m", w, n=w.n, rate=None, label="mixed")
        else:
            out[phase] = await run_concurrent(
                urls, f"{tag}-p", w, n=w.n_paced, rate=w.rate, label="paced"
            )
        out[phase]["elections"] = sampler.elections() - before
        # Where the phase's write time went on the leader (raftq.bench.commits).
        out[phase]["raft"] = commit_summary(
            commits_before, await asyncio.to_thread(read_commits, apis)
        )
    return out


async def _levers(
    urls: list[str], w: Workload, n: int, sampler: TermSampler
) -> list[dict[str, Any]]:
    rows = []
    for i, (name, changes) in enumerate(LEVERS):
        print(f"-- lever: {name}", file=sys.stderr, flush=True)
        lw = replace(w, n=n, **changes)
        before = sampler.elections()
        enq = await run_enqueue(urls, f"lever{i}", lw)
        proc = await run_process(urls, f"lever{i}", lw)
        rows.append(
            {
                "lever": name,
                **changes,
                "enqueue_per_s": enq["rate"],
                "process_per_s": proc["rate"],
                "elections": sampler.elections() - before,
            }
        )
    return rows


def _run_raftq(opts: BenchOptions) -> dict[str, Any]:
    w = opts.workload
    with LocalCluster(opts.nodes, fsync=opts.fsync) as cluster:
        t0 = time.monotonic()
        leader = cluster.wait_ready()
        print(
            f"cluster of {opts.nodes} ready in {time.monotonic() - t0:.1f} s, leader {leader}, "
            f"fsync {'always' if opts.fsync else 'off'}",
            file=sys.stderr,
            flush=True,
        )
        sampler = TermSampler(cluster)
        sampler.start()
        try:
            out: dict[str, Any] = {}
            if opts.jobs_queued:
                runloop.run(_preload(cluster.urls, opts.jobs_queued, w.payload_bytes))
                # The phases measure a cluster holding the backlog, not one still shipping it
                # to a follower: every node applies it first.
                caught_up_s = cluster.wait_caught_up()
                print(
                    f"every node applied the backlog {caught_up_s:.1f} s after the preload",
                    file=sys.stderr,
                    flush=True,
                )
                out["preload"] = {
                    "caught_up_s": round(caught_up_s, 1),
                    "elections": sampler.elections(),
                }
            sampler.mark()
            if opts.levers:
                out["levers"] = runloop.run(_levers(cluster.urls, w, opts.levers_n, sampler))
            apis = [cluster.api[nid] for nid in cluster.ids]
            out["phases"] = runloop.run(_phases(cluster.urls, w, "bench", sampler, apis))
            out["elections"] = sampler.elections()
            out["leader_changes"] = sampler.leader_changes()
            out["rss_mb"] = {k: round(v / 1024, 1) for k, v in cluster.rss_kb().items()}
        finally:
            sampler.stop()
    return out


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run everything ``opts`` asks for; the result is what ``--json`` writes."""
    w = opts.workload
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "options": {
            "nodes": opts.nodes,
            "fsync": "always" if opts.fsync else "off",
            "jobs_queued": opts.jobs_queued,
            "levers_n": opts.levers_n if opts.levers else None,
            **w.as_dict(),
        },
    }
    # Peers' packages and clients first: a missing one fails the run before anything is measured.
    peers_python = prepare_peers(list(opts.peers)) if opts.peers else None
    with bench_lock(opts.lock):
        raftq = _run_raftq(opts)
    if opts.fsync_off_row:
        with bench_lock(opts.lock):
            off = _run_raftq(replace(opts, fsync=False, levers=False, jobs_queued=0))
        result["fsync_off"] = {**_figures(off["phases"]), "elections": off["elections"]}
    ph = raftq["phases"]
    result.update(
        {
            **_figures(ph),
            "elections": raftq["elections"],
            "leader_changes": raftq["leader_changes"],
            "rss_mb": raftq["rss_mb"],
            "raftq": ph,
        }
    )
    if "levers" in raftq:
        result["levers"] = raftq["levers"]
    if "preload" in raftq:
        result["preload"] = raftq["preload"]
    if peers_python is not None:
        raw = run_peers(list(opts.peers), peers_python, w, lock=opts.lock)
        result["peers"] = {name: peer_summary(rec) for name, rec in raw.items()}
        result["peers_raw"] = raw
        result["ratios"] = ratios(result)
        if "fsync_off" in result:
            result["ratios_fsync_off"] = ratios(result, result["fsync_off"])
    return result


def _figures(ph: dict[str, Any]) -> dict[str, float]:
    """The five headline figures of a run's phases (``METRICS``)."""
    return {
        "enqueue_per_s": ph["enqueue"]["rate"],
        "process_per_s": ph["process"]["rate"],
        "mixed_per_s": ph["mixed"]["throughput"],
        "paced_p50_ms": ph["paced"]["e2e_p50_ms"],
        "paced_p99_ms": ph["paced"]["e2e_p99_ms"],
    }


_WORKER_NAMES = {"raftq": "raftq.worker.Worker", "loop": "the hand-written loop"}

METRICS = (
    ("enqueue_per_s", True),
    ("process_per_s", True),
    ("mixed_per_s", True),
    ("paced_p50_ms", False),
    ("paced_p99_ms", False),
)


def ratios(
    result: dict[str, Any], raftq: dict[str, Any] | None = None
) -> dict[str, dict[str, float | None]]:
    """raftq / peer for rates (above 1: raftq faster); raftq / peer for latencies too (below
    1: raftq lower). ``raftq``: whose figures (the run's main ones by default)."""
    figures = result if raftq is None else raftq
    out: dict[str, dict[str, float | None]] = {}
    for name, peer in result.get("peers", {}).items():
        row: dict[str, float | None] = {}
        for key, _ in METRICS:
            mine, theirs = figures.get(key), peer.get(key)
            ok = isinstance(mine, int | float) and isinstance(theirs, int | float) and theirs
            row[key] = mine / theirs if ok else None
        out[name] = row
    return out


def format_report(result: dict[str, Any]) -> str:
    """The human summary printed at the end of a run."""
    lines = [
        f"raftq bench  {result['date']}  commit {result['commit']}  "
        f"{result['options']['nodes']} nodes, fsync {result['options']['fsync']}, "
        f"workers: {_WORKER_NAMES.get(result['options']['worker'], result['options']['worker'])}",
        "",
    ]
    header = (
        f"{'system':<14} {'enqueue/s':>10} {'process/s':>10} {'mixed/s':>10} "
        f"{'paced p50':>10} {'p99 ms':>8}"
    )
    lines.append(header)

    def row(name: str, d: dict[str, Any]) -> str:
        if "error" in d:
            return f"{name:<14} {d['error']}"

        def f(k: str, fmt: str) -> str:
            v = d.get(k)
            return format(v, fmt) if isinstance(v, int | float) else "-"

        return (
            f"{name:<14} {f('enqueue_per_s', '10,.0f')} {f('process_per_s', '10,.0f')} "
            f"{f('mixed_per_s', '10,.0f')} {f('paced_p50_ms', '10.2f')} {f('paced_p99_ms', '8.2f')}"
        )

    lines.append(row("raftq", result))
    if "fsync_off" in result:
        lines.append(row("raftq fsync=off", result["fsync_off"]))
    for name, peer in result.get("peers", {}).items():
        lines.append(row(name, peer))
    lines.append("")
    lines.append(
        f"elections during the run: {result['elections']} "
        f"(leader changes {result['leader_changes']}); node RSS MB: {result['rss_mb']}"
    )
    lines.append("where the writes' time went on the leader (per log entry):")
    for phase, d in result.get("raftq", {}).items():
        lines.append(f"  {phase:<8} {_raft_line(d.get('raft') or {})}")
    for label, key in (("raftq", "ratios"), ("raftq fsync=off", "ratios_fsync_off")):
        for name, r in result.get(key, {}).items():
            parts = [
                f"{k.replace('_per_s', '').replace('_ms', '')} {v:.2f}x"
                for k, v in r.items()
                if v is not None
            ]
            lines.append(f"{label} / {name}: " + ", ".join(parts))
    if "levers" in result:
        lines.append("")
        lines.append("client levers (same cluster, same run):")
        base = result["levers"][0]
        for lv in result["levers"]:
            lines.append(
                f"  {lv['lever']:<32} enqueue {lv['enqueue_per_s']:8,.0f}/s "
                f"({lv['enqueue_per_s'] / base['enqueue_per_s']:.2f}x)  process "
                f"{lv['process_per_s']:8,.0f}/s "
                f"({lv['process_per_s'] / base['process_per_s']:.2f}x)"
                f"  elections {lv['elections']}"
            )
    return "\n".join(lines)


def _raft_line(r: dict[str, Any]) -> str:
    if not r.get("entries"):
        return "-"
    return (
        f"{r['entries']:,.0f} entries of {r['commands_per_entry']} commands; waited "
        f"{r['wait_mean_ms']:.2f} ms, committed in {r['commit_mean_ms']:.2f} ms "
        f"(p50 {r['commit_p50_ms']:.2f}, p99 {r['commit_p99_ms']:.2f})"
    )
