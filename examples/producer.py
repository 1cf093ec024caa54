"""Enqueue welcome emails and wait for their results.

    python examples/producer.py ada@example.com grace@example.com

Each address gets one job in the "emails" queue, keyed by the address (enqueueing the same
address again within the queue's dedup window returns the same job instead of a second
email), and a reminder delayed by ``--reminder-delay-ms`` at a lower priority. It prints one
JSON line per job and exits 1 if a job failed. ``examples/worker.py`` does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import raftq
from raftq.errors import JobFailed


# --8<-- [start:produce]
async def produce(nodes: str, addresses: list[str], reminder_delay_ms: int) -> int:
    failed = 0
    async with raftq.Client(nodes) as client:
        handles = []
        for to in addresses:
            # Priority 0..9 (9 first); the key makes the enqueue idempotent.
            welcome = await client.enqueue_job(
                "emails", {"to": to}, priority=7, key=f"welcome:{to}", max_attempts=3
            )
            reminder = await client.enqueue_job(
                "emails",
                {"to": to, "reminder": True},
                priority=2,
                delay_ms=reminder_delay_ms,  # not claimable before that
                key=f"reminder:{to}",
            )
            handles += [(to, "welcome", welcome), (to, "reminder", reminder)]
        for to, kind, handle in handles:
            try:
                result = await handle.wait(timeout_ms=30_000)
            except JobFailed as e:  # JobDead or JobCancelled: the recorded error
                failed += 1
                print(json.dumps({"id": handle.id, "to": to, "kind": kind, "error": e.error}))
            else:
                print(json.dumps({"id": handle.id, "to": to, "kind": kind, "result": result}))
    return failed


# --8<-- [end:produce]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addresses", nargs="+", metavar="EMAIL")
    parser.add_argument("--nodes", default="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    parser.add_argument("--reminder-delay-ms", type=int, default=1_000)
    args = parser.parse_args(argv)
    failed = asyncio.run(produce(args.nodes, args.addresses, args.reminder_delay_ms))
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
