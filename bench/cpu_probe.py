"""CPU per job of every process of a local cluster, in `raftq bench`'s enqueue and claim+ack
phases: where the two cores go.

    flock /tmp/bench.lock .venv/bin/python bench/cpu_probe.py [--workers 24] [--worker loop]
        [--prefetch 0] [--n 12000] [--spy FILE]

Starts a fresh 3-node `LocalCluster` (fsync on), enqueues ``--n`` jobs and then claims and acks
them with the benchmark's workers (``--worker raftq``: `raftq.worker.Worker`; ``loop``: the
hand-written loop), reading each node's CPU time from /proc and this process's own around each
phase. Prints per phase: jobs/s, each process's CPU share (cores), and the leader's CPU per
job in µs (its share / jobs per second). ``--spy FILE`` records the leader with py-spy during
the claim+ack phase (raw format; `bench/profile_leader.py`'s `summarize` reads it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raftq import runloop
from raftq.bench.cluster import LocalCluster
from raftq.bench.workload import Workload, run_enqueue, run_process


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=24)
    ap.add_argument("--worker", choices=["raftq", "loop"], default="loop")
    ap.add_argument("--prefetch", type=int, default=0)
    ap.add_argument("--n", type=int, default=12_000)
    ap.add_argument("--spy", type=Path, help="py-spy raw profile of the leader, claim+ack")
    args = ap.parse_args()
    w = replace(
        Workload(n=args.n, claim_batch=10, workers=args.workers),
        worker=args.worker,
        prefetch=args.prefetch,
    )
    with LocalCluster(3) as cluster:
        leader = cluster.wait_ready()
        pids = {nid: proc.pid for nid, proc in cluster.procs.items()}
        for phase, run in (("enqueue", run_enqueue), ("claim+ack", run_process)):
            spy = None
            if args.spy is not None and phase == "claim+ack":
                spy = subprocess.Popen(
                    ["py-spy", "record", "--pid", str(pids[leader]), "--rate", "200",
                     "--threads", "--format", "raw", "--output", str(args.spy), "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1.0)
            before = {nid: cpu_seconds(pid) for nid, pid in pids.items()}
            own, t0 = time.process_time(), time.perf_counter()
            result = runloop.run(run(cluster.urls, "probe", w))
            elapsed = time.perf_counter() - t0
            share = {nid: (cpu_seconds(pid) - before[nid]) / elapsed for nid, pid in pids.items()}
            share["bench"] = (time.process_time() - own) / elapsed
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
            rate = result["rate"]
            shares = " ".join(f"{k}{'*' if k == leader else ''}={v:.2f}" for k, v in share.items())
            print(
                f"{phase}: {rate:,.0f} jobs/s; CPU (cores): {shares}; "
                f"leader {share[leader] / rate * 1e6:.0f} µs/job"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
