"""``raftq bench``: the throughput/latency benchmark on a fresh local cluster (see
``raftq.bench`` and ``docs/benchmarks.md``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from raftq.cli.common import Parser, UsageError, non_negative_int, positive_int, prefetch_arg

__all__ = ["add_bench_command"]


def add_bench_command(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser]
) -> None:
    """Add ``raftq bench`` to ``raftq``'s parser."""
    p = commands.add_parser(
        "bench",
        parents=list(parents),
        help="benchmark a fresh local cluster (and, with --peers, NATS/RabbitMQ/arq)",
        description="Start a local cluster of real `raftq serve` processes (fsync on by "
        "default) in a temporary directory and measure it: "
        "enqueue N jobs each confirmed (up to --window in flight), 4 workers claim+ack them, "
        "both at once (mixed), then a producer paced at --rate for end-to-end latency. "
        "Reports elections seen during the run. Takes /tmp/bench.lock while raftq runs.",
    )
    p.add_argument("--n", type=positive_int, default=20_000, help="jobs per phase (20000)")
    p.add_argument("--n-paced", type=positive_int, default=3_000, help="paced jobs (3000)")
    p.add_argument("--rate", type=positive_int, default=500, help="paced jobs/s (500)")
    p.add_argument("--window", type=positive_int, default=1_000, help="unconfirmed enqueues (1000)")
    p.add_argument("--workers", type=positive_int, default=4, help="worker coroutines (4)")
    p.add_argument("--claim-batch", type=positive_int, default=10, help="claim max (10)")
    p.add_argument(
        "--worker",
        choices=["raftq", "loop"],
        default="raftq",
        help="who claims and acks in the process/mixed/paced phases: raftq.worker.Worker "
        "(one per worker, concurrency and batch = --claim-batch; the default) or the "
        "benchmark's hand-written loop (acks pipelined with the next claim)",
    )
    p.add_argument(
        "--prefetch",
        type=prefetch_arg,
        default="auto",
        metavar="N|auto",
        help="raftq.worker.Worker's prefetch: jobs each worker claims ahead of its free slots, "
        "so that several claims are in flight while the queue has a backlog (auto, the "
        "Worker's default)",
    )
    p.add_argument(
        "--http-worker",
        action="store_true",
        help="raftq.worker.Worker claims over HTTP long-polls (default: the worker stream)",
    )
    p.add_argument("--payload-bytes", type=positive_int, default=100, help="payload size (100)")
    p.add_argument("--nodes", type=positive_int, default=3, help="cluster size (3)")
    p.add_argument("--fsync", choices=["always", "off"], default="always", help="[raft] fsync")
    p.add_argument(
        "--jobs-queued",
        type=non_negative_int,
        default=0,
        help="jobs preloaded into another queue before measuring (0)",
    )
    p.add_argument(
        "--no-coalesce",
        action="store_true",
        help="one HTTP request per enqueue and per ack (the client's coalescing off)",
    )
    p.add_argument(
        "--levers",
        action="store_true",
        help="first measure enqueue and claim+ack with the client levers off, then on",
    )
    p.add_argument(
        "--levers-n", type=positive_int, default=2_000, help="jobs per lever measurement (2000)"
    )
    p.add_argument(
        "--peers",
        nargs="?",
        const="nats_r3,rmq_quorum,arq",
        default=None,
        metavar="LIST",
        help="also run the same workload on these peers, installing them if missing "
        "(default nats_r3,rmq_quorum,arq) and print raftq's ratio to each",
    )
    p.add_argument(
        "--fsync-off-row",
        action="store_true",
        help="then measure the phases again on a fresh cluster with fsync off: the like-for-like "
        "row beside peers that do not sync each message (NATS)",
    )
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")
    p.add_argument("--no-lock", action="store_true", help="do not take /tmp/bench.lock")
    p.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from raftq.bench.peers.run import PEERS, unknown_peers  # noqa: PLC0415
    from raftq.bench.runner import BenchOptions, format_report, run_bench  # noqa: PLC0415
    from raftq.bench.workload import Workload  # noqa: PLC0415

    if args.payload_bytes < 16:
        raise UsageError("--payload-bytes must be at least 16 (timestamp and sequence number)")
    peers: tuple[str, ...] = ()
    if args.peers is not None:
        peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
        if not peers:
            raise UsageError("--peers: no configuration named")
        if unknown := unknown_peers(list(peers)):
            raise UsageError(f"--peers: unknown {', '.join(unknown)} (known: {', '.join(PEERS)})")
    if args.json is not None and not args.json.parent.is_dir():
        raise UsageError(f"--json: no directory {args.json.parent}")
    workload = Workload(
        n=args.n,
        n_paced=args.n_paced,
        rate=args.rate,
        window=args.window,
        workers=args.workers,
        claim_batch=args.claim_batch,
        payload_bytes=args.payload_bytes,
        coalesce=not args.no_coalesce,
        worker=args.worker,
        prefetch=args.prefetch,
        stream=not args.http_worker,
    )
    opts = BenchOptions(
        workload=workload,
        nodes=args.nodes,
        fsync=args.fsync == "always",
        jobs_queued=args.jobs_queued,
        levers=args.levers,
        levers_n=args.levers_n,
        peers=peers,
        lock=not args.no_lock,
        fsync_off_row=args.fsync_off_row,
    )
    result = run_bench(opts)
    print(format_report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"results written to {args.json}", file=sys.stderr)
    return 0
