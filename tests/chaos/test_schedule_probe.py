"""The run's schedule probe (``raftq_jepsen.schedule_probe``) against a node that answers as a
broken build can: its collection records what it read and leaves the judging to the checker,
instead of ending the run without a verdict."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from raftq_jepsen.checker.schedules import check_schedules
from raftq_jepsen.client import new_session
from raftq_jepsen.schedule_probe import EVERY_MS, QUEUE, ScheduleProbe
from raftq_jepsen.workload import NodeRef

# The probe pauses the schedule at the machine's time (end_ms): made a few slots before it.
CREATED_MS = (int(time.time() * 1000) // EVERY_MS - 10) * EVERY_MS
ACKED = web.AppKey("acked", list[int])


def _node(records: dict[int, dict[str, Any]]) -> web.Application:
    """A node whose schedule queue holds ``records``' jobs: one claim hands them all out."""
    pending = list(records)
    acked: list[int] = []

    async def claim(request: web.Request) -> web.Response:
        jobs = [{"id": i, "token": 10 + i} for i in pending]
        pending.clear()
        return web.json_response({"jobs": jobs})

    async def show(request: web.Request) -> web.Response:
        return web.json_response(records[int(request.match_info["id"])])

    async def ack(request: web.Request) -> web.Response:
        acked.append(int(request.match_info["id"]))
        return web.json_response({})

    async def pause(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app[ACKED] = acked
    app.router.add_post(f"/v1/queues/{QUEUE}/claim", claim)
    app.router.add_get("/v1/jobs/{id}", show)
    app.router.add_post("/v1/jobs/{id}/ack", ack)
    app.router.add_post("/v1/schedules/{name}/pause", pause)
    return app


async def _collect(app: web.Application) -> dict[str, Any]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with new_session("t") as session:
            probe = ScheduleProbe(session, [NodeRef("n1", f"http://127.0.0.1:{port}")])
            probe.record |= {"created_ms": CREATED_MS, "wall_start_ms": CREATED_MS}
            return await probe.collect()
    finally:
        await runner.cleanup()


def test_a_job_whose_record_has_no_slot_is_recorded_and_judged_not_a_crash() -> None:
    """A replica that diverged answers ``GET /v1/jobs/{id}`` with another job's record (no
    ``fire_ms``): the probe used to raise ``TypeError`` there, and the run ended without a
    verdict (a CI run of the ``install-stale-snapshot`` control)."""
    slot = CREATED_MS + EVERY_MS
    records = {
        1: {"id": 1, "queue": QUEUE, "fire_ms": slot},
        2: {"id": 2, "queue": "q1", "fire_ms": None},
    }
    app = _node(records)
    record = asyncio.run(_collect(app))
    assert record["collected"] is True
    assert record["fires"] == [{"id": 1, "fire_ms": slot}, {"id": 2, "fire_ms": None}]
    assert app[ACKED] == [1, 2]  # the queue is left empty for the drain
    result = check_schedules(record, [])
    assert result["valid"] is False
    assert result["violations"]["not_fired"] == 1
