"""Typed tasks (``raftq.App``, ``@app.task``) against a real 3-node cluster: the example run
as its docstring says (`raftq worker examples.typed_tasks:app`, then the script), and an
app's worker in this process for validation, options, the sync twin and a foreign payload."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pydantic
import pytest

import raftq
from raftq.errors import JobDead
from tests.integration.cluster import Cluster
from tests.worker.conftest import REPO, Procs, nodes_of


def test_the_typed_tasks_example_runs(worker_cluster: Cluster, procs: Procs) -> None:
    procs.worker("tasks", worker_cluster, "examples.typed_tasks:app")
    env = {**os.environ, "RAFTQ_NODES": nodes_of(worker_cluster)}
    done = subprocess.run(
        [sys.executable, "examples/typed_tasks.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + procs.log("tasks")
    assert done.stdout.splitlines() == ["True True", "12.50 EUR"]


class Point(pydantic.BaseModel):
    x: int
    y: int


def _app(cluster: Cluster) -> raftq.App:
    app = raftq.App(nodes_of(cluster))

    @app.task(queue="typed.a", name="norm")
    async def norm(p: Point, scale: int = 1) -> Point:
        return Point(x=abs(p.x) * scale, y=abs(p.y) * scale)

    @app.task(queue="typed.a", name="add")
    def add(a: int, b: int, /, *rest: int) -> int:  # sync, sharing the queue of an async task
        return a + b + sum(rest)

    @app.task(queue="typed.s", name="echo", max_attempts=1)
    def echo(**fields: str) -> dict[str, str]:
        return fields

    return app


@asynccontextmanager
async def _working(app: raftq.App) -> AsyncIterator[None]:
    worker = app.worker(concurrency=4, wait_ms=200)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 15)
        await app.aclose()


async def test_an_apps_tasks_run_with_their_arguments_and_typed_results(
    worker_cluster: Cluster,
) -> None:
    app = _app(worker_cluster)
    norm, add, echo = (app.tasks[n] for n in ("norm", "add", "echo"))
    async with _working(app):
        h = await norm.enqueue(Point(x=-3, y=4), scale=2)
        assert await h.wait(10_000) == Point(x=6, y=8)  # the model, not its dict
        assert await (await add.enqueue(1, 2, 3, 4)).wait(10_000) == 10
        assert await (await echo.enqueue(a="1", b="2")).wait(10_000) == {"a": "1", "b": "2"}

        # Validated before anything is enqueued: a bad model, a bad int, a missing argument.
        before = (await app.client.queue("typed.a"))["totals"]["enqueued"]
        with pytest.raises(pydantic.ValidationError):
            await norm.enqueue({"x": "not a number", "y": 1})  # type: ignore[arg-type]
        with pytest.raises(pydantic.ValidationError):
            await add.enqueue(1, "two")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="missing a required argument"):
            await norm.enqueue()  # type: ignore[call-arg]
        assert (await app.client.queue("typed.a"))["totals"]["enqueued"] == before

        # Options: a key makes the second enqueue the same job; a delay holds it.
        keyed = add.options(key="k-1", delay_ms=2_000)  # still delayed when looked at
        first, second = await keyed.enqueue(5, 5), await keyed.enqueue(5, 5)
        assert first.id == second.id and (await first.job.status())["state"] == "delayed"
        assert await second.wait(10_000) == 10

        # The sync twin (its own client thread), with depends_on.
        parent = await add.enqueue(1, 1)
        child = await asyncio.to_thread(
            lambda: norm.options(depends_on=[parent.id]).enqueue_sync(Point(x=1, y=-1))
        )
        assert await asyncio.to_thread(child.wait, 10_000) == Point(x=1, y=1)

        # A job on a task queue that names no task of this app fails with the reason.
        foreign = await app.client.enqueue("typed.s", {"task": "nope"}, max_attempts=1)
        with pytest.raises(JobDead, match="has no task 'nope'"):
            await app.client.job(foreign).wait(10_000)


def test_an_app_refuses_what_it_cannot_use(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="needs nodes, config or client"):
        raftq.App()
    app = raftq.App("127.0.0.1:1")

    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        app.task(name="t")(lambda: None)
