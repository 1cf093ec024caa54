"""Where one claim's time goes, hop by hop: an HTTP claim against a claim on the worker stream,
one at a time, on a fresh local 3-node cluster (fsync on), in the same run.

    flock /tmp/bench.lock .venv/bin/python bench/claim_budget.py [--n 400] [--load N]
        [--json FILE]

For each way, ``--n`` claims of one job, one after the other, against the leader (the first
ones dropped as warm-up), with every job acked only after the last claim, so that the leader's
log entries of the measured window are the claims' alone. It reports:

- the client's round trip (HTTP: ``Client.claim``; stream: ``add_credit(1)`` until the job is
  pushed), mean, p50 and p99;
- the leader's part, from its ``/metrics`` before and after the window (exact means, as the
  histograms' sums and counts are): the wait for a place in the group-commit pipeline, and the
  commit (from the entry's proposal until the event loop has the results: its tick thread
  picking it up, the leader's journal write, a follower's write and answer, the apply);
- each node's journal sync (mean of ``raftq_raft_fsync_duration_seconds`` over the nodes);
- the rest of the round trip: the request or frame both ways, the server's handling around
  the commit (parsing, checks, rendering the jobs) and the client's.

A claim on the worker stream and over HTTP is the same replicated ``Claim``; what differs is
everything outside the commit.

``--load N``: the same, while the benchmark's claim+ack workload (4 ``raftq.worker.Worker``
on the stream, ``raftq bench``'s defaults) works through N jobs of another queue in the same
process: the probe's claims then share the leader's entries (and the two cores) with it, and
the leader's figures are those of every entry of the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raftq import runloop
from raftq.bench.cluster import LocalCluster
from raftq.bench.commits import CommitReading, read_commits
from raftq.bench.phases import Workload, make_payload
from raftq.bench.workload import run_process
from raftq.client import Client

_NAMES = {
    "wait": "raftq_raft_group_commit_wait_seconds",
    "commit": "raftq_raft_commit_duration_seconds",
    "fsync": "raftq_raft_fsync_duration_seconds",
    "commands": "raftq_raft_group_commit_batch_commands",
}
_WARMUP = 50


def mean_between(
    before: dict[str, CommitReading],
    after: dict[str, CommitReading],
    key: str,
    nodes: list[str],
) -> tuple[float | None, float]:
    """Mean of ``key`` over ``nodes`` between two readings, and how many observations."""
    total = count = 0.0
    for nid in nodes:
        for reading, sign in ((after[nid], 1), (before[nid], -1)):
            hist = reading.get(_NAMES[key])
            if hist is not None:
                total, count = total + sign * hist.total, count + sign * hist.count
    return (total / count if count else None), count


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def measure(
    cluster: LocalCluster, leader: str, way: str, n: int, load: int
) -> dict[str, Any]:
    queue = f"budget-{way}"
    address = cluster.api[leader]
    rtts: list[float] = []
    async with Client([address], coalesce=False) as client:
        await client.enqueue_many(queue, [{"payload": i} for i in range(n)])
        loaded = None
        if load:
            load_queue = f"load-{way}"
            w = Workload(n=load, n_paced=0)
            for start in range(0, load, 1000):  # the benchmark's payloads: its sink reads them
                batch = range(start, min(load, start + 1000))
                new = [{"payload": make_payload(i, w.payload_bytes)} for i in batch]
                await client.enqueue_many(load_queue, new)
            loaded = asyncio.create_task(run_process(cluster.urls, load_queue, w))
            await asyncio.sleep(1.0)  # the workers are at speed
        held: list[tuple[int, int]] = []
        stream = None
        if way == "stream":
            stream = await client.stream(queue, worker="budget", credit=0, lease_ms=120_000)
        readings: dict[str, dict[str, CommitReading]] = {}
        for i in range(n):
            if i == _WARMUP:
                readings["before"] = {nid: read_commits([cluster.api[nid]]) for nid in cluster.ids}
            t0 = time.perf_counter()
            if stream is None:
                jobs = await client.claim(queue, worker="budget", max=1, lease_ms=120_000)
            else:
                stream.add_credit(1)
                jobs = await stream.jobs(timeout_ms=5_000)
            t1 = time.perf_counter()
            assert len(jobs) == 1, f"claim {i}: {len(jobs)} jobs"
            if i >= _WARMUP:
                rtts.append(t1 - t0)
            held.append((jobs[0].id, jobs[0].token))
        readings["after"] = {nid: read_commits([cluster.api[nid]]) for nid in cluster.ids}
        target = stream if stream is not None else client
        await asyncio.gather(*(target.ack(job_id, token) for job_id, token in held))
        if stream is not None:
            await stream.close()
        load_report = None
        if loaded is not None:  # reported: a duplicate or a job left over is worth a look
            done = await loaded
            load_report = {k: done[k] for k in ("rate", "dups", "remaining")}
    before, after = readings["before"], readings["after"]
    wait, entries = mean_between(before, after, "wait", [leader])
    commit, _ = mean_between(before, after, "commit", [leader])
    commands, _ = mean_between(before, after, "commands", [leader])
    fsync, syncs = mean_between(before, after, "fsync", cluster.ids)
    rtt_mean = statistics.fmean(rtts)
    rest = rtt_mean - (wait or 0.0) - (commit or 0.0)
    rtts.sort()
    return {
        "way": way,
        "claims": len(rtts),
        "entries": entries,
        "commands_per_entry": None if commands is None else round(commands, 2),
        "round_trip_mean_ms": ms(rtt_mean),
        "round_trip_p50_ms": ms(rtts[len(rtts) // 2]),
        "round_trip_p99_ms": ms(rtts[int(len(rtts) * 0.99) - 1]),
        "pipeline_wait_mean_ms": ms(wait),
        "commit_mean_ms": ms(commit),
        "journal_sync_mean_ms": ms(fsync),
        "journal_syncs": syncs,
        "outside_the_commit_mean_ms": ms(rest),
        "load": load_report,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="claims per way (the first 50: warm-up)")
    ap.add_argument("--load", type=int, default=0, help="claim+ack jobs worked meanwhile")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    if args.n <= _WARMUP:
        ap.error(f"--n must be more than {_WARMUP}")
    results = []
    with LocalCluster(3) as cluster:
        leader = cluster.wait_ready()
        for way in ("http", "stream"):
            results.append(runloop.run(measure(cluster, leader, way, args.n, args.load)))
    rows = [
        ("claims measured", "claims"),
        ("log entries (commands each)", "entries"),
        ("client round trip, mean ms", "round_trip_mean_ms"),
        ("client round trip, p50 ms", "round_trip_p50_ms"),
        ("client round trip, p99 ms", "round_trip_p99_ms"),
        ("leader: wait for the pipeline, mean ms", "pipeline_wait_mean_ms"),
        ("leader: proposal to results (commit), mean ms", "commit_mean_ms"),
        ("  of which each node's journal sync, mean ms", "journal_sync_mean_ms"),
        (
            "outside the commit (request, frames, server, client), mean ms",
            "outside_the_commit_mean_ms",
        ),
    ]
    print(f"{'':64} {'HTTP claim':>12} {'stream':>12}")
    for label, key in rows:
        values = [r[key] for r in results]
        if key == "entries":
            values = [f"{r['entries']:.0f} ({r['commands_per_entry']})" for r in results]
        print(f"{label:64} " + " ".join(f"{v!s:>12}" for v in values))
    for r in results:
        if r["load"] is not None:
            load = r["load"]
            print(
                f"load during the {r['way']} claims: {load['rate']:,.0f} jobs/s, "
                f"{load['dups']} duplicates, {load['remaining']} left in its queue"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
