"""The schedule routes over real ``RaftNode``s (in-memory network) with the leader's firing
task running on every node: validation (one clear line), fires visible on the jobs
(``schedule``, ``fire_ms``), GET with last and next fire from a follower, trigger,
pause/resume, delete, and the list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from raftq.service.scheduler import Scheduler


@pytest.fixture
def engine() -> str:
    return "raft"


@asynccontextmanager
async def _firing(nodes: dict[str, Any]) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for node in nodes.values():
            scheduler = Scheduler(node, 2000)
            scheduler.start()
            stack.push_async_callback(scheduler.stop)
        yield


_BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"queue": "q", "payload": 1}, "every_ms", "give every_ms or cron"),
    ({"queue": "q", "payload": 1, "every_ms": 50}, "every_ms", "must be in 100.."),
    ({"queue": "q", "payload": 1, "cron": "* * * *"}, "cron", "5 fields"),
    ({"queue": "q", "payload": 1, "cron": "99 * * * *"}, "cron", "not a valid cron"),
    ({"queue": "q", "payload": 1, "cron": "* * * * *", "tz": "Nowhere/X"}, "tz", "unknown"),
    ({"queue": "q", "payload": 1, "every_ms": 1000, "tz": "UTC"}, "tz", "goes with cron"),
    ({"queue": "q", "payload": 1, "every_ms": 1000, "overlap": "no"}, "overlap", "allow or"),
    ({"queue": "q q", "payload": 1, "every_ms": 1000}, "queue", "queue names match"),
    ({"queue": "q", "every_ms": 1000}, "payload", "required"),
]


async def test_put_refuses_bad_input_with_one_line(start: Any, err: Any) -> None:
    async with start() as h:
        for body, field, message in _BAD:
            reply = await h.request("PUT", "/v1/schedules/s", body)
            code, text = err(reply)
            assert (reply.status, code) == (400, "invalid"), reply.body
            assert text.startswith(field) and message in text and "\n" not in text, text
        assert (await h.get("/v1/schedules/s")).status == 404


async def test_a_schedule_fires_and_shows_last_and_next_fire(start: Any, err: Any) -> None:
    async with start(followers=2) as h, _firing(h.nodes):
        body = {"queue": "ticks", "every_ms": 100, "payload": {"k": 1}, "priority": 5}
        put = await h.request("PUT", "/v1/schedules/tick", body, node="n2")  # forwarded
        assert put.status == 200, put.body
        assert put.body["created"] is True and put.body["next_fire_ms"] is not None
        assert put.body["last_fire_ms"] is None

        async def fired() -> list[int]:
            got = await h.get("/v1/schedules/tick")
            return [got.body["fires"], got.body["last_fire_ms"] or 0]

        deadline = asyncio.get_running_loop().time() + 10
        while (await fired())[0] < 3:
            assert asyncio.get_running_loop().time() < deadline, "no fires"
            await asyncio.sleep(0.05)
        await h.caught_up()
        shown = (await h.get("/v1/schedules/tick", node="n3")).body
        assert shown["last_fire_ms"] % 100 == 0 and shown["next_fire_ms"] > shown["last_fire_ms"]
        job = (await h.get(f"/v1/jobs/{shown['last_job_id']}", node="n3")).body
        last = shown["last_fire_ms"]
        assert (job["schedule"], job["fire_ms"], job["queue"]) == ("tick", last, "ticks")
        assert (job["payload"], job["priority"]) == ({"k": 1}, 5)

        paused = await h.post("/v1/schedules/tick/pause")
        assert paused.body == {"name": "tick", "paused": True}
        await asyncio.sleep(0.1)  # a pass in flight when it paused may still land
        before = (await h.get("/v1/schedules/tick")).body
        assert before["next_fire_ms"] is None
        await asyncio.sleep(0.4)
        assert (await h.get("/v1/schedules/tick")).body["fires"] == before["fires"]

        trig = await h.post("/v1/schedules/tick/trigger", node="n2")
        assert trig.status == 200 and trig.body["name"] == "tick"
        job = (await h.get(f"/v1/jobs/{trig.body['id']}")).body
        assert (job["schedule"], job["fire_ms"]) == ("tick", trig.body["fire_ms"])

        assert (await h.post("/v1/schedules/tick/resume")).body["paused"] is False
        listing = (await h.get("/v1/schedules")).body["schedules"]
        assert [s["name"] for s in listing] == ["tick"]

        gone = await h.request("DELETE", "/v1/schedules/tick")
        assert gone.body == {"name": "tick", "deleted": True}
        missing = await h.post("/v1/schedules/tick/trigger")
        assert missing.status == 404 and err(missing)[0] == "not_found"
        # Every job a slot made has its own slot: none twice (the trigger's time may equal one).
        with h.node.read() as m:
            slots = [ms for job_id, (_, ms) in m.fired.items() if job_id != trig.body["id"]]
        assert len(slots) == len(set(slots))
