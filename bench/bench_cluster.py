"""Latency and throughput of a real 3-node raftq cluster on loopback (the settings check).

Starts three `raftq serve` processes with a generated config, then measures through
`raftq.client.Client` (msgpack, persistent connections):
- one request at a time: enqueue latency p50/p99 to the leader and through a follower;
- pipelined: N concurrent producers for a few seconds: enqueues/s, and how many commands
  shared one Raft entry (the leader's applied index counts entries);
- claim+ack one at a time on the leader;
- enqueue to a waiting worker: a worker long-polls, one job at a time is enqueued through
  the leader, latency from the enqueue call to the worker's claim returning the job.

    .venv/bin/python bench/bench_cluster.py [--seconds 5] [--concurrency 200] [--json FILE]
        [--fsync always|off]

Figures are ratios against each other on one noisy 2-core machine, not absolute claims.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raftq.client import Client
from tests.integration.cluster import Cluster


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


async def sequential(client: Client, n: int) -> list[float]:
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        await client.enqueue("lat", {"i": i, "pad": "x" * 80})
        lat.append((time.perf_counter() - t0) * 1000)
    return lat


async def claim_ack(client: Client, n: int) -> list[float]:
    for i in range(n):
        await client.enqueue("ca", {"i": i})
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        (job,) = await client.claim("ca", worker="bench")
        await client.ack(job.id, job.token)
        lat.append((time.perf_counter() - t0) * 1000)
    return lat


async def to_waiting_worker(producer: Client, worker: Client, n: int) -> list[float]:
    """End to end, one job at a time: the worker is already waiting in a long-poll claim when
    the job is enqueued (the bench's paced phase, without the load)."""
    lat = []
    for i in range(n):
        poll = asyncio.create_task(worker.claim("e2e", worker="bench", wait_ms=10_000))
        await asyncio.sleep(0.02)  # the claim's first, empty round commits; then it waits
        t0 = time.perf_counter()
        await producer.enqueue("e2e", {"i": i})
        (job,) = await poll
        lat.append((time.perf_counter() - t0) * 1000)
        await worker.ack(job.id, job.token)
    return lat


async def pipelined(client: Client, seconds: float, concurrency: int) -> int:
    done = 0
    stop = time.monotonic() + seconds

    async def producer() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await client.enqueue("thr", {"pad": "x" * 90})
            done += 1

    await asyncio.gather(*(producer() for _ in range(concurrency)))
    return done


async def run(cluster: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    leader = cluster.leader()
    follower = next(n for n in cluster.ids if n != leader)
    out: dict[str, Any] = {"leader": leader}
    async with Client([cluster.api[leader]]) as lc, Client([cluster.api[follower]]) as fc:
        await sequential(lc, 50)  # warm up connections and code paths
        lat = await sequential(lc, args.n)
        out["enqueue_leader_p50_ms"], out["enqueue_leader_p99_ms"] = pct(lat, 0.5), pct(lat, 0.99)
        lat = await sequential(fc, args.n)
        out["enqueue_follower_p50_ms"] = pct(lat, 0.5)
        out["enqueue_follower_p99_ms"] = pct(lat, 0.99)
        lat = await claim_ack(lc, args.n)
        out["claim_ack_leader_p50_ms"] = pct(lat, 0.5)
        async with Client([cluster.api[leader]]) as wc:
            lat = await to_waiting_worker(lc, wc, args.n)
        out["to_waiting_worker_p50_ms"] = pct(lat, 0.5)
        out["to_waiting_worker_p99_ms"] = pct(lat, 0.99)
        before = (await lc.cluster())["self"]["applied_index"]
        t0 = time.perf_counter()
        done = await pipelined(lc, args.seconds, args.concurrency)
        elapsed = time.perf_counter() - t0
        after = (await lc.cluster())["self"]["applied_index"]
        out["pipelined_enqueue_per_s"] = done / elapsed
        # Ticks (4/s) also take entries, so this slightly understates the sharing.
        out["commands_per_entry"] = done / max(1, after - before)
    return out


async def raft_submit(tmp: Path, n: int, extra_raft: str = "") -> dict[str, float]:
    """Latency of ``RaftNode.submit`` alone (no HTTP): n1 runs embedded in this process, n2
    and n3 as processes; the others are restarted until n1 leads."""
    from raftq.config import load_config  # noqa: PLC0415
    from raftq.core import Enqueue, NewJob  # noqa: PLC0415
    from raftq.node.embedded import Node  # noqa: PLC0415

    sys.setswitchinterval(0.0005)  # as raftq.node.process does for a node process
    cluster = Cluster.generate(tmp, extra_raft=extra_raft)
    cluster.start("n2", "n3")
    try:
        async with Node(load_config(cluster.config_path), "n1") as node:
            raft = node._raft
            deadline = time.monotonic() + 60
            while not raft.is_leader():
                if time.monotonic() > deadline:
                    raise RuntimeError("n1 never became the leader")
                leader = raft.leader_id()
                if leader in ("n2", "n3"):
                    cluster.kill(leader)
                    cluster.start(leader)
                await asyncio.sleep(1.0)
            lat = []
            for _ in range(n):
                cmd = Enqueue(now_ms=raft.now_ms(), queue="q", jobs=(NewJob(payload=b"x" * 100),))
                t0 = time.perf_counter()
                await raft.submit(cmd)
                lat.append((time.perf_counter() - t0) * 1000)
    finally:
        cluster.stop()
    return {"raft_submit_p50_ms": pct(lat, 0.5), "raft_submit_p99_ms": pct(lat, 0.99)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="requests per latency series")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--fsync", choices=["always", "off"], default="always", help="[raft] fsync")
    args = ap.parse_args()
    extra_raft = f'fsync = "{args.fsync}"'
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            cluster = Cluster.generate(Path(tmp), extra_raft=extra_raft)
            with cluster:
                cluster.wait_ready()
                runs.append(asyncio.run(run(cluster, args)))
        with tempfile.TemporaryDirectory() as tmp:
            runs[-1].update(asyncio.run(raft_submit(Path(tmp), args.n, extra_raft)))
    keys = [k for k in runs[0] if k != "leader"]
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(f"{'metric':<28} {'median':>10}   runs")
    for k in keys:
        print(f"{k:<28} {median[k]:>10.2f}   " + " ".join(f"{r[k]:.2f}" for r in runs))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median}, indent=2))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"fsync {args.fsync}, commit {commit.stdout.strip()}, {when}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
