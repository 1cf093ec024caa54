"""Throughput, memory and snapshot cost of the core state machine (raftq.core), no Raft, no I/O.

Every figure applies real encoded log entries through ``Machine.apply_entry``. Entries are
encoded before the clock starts; only applying is timed. Ack entries need the tokens the claims
returned, so they are encoded inside the loop, between two timed applies, and their encode
time is reported on its own line.

Workloads, each at two depths (``--depths``, default 10k and 1M jobs queued beforehand, 100-byte
payloads, one queue, priority 0):

- ``enqueue 100x1``: entries of 100 ``Enqueue`` commands of one job each;
- ``enqueue 1x100``: entries of one ``Enqueue`` of 100 jobs;
- ``claim+ack max=1``: entries of 100 ``Claim(max=1)``, then an entry of their 100 ``Ack``;
- ``claim+ack max=100``: an entry of one ``Claim(max=100)``, then an entry of its 100 ``Ack``.

The four run interleaved in rounds of ``--chunk`` jobs (enqueue a chunk, claim+ack a chunk, ...)
so the queue depth stays between the nominal depth and depth + chunk. A rate is jobs / seconds
spent inside ``apply_entry``; each figure is the median of ``--repeat`` passes.

``--groups N`` runs the same with limits on: the jobs spread over N groups, and the queue has
every limit set, at caps that never bind (what limits cost when they do not throttle).

RSS per queued job is measured in a fresh subprocess (VmRSS before and after enqueuing
``--rss-jobs`` jobs). Snapshot (``snapshot_bytes``) and restore (``Machine.restore``) are timed
on the machine of the largest depth.

Run it alone on the box: ``flock /tmp/bench.lock .venv/bin/python bench/bench_core.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftq.core import (
    Ack,
    Acked,
    Claim,
    Claimed,
    EnableVersion,
    Enqueue,
    Enqueued,
    Machine,
    NewJob,
    Result,
    SetLimits,
    encode_entry,
    snapshot_bytes,
)
from raftq.core.limits import MAX_BATCH_JOBS

QUEUE = "bench"
WORKER = "bench-worker"
PAYLOAD_BYTES = 100
BATCH = 100  # commands (or jobs) per entry
START_MS = 1_700_000_000_000

GROUPS = 0  # --groups: jobs spread over this many groups of a limited queue (0: no limits)
TARGET_ENQUEUE_PER_S = 200_000
TARGET_CLAIM_ACK_PER_S = 100_000
TARGET_RSS_MB_1M = 600
TARGET_SNAPSHOT_S = 3.0


def payload(i: int) -> bytes:
    """A distinct 100-byte payload (distinct so that nothing is shared between jobs)."""
    return i.to_bytes(8, "big") * (PAYLOAD_BYTES // 8) + b"x" * (PAYLOAD_BYTES % 8)


class Clock:
    """The proposer's clock: one millisecond per entry, so leases (30 s) never expire here."""

    def __init__(self) -> None:
        self.now_ms = START_MS
        self.serial = 0

    def tick(self) -> int:
        self.now_ms += 1
        return self.now_ms

    def next_payload(self) -> bytes:
        self.serial += 1
        return payload(self.serial)

    def job(self) -> NewJob:
        """The next job (of the next group, round-robin, with ``--groups``)."""
        data = self.next_payload()
        if not GROUPS:
            return NewJob(payload=data)
        return NewJob(payload=data, group=f"g{self.serial % GROUPS}")


def limit(m: Machine, clock: Clock) -> None:
    """Every limit on, at caps a run never reaches (one ms per entry, 100 claims per entry)."""
    m.apply_entry(encode_entry([EnableVersion(now_ms=clock.tick(), version=3)]))
    caps = SetLimits(
        now_ms=clock.tick(),
        queue=QUEUE,
        concurrency=1_000_000,
        rate_limit=100_000,
        rate_period_ms=1,
        group_concurrency=1_000_000,
        group_rate_limit=1_000,
        group_rate_period_ms=1,
    )
    m.apply_entry(encode_entry([caps]))


