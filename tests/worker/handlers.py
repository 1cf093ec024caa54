"""Handlers that `raftq worker tests.worker.handlers:worker` runs in the worker tests.

Each job's payload says how to behave and where to record what happened (``side``: a file
that every worker process appends lines to, atomically: ``<event> <job id> <attempt> <token>
<worker>``), so a test can count starts and completions across processes.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from raftq import Job, Retry, Worker

worker = Worker(wait_ms=500)


def record(event: str, job: Job) -> None:
    line = f"{event} {job.id} {job.attempt} {job.token} {job.worker}\n"
    fd = os.open(job.payload["side"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_side(path: str) -> list[tuple[str, int, int, int, str]]:
    """The lines of a side file as ``(event, job id, attempt, token, worker)``."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            event, job_id, attempt, token, name = line.split()
            out.append((event, int(job_id), int(attempt), int(token), name))
    return out


@worker.handler("flaky")
async def flaky(job: Job) -> dict[str, Any]:
    """Fails its first ``fail_times`` attempts: with an exception, or with ``Retry``."""
    p = job.payload
    if job.attempt <= p.get("fail_times", 0):
        if p.get("mode") == "retry":
            raise Retry(20, f"transient, attempt {job.attempt}")
        raise ConnectionError(f"transient failure on attempt {job.attempt}")
    record("done", job)
    return {"n": p["n"], "attempt": job.attempt, "token": job.token, "worker": job.worker}


@worker.handler("doomed")
def doomed(job: Job) -> str:
    """A sync handler that fails every attempt until the file ``fixed_if`` exists."""
    if os.path.exists(job.payload["fixed_if"]):
        record("done", job)
        return "fixed"
    raise ValueError(f"boom on attempt {job.attempt}")


async def _slow(job: Job) -> dict[str, Any]:
    """Records ``start``, sleeps ``sleep_ms[attempt - 1]`` (0 past the list), records
    ``end`` and returns who did it."""
    record("start", job)
    sleeps = job.payload.get("sleep_ms", [])
    await asyncio.sleep((sleeps[job.attempt - 1] if job.attempt <= len(sleeps) else 0) / 1000)
    record("end", job)
    return {"worker": job.worker, "attempt": job.attempt, "token": job.token}


for _queue in ("slow-kill", "slow-stop", "slow-term"):
    worker.add_handler(_queue, _slow)


@worker.handler("blocking")
def blocking(job: Job) -> str:
    """A sync handler that sleeps (in the worker's thread pool)."""
    record("start", job)
    time.sleep(job.payload["sleep_ms"] / 1000)
    record("end", job)
    return "slept"
