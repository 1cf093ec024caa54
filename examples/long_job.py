"""A long job that reports progress, saves checkpoints and resumes after a failure.

    python examples/long_job.py --pages 5 --fail-at 3

Enqueues one job "export N pages" and runs a ``raftq.Worker`` for it in this process. The
handler exports page by page; after each page it reports its progress and saves a checkpoint
(the next page to export), which ride on the heartbeats the worker sends anyway. The first
attempt fails at page ``--fail-at``; the second one resumes from the checkpoint instead of
starting over. Meanwhile the producer side watches ``handle.progress()``. Prints one JSON
line per progress seen, then ``{"result": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import raftq


# --8<-- [start:long_job]
async def export(job: raftq.Job) -> dict[str, Any]:
    """Export the pages, from where an earlier attempt left off (``job.checkpoint``)."""
    start = job.checkpoint["next_page"] if job.checkpoint else 0
    pages = job.payload["pages"]
    for page in range(start, pages):
        if job.attempt == 1 and page == job.payload["fail_at"]:
            raise ConnectionError(f"lost the connection at page {page}")
        await asyncio.sleep(0.2)  # export one page
        job.save_checkpoint({"next_page": page + 1})
        job.report_progress({"done": page + 1, "of": pages})
    return {"pages": pages, "resumed_at": start, "attempt": job.attempt}


async def export_and_watch(nodes: str, pages: int, fail_at: int) -> Any:
    async with raftq.Client(nodes) as client:
        worker = raftq.Worker(client=client, lease_ms=900, retry_in_ms=0)  # beats every 300 ms
        worker.add_handler("exports", export)
        running = asyncio.create_task(worker.run())
        handle = await client.enqueue_job("exports", {"pages": pages, "fail_at": fail_at})
        async for progress in handle.progress(interval_ms=100):  # until the job is finished
            print(json.dumps({"progress": progress}), flush=True)
        result = await handle.wait()
        worker.stop()
        await running
        return result


# --8<-- [end:long_job]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    parser.add_argument("--pages", type=int, default=5, help="pages to export (default: 5)")
    parser.add_argument("--fail-at", type=int, default=3, help="first attempt fails here")
    args = parser.parse_args(argv)
    result = asyncio.run(export_and_watch(args.nodes, args.pages, args.fail_at))
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