def vm_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def fill(m: Machine, clock: Clock, n_jobs: int) -> None:
    """Enqueue ``n_jobs`` ready jobs, encoding one big entry at a time (not timed)."""
    left = n_jobs
    while left > 0:
        n = min(left, MAX_BATCH_JOBS)
        jobs = tuple(clock.job() for _ in range(n))
        raw = encode_entry([Enqueue(now_ms=clock.tick(), queue=QUEUE, jobs=jobs)])
        (result,) = m.apply_entry(raw)
        assert isinstance(result, Enqueued), result
        left -= n


# -- workloads ------------------------------------------------------------------------------


@dataclass
class Phase:
    """Accumulated cost of one workload during one pass."""

    jobs: int = 0
    apply_ns: int = 0  # wall clock inside apply_entry
    cpu_ns: int = 0  # this thread's CPU time inside apply_entry (less sensitive to neighbours)
    encode_ns: int = 0  # ack entries encoded inside the loop (not part of apply_ns)

    def rate(self) -> float:
        return self.jobs / (self.apply_ns / 1e9) if self.apply_ns else 0.0

    def cpu_rate(self) -> float:
        return self.jobs / (self.cpu_ns / 1e9) if self.cpu_ns else 0.0


def _timed_apply(m: Machine, entries: list[bytes], phase: Phase) -> list[list[Result]]:
    out: list[list[Result]] = []
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    for raw in entries:
        c0, t0 = cpu(), wall()
        results = m.apply_entry(raw)
        t1, c1 = wall(), cpu()
        phase.apply_ns += t1 - t0
        phase.cpu_ns += c1 - c0
        out.append(results)
    return out


