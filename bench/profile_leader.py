"""Where the leader's time goes: py-spy on the leader node while `raftq bench`'s enqueue and
claim+ack phases run against a fresh 3-node cluster.

    flock /tmp/bench.lock .venv/bin/python bench/profile_leader.py [--n 20000] [--no-coalesce]
        [--claim-batch 10] [--jobs-queued N] [--out DIR]

``--jobs-queued N`` preloads N jobs in another queue first (as ``raftq bench --jobs-queued``)
and waits until every node has applied them.

Writes DIR/{enqueue,process}.txt (py-spy's collapsed stacks, all threads, idle excluded) and
prints, per phase, the share of samples by thread and the functions with the most inclusive
and self samples. Needs py-spy (`pip install py-spy`) and ptrace rights.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raftq import runloop
from raftq.bench.cluster import LocalCluster
from raftq.bench.runner import _preload
from raftq.bench.workload import Workload, run_enqueue, run_process


def summarize(path: Path, top: int) -> str:
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n
        seen = set()
        for fr in frames[1:]:
            name = fr.split(" (")[0] + " (" + fr.split(" (")[-1].split(":")[0].split("/")[-1]
            if name not in seen:
                incl[name] += n
                seen.add(name)
        last = frames[-1]
        self_[last.split(" (")[0] + " (" + last.split(" (")[-1].split(":")[0].split("/")[-1]] += n
    out = [f"{total} samples"]
    out.append("by thread: " + ", ".join(f"{t} {c / total:.0%}" for t, c in threads.most_common(6)))
    out.append("inclusive:")
    out += [f"  {c / total:6.1%}  {name}" for name, c in incl.most_common(top)]
    out.append("self:")
    out += [f"  {c / total:6.1%}  {name}" for name, c in self_.most_common(top)]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--claim-batch", type=int, default=10)
    ap.add_argument("--no-coalesce", action="store_true")
    ap.add_argument("--jobs-queued", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/raftq-profile"))
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    w = replace(Workload(n=args.n, claim_batch=args.claim_batch), coalesce=not args.no_coalesce)
    with LocalCluster(3) as cluster:
        leader = cluster.wait_ready()
        if args.jobs_queued:
            runloop.run(_preload(cluster.urls, args.jobs_queued, w.payload_bytes))
            print(f"caught up {cluster.wait_caught_up():.1f} s after the preload")
            leader = cluster.wait_ready()
        pid = cluster.procs[leader].pid
        for phase in ("enqueue", "process"):
            raw = args.out / f"{phase}.txt"
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "200",
                    "--threads",
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            fn = run_enqueue if phase == "enqueue" else run_process
            res = runloop.run(fn(cluster.urls, "prof", w))
            spy.send_signal(2)
            spy.wait(30)
            print(f"== {phase}: {res['rate']:.0f}/s (leader {leader})")
            print(summarize(raw, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
