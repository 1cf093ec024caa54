"""A worker that sends emails (pretend: welcomes and reminders), for the "emails" queue.

Run it against a cluster (``make run`` starts one on 127.0.0.1:7001..7003), either with the
command line, from the repository root:

    raftq worker examples.worker:send_email --queue emails --concurrency 4

or as a script:

    python examples/worker.py --nodes 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003

Ctrl-C (or SIGTERM) stops it gracefully. ``examples/producer.py`` enqueues the emails.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import raftq


# --8<-- [start:handler]
async def send_email(job: raftq.Job) -> dict[str, Any]:
    """Send one email (a welcome, or a reminder); the return value becomes the job's result."""
    to = job.payload["to"]
    kind = "reminder" if job.payload.get("reminder") else "welcome"
    if "@" not in to:
        # A plain exception fails this attempt: the job is retried with backoff, and after
        # max_attempts it goes to the dead letters with this message and a traceback.
        raise ValueError(f"not an email address: {to!r}")
    if job.payload.get("mailbox_busy") and job.attempt == 1:
        # Retry says when: here in 200 ms (the attempt still counts towards max_attempts).
        raise raftq.Retry(delay_ms=200, message="mailbox busy")
    job.logger.info("sending the %s email to %s", kind, to)
    await asyncio.sleep(0.01)  # the call to the mail service
    # The fencing token identifies this delivery: a mail service that remembers the highest
    # token per message refuses a late duplicate from a worker whose lease expired.
    return {"to": to, "message_id": f"{kind}-{job.id}-{job.token}"}


# --8<-- [end:handler]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    # The application configures logging; raftq only logs (one line per job outcome).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # --8<-- [start:script]
    worker = raftq.Worker(args.nodes, concurrency=args.concurrency)
    worker.add_handler("emails", send_email)
    worker.run_forever()  # until Ctrl-C / SIGTERM, then a graceful stop
    # --8<-- [end:script]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