def enqueue_100x1(m: Machine, clock: Clock, n_jobs: int, phase: Phase) -> None:
    entries = [
        encode_entry([Enqueue(now_ms=now, queue=QUEUE, jobs=(clock.job(),)) for _ in range(BATCH)])
        for now in (clock.tick() for _ in range(n_jobs // BATCH))
    ]
    results = _timed_apply(m, entries, phase)
    assert all(isinstance(r, Enqueued) for rs in results for r in rs)
    phase.jobs += len(entries) * BATCH


def enqueue_1x100(m: Machine, clock: Clock, n_jobs: int, phase: Phase) -> None:
    entries = [
        encode_entry(
            [
                Enqueue(
                    now_ms=clock.tick(),
                    queue=QUEUE,
                    jobs=tuple(clock.job() for _ in range(BATCH)),
                )
            ]
        )
        for _ in range(n_jobs // BATCH)
    ]
    results = _timed_apply(m, entries, phase)
    assert all(isinstance(r, Enqueued) and len(r.ids) == BATCH for rs in results for r in rs)
    phase.jobs += len(entries) * BATCH


def claim_ack(m: Machine, clock: Clock, n_jobs: int, claim_max: int, phase: Phase) -> None:
    """Claim ``n_jobs`` jobs in entries of 100 and ack each entry's jobs in the next entry."""
    per_cmd = claim_max
    cmds_per_entry = BATCH // claim_max
    n_entries = n_jobs // BATCH
    # Claim entries do not depend on results: encode them all first. Every claim entry is
    # followed by its ack entry, so the claims take the even milliseconds, acks the odd ones.
    claim_times = [clock.tick() + i * 2 for i in range(n_entries)]
    claims = [
        encode_entry(
            [
                Claim(now_ms=now, queues=(QUEUE,), worker=WORKER, max=per_cmd)
                for _ in range(cmds_per_entry)
            ]
        )
        for now in claim_times
    ]
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    apply_ns = cpu_ns = encode_ns = 0
    acked = 0
    for now, raw in zip(claim_times, claims, strict=True):
        c0, t0 = cpu(), wall()
        claimed = m.apply_entry(raw)
        t1, c1 = wall(), cpu()
        acks = [
            Ack(now_ms=now + 1, job_id=lease.id, token=lease.token)
            for r in claimed
            if isinstance(r, Claimed)
            for lease in r.jobs
        ]
        ack_raw = encode_entry(acks)
        c2, t2 = cpu(), wall()
        results = m.apply_entry(ack_raw)
        t3, c3 = wall(), cpu()
        apply_ns += (t1 - t0) + (t3 - t2)
        cpu_ns += (c1 - c0) + (c3 - c2)
        encode_ns += t2 - t1
        if len(acks) != BATCH or not all(isinstance(r, Acked) for r in results):
            raise RuntimeError(f"claim+ack went wrong: {len(acks)} leases, {results[:3]}")
        acked += len(acks)
    clock.now_ms = claim_times[-1] + 1 if claim_times else clock.now_ms
    phase.jobs += acked
    phase.apply_ns += apply_ns
    phase.cpu_ns += cpu_ns
    phase.encode_ns += encode_ns


WORKLOADS = ("enqueue 100x1", "enqueue 1x100", "claim+ack max=1", "claim+ack max=100")


def one_pass(m: Machine, clock: Clock, n_jobs: int, chunk: int) -> dict[str, Phase]:
    phases = {name: Phase() for name in WORKLOADS}
    done = 0
    while done < n_jobs:
        n = min(chunk, n_jobs - done)
        enqueue_100x1(m, clock, n, phases["enqueue 100x1"])
        claim_ack(m, clock, n, 1, phases["claim+ack max=1"])
        enqueue_1x100(m, clock, n, phases["enqueue 1x100"])
        claim_ack(m, clock, n, BATCH, phases["claim+ack max=100"])
        done += n
    return phases


# -- memory (fresh subprocess) --------------------------------------------------------------


def rss_child(n_jobs: int) -> None:
    gc.collect()
    before = vm_rss_kib()
    m = Machine()
    fill(m, Clock(), n_jobs)
    gc.collect()
    after = vm_rss_kib()
    print(json.dumps({"jobs": len(m.jobs), "rss_before_kib": before, "rss_after_kib": after}))


def measure_rss(n_jobs: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n_jobs)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    r: dict[str, Any] = json.loads(out)
    delta = r["rss_after_kib"] - r["rss_before_kib"]
    r["bytes_per_job"] = delta * 1024 / n_jobs
    return r


# -- snapshot ---------------------------------------------------------------------------------


def measure_snapshot(m: Machine, repeat: int) -> dict[str, Any]:
    snap_s: list[float] = []
    restore_s: list[float] = []
    restore_nogc_s: list[float] = []
    data = b""
    for _ in range(repeat):
        t0 = time.perf_counter()
        data = snapshot_bytes(m)
        snap_s.append(time.perf_counter() - t0)
    for timings, collect in ((restore_s, True), (restore_nogc_s, False)):
        for _ in range(repeat):
            gc.collect()
            if not collect:
                gc.disable()
            try:
                t0 = time.perf_counter()
                restored = Machine.restore(data)
                timings.append(time.perf_counter() - t0)
            finally:
                gc.enable()
            del restored
    restored = Machine.restore(data)
    if snapshot_bytes(restored) != data:
        raise RuntimeError("snapshot -> restore -> snapshot changed the bytes")
    return {
        "jobs": len(m.jobs),
        "bytes": len(data),
        "snapshot_s": snap_s,
        "restore_s": restore_s,
        "restore_gc_off_s": restore_nogc_s,
    }


# -- driver -----------------------------------------------------------------------------------


class GcTimer:
    """Wall time spent in the cyclic garbage collector (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.ns = 0
        self.runs = 0
        self._t0 = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter_ns()
        else:
            self.ns += time.perf_counter_ns() - self._t0
            self.runs += 1


@dataclass
class DepthResult:
    depth: int
    fill_s: float
    passes: list[dict[str, Phase]] = field(default_factory=list)
    pass_s: list[float] = field(default_factory=list)
    gc_s: list[float] = field(default_factory=list)

    def rates(self, name: str) -> list[float]:
        return [p[name].rate() for p in self.passes]

    def cpu_rates(self, name: str) -> list[float]:
        return [p[name].cpu_rate() for p in self.passes]

    def median_rate(self, name: str) -> float:
        return statistics.median(self.rates(name))


def run_depth(
    *,
    depth: int,
    ops: int,
    chunk: int,
    repeat: int,
    freeze: bool,
    gc_timer: GcTimer,
    log: Callable[[str], None],
) -> tuple[DepthResult, Machine]:
    m, clock = Machine(), Clock()
    if GROUPS:
        limit(m, clock)
    t0 = time.perf_counter()
    fill(m, clock, depth)
    res = DepthResult(depth=depth, fill_s=time.perf_counter() - t0)
    log(f"depth {depth:,}: filled in {res.fill_s:.1f} s (encode included)")
    if freeze:
        gc.collect()
        gc.freeze()
    for i in range(repeat):
        gc_before, t0 = gc_timer.ns, time.perf_counter()
        res.passes.append(one_pass(m, clock, ops, chunk))
        res.pass_s.append(time.perf_counter() - t0)
        res.gc_s.append((gc_timer.ns - gc_before) / 1e9)
        rates = ", ".join(f"{n} {res.passes[-1][n].rate():,.0f}/s" for n in WORKLOADS)
        log(f"  pass {i + 1}: {rates}; gc {res.gc_s[-1]:.2f} s of {res.pass_s[-1]:.1f} s")
    if freeze:
        gc.unfreeze()
    return res, m


def fmt_rate(x: float) -> str:
    return f"{x / 1000:,.0f}k/s"


def spread(xs: list[float], f: Callable[[float], str]) -> str:
    return f"{f(min(xs))} .. {f(max(xs))}" if len(xs) > 1 else "-"


TARGETS = {
    "enqueue 100x1": TARGET_ENQUEUE_PER_S,
    "enqueue 1x100": TARGET_ENQUEUE_PER_S,
    "claim+ack max=1": TARGET_CLAIM_ACK_PER_S,
    "claim+ack max=100": TARGET_CLAIM_ACK_PER_S,
}


def markdown(depths: list[DepthResult], rss: dict[str, Any], snap: dict[str, Any], ops: int) -> str:
    lines = [
        "| workload | jobs queued | median | min .. max | median, CPU time | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in WORKLOADS:
        for d in depths:
            rates = d.rates(name)
            lines.append(
                f"| {name} | {d.depth:,} | {fmt_rate(statistics.median(rates))} | "
                f"{spread(rates, fmt_rate)} | {fmt_rate(statistics.median(d.cpu_rates(name)))} | "
                f">= {TARGETS[name] // 1000}k/s |"
            )
    for d in depths:
        enc = [p["claim+ack max=1"].encode_ns / max(1, p["claim+ack max=1"].jobs) for p in d.passes]
        gc_share = [g / t for g, t in zip(d.gc_s, d.pass_s, strict=True)]
        lines.append(
            f"| cyclic GC, share of a pass | {d.depth:,} | {statistics.median(gc_share):.0%} | "
            f"{spread(gc_share, lambda x: f'{x:.0%}')} | | |"
        )
        lines.append(
            f"| encoding an ack (outside the rates) | {d.depth:,} | "
            f"{statistics.median(enc) / 1000:.2f} us | | | |"
        )
    total_mb = rss["rss_after_kib"] / 1024
    lines.append(
        f"| RSS per queued {PAYLOAD_BYTES} B job | {rss['jobs']:,} | "
        f"{rss['bytes_per_job']:,.0f} B | | process {total_mb:,.0f} MB | "
        f"<= {TARGET_RSS_MB_1M} MB at 1M |"
    )
    secs = {"snapshot_s": "snapshot_bytes", "restore_s": "Machine.restore"}
    secs["restore_gc_off_s"] = "Machine.restore, gc disabled"
    for key, label in secs.items():
        xs = snap[key]
        target = f"<= {TARGET_SNAPSHOT_S:.0f} s" if key == "snapshot_s" else ""
        lines.append(
            f"| {label} | {snap['jobs']:,} | {statistics.median(xs):.2f} s | "
            f"{spread(xs, lambda x: f'{x:.2f} s')} | | {target} |"
        )
    lines.append(
        f"| snapshot size | {snap['jobs']:,} | {snap['bytes'] / 2**20:,.1f} MiB | "
        f"{snap['bytes'] / max(1, snap['jobs']):.0f} B/job | | |"
    )
    lines.append("")
    lines.append(
        f"Rates are jobs per second of wall time inside `apply_entry` ({ops:,} jobs per workload "
        f"and pass, median of {len(depths[0].passes)} passes); the CPU-time column divides by "
        "this thread's CPU time instead."
    )
    return "\n".join(lines)


def verdicts(depths: list[DepthResult], rss: dict[str, Any], snap: dict[str, Any]) -> list[str]:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = []
    for name in WORKLOADS:
        worst = min(depths, key=lambda d: d.median_rate(name))
        rate = worst.median_rate(name)
        out.append(
            f"- {name} >= {TARGETS[name]:,}/s: {met(rate >= TARGETS[name])} "
            f"(slowest median {rate:,.0f}/s, at {worst.depth:,} queued)"
        )
    total_mb = rss["rss_after_kib"] / 1024
    if rss["jobs"] >= 1_000_000:
        out.append(
            f"- 1M queued 100 B jobs <= {TARGET_RSS_MB_1M} MB RSS: "
            f"{met(total_mb <= TARGET_RSS_MB_1M)} ({total_mb:,.0f} MB for the whole process, "
            f"{rss['bytes_per_job']:,.0f} B per job)"
        )
    snap_s = statistics.median(snap["snapshot_s"])
    if snap["jobs"] >= 1_000_000:
        out.append(
            f"- snapshot of 1M jobs <= {TARGET_SNAPSHOT_S:.0f} s: "
            f"{met(snap_s <= TARGET_SNAPSHOT_S)} ({snap_s:.2f} s)"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small smoke run (< 20 s)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--depths", type=int, nargs="+", help="jobs queued beforehand")
    p.add_argument("--ops", type=int, help="jobs per workload per pass")
    p.add_argument("--chunk", type=int, default=10_000, help="jobs per workload per round")
    p.add_argument("--repeat", type=int, help="passes (the median is reported)")
    p.add_argument("--rss-jobs", type=int, help="jobs enqueued in the RSS subprocess")
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after filling (what a node would do after restoring a snapshot)",
    )
    p.add_argument("--groups", type=int, default=0, help="limits on, jobs over N groups")
    p.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    global GROUPS  # noqa: PLW0603 - one setting read by the workload builders
    GROUPS = args.groups
    if args.rss_child is not None:
        rss_child(args.rss_child)
        return 0
    depths = args.depths or ([10_000, 100_000] if args.quick else [10_000, 1_000_000])
    ops = args.ops or (10_000 if args.quick else 200_000)
    repeat = args.repeat or (1 if args.quick else 3)
    rss_jobs = args.rss_jobs or (100_000 if args.quick else 1_000_000)
    chunk = min(args.chunk, ops)
    if ops % BATCH or chunk % BATCH:
        p.error(f"--ops and --chunk must be multiples of {BATCH}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    gc_timer = GcTimer()
    results: list[DepthResult] = []
    machine: Machine | None = None
    for depth in depths:
        machine = None  # free the previous depth's machine first
        gc.collect()
        res, machine = run_depth(
            depth=depth,
            ops=ops,
            chunk=chunk,
            repeat=repeat,
            freeze=args.gc_freeze,
            gc_timer=gc_timer,
            log=log,
        )
        results.append(res)
    assert machine is not None
    log(f"snapshot/restore of {len(machine.jobs):,} jobs ...")
    snap = measure_snapshot(machine, repeat)
    machine = None
    gc.collect()
    log(f"RSS of {rss_jobs:,} jobs in a fresh process ...")
    rss = measure_rss(rss_jobs)

    print(markdown(results, rss, snap, ops))
    print()
    print("\n".join(verdicts(results, rss, snap)))
    if args.json:
        doc = {
            "started_utc": started,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "argv": sys.argv,
            "ops": ops,
            "chunk": chunk,
            "repeat": repeat,
            "gc_freeze": args.gc_freeze,
            "depths": [
                {
                    "depth": d.depth,
                    "fill_s": d.fill_s,
                    "rates": {n: d.rates(n) for n in WORKLOADS},
                    "cpu_rates": {n: d.cpu_rates(n) for n in WORKLOADS},
                    "median": {n: d.median_rate(n) for n in WORKLOADS},
                    "pass_s": d.pass_s,
                    "gc_s": d.gc_s,
                    "ack_encode_ns": [p["claim+ack max=1"].encode_ns for p in d.passes],
                }
                for d in results
            ],
            "rss": rss,
            "snapshot": snap,
            "verdicts": verdicts(results, rss, snap),
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
