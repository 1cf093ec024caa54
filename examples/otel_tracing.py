"""One trace from a request to the job's run: OpenTelemetry with typed tasks.

    pip install 'raftq[otel]' opentelemetry-sdk
    python examples/otel_tracing.py

Against the nodes in RAFTQ_NODES (default: the three of `make run`). It sets up the
OpenTelemetry SDK with an exporter that prints one line per finished span, handles a
"request" that enqueues a task, and runs the task in an in-process worker: the task's
`create` and `send` spans and the worker's `process` span are all in the request's trace.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import raftq
from raftq.testing import running

NODES = os.environ.get("RAFTQ_NODES", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")


class PrintSpans(SpanExporter):
    """One line per span: trace id, span name, kind."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for s in spans:
            assert s.context is not None
            print(f"trace {s.context.trace_id:032x}  {s.name:<24} {s.kind.name}")
        return SpanExportResult.SUCCESS


# --8<-- [start:otel]
provider = TracerProvider()  # your application's SDK setup (an OTLP exporter in production)
provider.add_span_processor(SimpleSpanProcessor(PrintSpans()))
trace.set_tracer_provider(provider)

app = raftq.App(NODES)


@app.task(queue="reports")
async def build_report(customer: int) -> str:
    return f"report for customer {customer}"


async def main() -> None:
    with trace.get_tracer("shop").start_as_current_span("GET /reports/42"):
        handle = await build_report.enqueue(42)  # the job carries this trace's context
    async with running(app.worker(wait_ms=200)):
        print(await handle.wait(10_000))  # the worker's span joins the request's trace
    await app.aclose()


# --8<-- [end:otel]


if __name__ == "__main__":
    asyncio.run(main())
