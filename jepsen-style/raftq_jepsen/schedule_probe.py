"""The schedule of a run: put at the start of the workload, paused when it ends, its jobs
collected before the drain into ``schedules.json`` (judged by ``checker.schedules``).

The schedule fires into its own queue (``QUEUE``), which no workload process claims from, so
the workload's checkers never see its jobs; the collector claims them all (recording each id),
reads each job's ``fire_ms`` (``GET /v1/jobs/{id}``) and acks it, so the drain that follows
finds the queue empty. None of these requests are part of the history.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from raftq_jepsen.workload import NodeRef

__all__ = ["CATCHUP_MS", "EVERY_MS", "NAME", "QUEUE", "ScheduleProbe"]

NAME = "jepsen-tick"
QUEUE = "jepsen-schedule"
EVERY_MS = 500
CATCHUP_MS = 30_000
_COLLECT_FOR_S = 30.0  # collecting every job of the probe, at most
_TRY_FOR_S = 30.0


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    try:
        async with session.request(
            method, url, json=body, timeout=aiohttp.ClientTimeout(total=5, connect=1)
        ) as r:
            return r.status, await r.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return 0, None


class ScheduleProbe:
    """The run's schedule (``record`` becomes ``schedules.json``)."""

    def __init__(self, session: aiohttp.ClientSession, nodes: list[NodeRef]) -> None:
        self.session = session
        self.nodes = nodes
        self.record: dict[str, Any] = {
            "name": NAME,
            "queue": QUEUE,
            "every_ms": EVERY_MS,
            "catchup_ms": CATCHUP_MS,
            "collected": False,
        }

    async def _until_ok(self, method: str, path: str, body: Any = None) -> Any:
        """Ask each node in turn until one answers 2xx (``None`` after ``_TRY_FOR_S``)."""
        deadline = time.monotonic() + _TRY_FOR_S
        i = 0
        while time.monotonic() < deadline:
            node = self.nodes[i % len(self.nodes)]
            status, answer = await _request(self.session, method, node.url + path, body)
            if 200 <= status < 300:
                return answer
            i += 1
            await asyncio.sleep(0.2)
        return None

    async def start(self, wall_start_ms: float) -> None:
        body = {"queue": QUEUE, "every_ms": EVERY_MS, "catchup_ms": CATCHUP_MS, "payload": NAME}
        answer = await self._until_ok("PUT", f"/v1/schedules/{NAME}", body)
        self.record["wall_start_ms"] = wall_start_ms
        if answer is not None:
            self.record["created_ms"] = int(answer["created_ms"])

    async def pause(self) -> None:
        if "created_ms" not in self.record:
            return
        if await self._until_ok("POST", f"/v1/schedules/{NAME}/pause", {}) is not None:
            self.record["end_ms"] = int(time.time() * 1000)

    async def collect(self) -> dict[str, Any]:
        """Claim every job of ``QUEUE``, read its ``fire_ms``, ack it; the record. When that
        fails, the queue is purged (best effort), so the drain does not wait on it."""
        if "end_ms" not in self.record:
            await self.pause()  # after the heal: a leader is likelier now
        if "end_ms" not in self.record:
            return self.record
        if not await self._collect():
            await self._until_ok("POST", f"/v1/queues/{QUEUE}/purge", {})
        return self.record

    async def _collect(self) -> bool:
        """False when the jobs cannot all be collected: no leader for ``_TRY_FOR_S``, past
        ``_COLLECT_FOR_S`` in all, or a claim that hands out again only jobs already collected
        (a broken build leases without replicating, and its acks are refused: without this the
        loop would never end)."""
        fires: list[dict[str, int | None]] = []
        seen: set[int] = set()
        claim = {"worker": "schedule-collector", "max": 1000, "lease_ms": 60_000}
        deadline = time.monotonic() + _COLLECT_FOR_S
        while True:
            answer = await self._until_ok("POST", f"/v1/queues/{QUEUE}/claim", claim)
            if answer is None or time.monotonic() > deadline:
                return False  # not collected: the checker says so
            jobs = answer["jobs"]
            if not jobs:
                break
            if all(int(job["id"]) in seen for job in jobs):
                return False
            for job in jobs:
                if time.monotonic() > deadline:  # each refused ack costs a whole _TRY_FOR_S
                    return False
                if int(job["id"]) in seen:
                    continue
                seen.add(int(job["id"]))
                shown = await self._until_ok("GET", f"/v1/jobs/{job['id']}")
                if shown is None:
                    return False
                # A job of the schedule's queue always carries its slot; a build whose replicas
                # diverged may answer with another job's record (checker: not_fired).
                fire_ms = shown.get("fire_ms")
                fire_ms = None if fire_ms is None else int(fire_ms)
                fires.append({"id": int(job["id"]), "fire_ms": fire_ms})
                ack = {"token": job["token"]}
                await self._until_ok("POST", f"/v1/jobs/{job['id']}/ack", ack)
        self.record["fires"] = fires
        self.record["collected"] = True
        return True
