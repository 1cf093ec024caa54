"""Fan out N jobs, fan in one callback that sees every result.

    python examples/pipeline.py --n 10

Creates a batch of N jobs in "pipeline.square" (payload i) whose ``on_success`` callback is a
job of "pipeline.sum": the cluster enqueues it exactly once, in the same log entry as the ack
of the last square, and its claim carries every square's result as ``parents``. Then it works
both queues with a claim/ack loop (what ``raftq worker`` does for you) until the callback is
done, printing one JSON line per job, and last ``{"batch", "callback", "sum", "results"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import raftq
from raftq.errors import Rejected


# --8<-- [start:fan_out]
async def fan_out(client: raftq.Client, n: int) -> dict[str, Any]:
    """N squares as one batch; their sum as its on_success callback."""
    return await client.create_batch(
        [{"payload": i} for i in range(n)],
        queue="pipeline.square",
        on_success={"queue": "pipeline.sum", "payload": {"n": n}},
    )


async def work(client: raftq.Client) -> dict[str, Any]:
    """Work both queues until the callback is done; its claim holds every square."""
    while True:
        jobs = await client.claim(
            ["pipeline.square", "pipeline.sum"],
            worker=f"pipeline-{os.getpid()}",
            max=10,
            lease_ms=2_000,
            wait_ms=1_000,
        )
        for job in jobs:
            if job.queue == "pipeline.square":
                result: Any = job.payload * job.payload
            else:  # the fan-in: one result per square, by job id
                assert job.parents is not None
                result = {"sum": sum(job.parents.values()), "results": len(job.parents)}
            try:
                await client.ack(job.id, job.token, result)
            except Rejected as e:  # the lease ended first: the job comes back, done again
                print(json.dumps({"id": job.id, "redelivered": e.reason}), flush=True)
                continue
            print(json.dumps({"id": job.id, "queue": job.queue, "result": result}), flush=True)
            if job.queue == "pipeline.sum":
                return {"callback": job.id, **result}


# --8<-- [end:fan_out]


async def pipeline(nodes: str, n: int) -> dict[str, Any]:
    async with raftq.Client(nodes) as client:
        made = await fan_out(client, n)
        done = await work(client)
        return {"batch": made["batch"], **done}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    parser.add_argument("--n", type=int, default=10, help="jobs to fan out (default: 10)")
    args = parser.parse_args(argv)
    summary = asyncio.run(pipeline(args.nodes, args.n))
    print(json.dumps(summary), flush=True)
    return 0 if summary["sum"] == sum(i * i for i in range(args.n)) else 1


if __name__ == "__main__":
    sys.exit(main())
