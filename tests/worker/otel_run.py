"""Run by tests/worker/test_otel.py in a process of its own (a tracer provider is set once
per process): typed tasks and raw client calls against the nodes in argv[1], with the
OpenTelemetry SDK's in-memory exporter; prints the finished spans as JSON lines.
With argv[2] == "no-otel", the OpenTelemetry API cannot be imported (raftq must not care)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

if sys.argv[2:] == ["no-otel"]:
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import fails

import raftq
from raftq import otel
from raftq.errors import JobDead
from raftq.testing import running


async def main(nodes: str) -> None:
    app = raftq.App(nodes)

    @app.task(queue="otel.tasks", name="square", max_attempts=1)
    async def square(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n * n

    if sys.argv[2:] == ["no-otel"]:
        assert not otel.enabled()
        payload_seen = []
        handle = await square.enqueue(3)
        payload_seen.append((await app.client.get_job(handle.id))["payload"])
        async with running(app.worker(wait_ms=100)):
            assert await handle.wait(10_000) == 9
        print(json.dumps({"payload": payload_seen[0]}))
        await app.aclose()
        return

    # Only here: the no-otel run must not import them.
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert otel.enabled()

    with trace.get_tracer("app").start_as_current_span("request"):
        ok = await square.enqueue(4)
        bad = await square.enqueue(-1)
    async with running(app.worker(wait_ms=100)):
        assert await ok.wait(10_000) == 16
        with contextlib.suppress(JobDead):
            await bad.wait(10_000)
    raw = await app.client.enqueue("otel.raw", {"x": 1})
    (job,) = await app.client.claim("otel.raw", worker="w", wait_ms=5_000)
    await app.client.ack(job.id, job.token)
    await app.aclose()
    for s in exporter.get_finished_spans():
        print(
            json.dumps(
                {
                    "name": s.name,
                    "kind": s.kind.name,
                    "trace": format(s.context.trace_id, "032x"),
                    "span": format(s.context.span_id, "016x"),
                    "parent": None if s.parent is None else format(s.parent.span_id, "016x"),
                    "links": [format(link.context.span_id, "016x") for link in s.links],
                    "status": s.status.status_code.name,
                    "events": [e.name for e in s.events],
                    "attributes": dict(s.attributes or {}),
                    "ids": {"ok": ok.id, "bad": bad.id, "raw": raw},
                }
            )
        )


asyncio.run(main(sys.argv[1]))
