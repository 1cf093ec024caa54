"""Periodic jobs: a heartbeat every second and a nightly report at 03:00 Berlin time.

    python examples/schedules.py

Creates (or replaces) the two schedules, waits until the heartbeat has fired ``--fires`` times,
pauses it, prints its last job (``fire_ms``: the slot it was made for) and both schedules, one
JSON line each. ``examples/worker.py``-style workers would take the
jobs from the ``heartbeats`` and ``reports`` queues.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import raftq


# --8<-- [start:schedules]
async def schedules(nodes: str, every_ms: int, fires: int) -> None:
    async with raftq.Client(nodes) as client:
        # One job every every_ms, slots on multiples of every_ms since the epoch. A slot missed
        # while the cluster had no leader fires late if within catchup_ms, else is skipped.
        await client.set_schedule(
            "heartbeat", "heartbeats", {"ping": True}, every_ms=every_ms, catchup_ms=60_000
        )
        # 5-field cron in a time zone; "skip": no new report while the last one still runs.
        nightly = await client.set_schedule(
            "nightly-report",
            "reports",
            {"report": "daily"},
            cron="0 3 * * *",
            tz="Europe/Berlin",
            overlap="skip",
        )
        print(json.dumps({"nightly_next_fire_ms": nightly["next_fire_ms"]}))
        while (await client.schedule("heartbeat"))["fires"] < fires:
            await asyncio.sleep(every_ms / 1000)
        await client.pause_schedule("heartbeat")  # slots while paused never fire
        shown = await client.schedule("heartbeat")
        # Each fire's job carries the schedule's name and its slot.
        job = await client.get_job(shown["last_job_id"])
        print(json.dumps({k: job[k] for k in ("id", "queue", "schedule", "fire_ms")}))
        for s in await client.schedules():
            print(json.dumps({k: s[k] for k in ("name", "paused", "fires", "next_fire_ms")}))


# --8<-- [end:schedules]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    parser.add_argument("--every-ms", type=int, default=1_000)
    parser.add_argument("--fires", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(schedules(args.nodes, args.every_ms, args.fires))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
