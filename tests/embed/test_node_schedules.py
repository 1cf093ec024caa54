"""An embedded ``raftq.Node`` runs the leader's firing task: a schedule set through the node
fires, shows its last and next fire, triggers, pauses and is deleted, all in-process; and a job
enqueued through the node with ``depends_on`` waits for its parent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftq import Node
from raftq.errors import Rejected
from tests.embed.conftest import make_config


async def test_an_embedded_node_fires_its_schedules(tmp_path: Path) -> None:
    async with Node(make_config(tmp_path, 1), "n1") as node:
        await node.wait_for_leader(10_000)
        put = await node.set_schedule("tick", "ticks", {"n": 1}, every_ms=100, overlap="skip")
        assert put["created"] is True and put["overlap"] == "skip"
        for _ in range(200):
            shown = await node.schedule("tick")
            if shown["fires"] + shown["skipped"] >= 3:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the schedule did not fire: {shown}")
        assert shown["fires"] == 1  # overlap skip: its first job was never claimed
        job = await node.get_job(shown["last_job_id"])
        assert (job["schedule"], job["fire_ms"], job["payload"]) == (
            "tick",
            shown["last_fire_ms"],
            {"n": 1},
        )
        await node.pause_schedule("tick")
        trig = await node.trigger_schedule("tick")
        assert (await node.get_job(trig["id"]))["fire_ms"] == trig["fire_ms"]
        await node.resume_schedule("tick")
        assert [s["name"] for s in await node.schedules()] == ["tick"]
        await node.delete_schedule("tick")
        with pytest.raises(Rejected) as gone:
            await node.schedule("tick")
        assert gone.value.status == 404
        with pytest.raises(Rejected, match="cron: must have 5 fields"):
            await node.set_schedule("bad", "q", 1, cron="* *")


async def test_an_embedded_node_enqueues_a_job_that_depends_on_another(tmp_path: Path) -> None:
    async with Node(make_config(tmp_path, 1), "n1") as node:
        await node.wait_for_leader(10_000)
        parent = await node.enqueue("q", "p")
        child = await node.enqueue("q", "c", depends_on=[parent])
        assert (await node.get_job(child))["state"] == "waiting"
        (job,) = await node.claim("q", worker="w", max=10)
        await node.ack(job.id, job.token, "done")
        (released,) = await node.claim("q", worker="w", max=10)
        assert (released.id, released.parents) == (child, {parent: "done"})
