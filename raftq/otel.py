"""OpenTelemetry spans of raftq's clients and workers, when the OpenTelemetry API is installed
(``pip install 'raftq[otel]'``; configure an SDK and exporter as usual). Without it, nothing
happens and nothing is imported.

What is traced, with the messaging semantic conventions (``messaging.system`` = ``raftq``,
``messaging.destination.name`` = the queue, ``messaging.message.id`` = the job id):

- ``Client.enqueue`` / ``enqueue_many``: a PRODUCER span ``send <queue>``
  (``messaging.operation.type`` = ``send``; ``messaging.batch.message_count`` for several);
- ``Client.claim``: a CLIENT span ``receive <queue>`` (``receive``, the number of jobs);
- ``Client.ack`` / ``nack`` / ``release``: a CLIENT span ``ack <queue>``, ``nack <queue>``,
  ``release <queue>`` (``settle``);
- ``raftq.Worker``: a CONSUMER span ``process <queue>`` around each handler run
  (``process``; ``raftq.job.attempt``), an error status and the exception if it fails.

Trace context travels in the job's payload: a payload object with a ``"trace"`` key holding
W3C trace-context headers (``traceparent``, ``tracestate``). Typed tasks (``raftq.App``) add
it to each job they enqueue; any producer may add ``raftq.otel.carrier()`` the same way. The
worker's ``process`` span is then a child of the producer's context, and linked to it.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

# The API's modules, once the application has loaded them (``enabled``): raftq never imports
# them first, so a process that does not trace pays nothing at start (about 25 ms otherwise).
trace: Any = None
propagate: Any = None

__all__ = ["carrier", "enabled", "process_span", "span", "traced"]

_F = TypeVar("_F", bound=Callable[..., Any])

SYSTEM = "raftq"
_KINDS = {
    "create": "PRODUCER",
    "send": "PRODUCER",
    "receive": "CLIENT",
    "settle": "CLIENT",
    "process": "CONSUMER",
}


def enabled() -> bool:
    """Whether spans are made: the OpenTelemetry API is loaded and a tracer provider was set
    (an SDK). Until then the API's tracer does nothing, so raftq skips even calling it on its
    hot paths. Setting a provider takes ``opentelemetry.trace``, so an application that traces
    has loaded it: until then there is nothing to import."""
    global trace, propagate  # set once, by the first call that finds the API loaded
    if trace is None:
        loaded = sys.modules.get("opentelemetry.trace")
        if loaded is None:
            return False
        from opentelemetry import propagate as loaded_propagate  # noqa: PLC0415

        trace, propagate = loaded, loaded_propagate
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


_Describe = Callable[[tuple[Any, ...], dict[str, Any], Any], dict[str, Any]]


def traced(
    op_type: str, operation: str, describe: _Describe, *, queue: bool = True
) -> Callable[[_F], _F]:
    """Decorate a client coroutine method with a span; its first argument is the queue (a
    name or several) if ``queue``. ``describe(args, kwargs, result)`` gives the attributes
    known once it returned (``messaging.message.id``...)."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        async def traced_call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not enabled():
                return await fn(self, *args, **kwargs)
            where = args[0] if queue and args else kwargs.get("queue", kwargs.get("queues"))
            name = where if isinstance(where, str) or where is None else ",".join(where)
            with span(op_type, operation, name) as s:
                result = await fn(self, *args, **kwargs)
                s.set_attributes(describe(args, kwargs, result))
                return result

        return traced_call  # type: ignore[return-value]

    return wrap


def _attributes(op_type: str, operation: str, queue: str | None, **more: Any) -> dict[str, Any]:
    attrs = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": op_type,
        "messaging.operation.name": operation,
    }
    if queue is not None:
        attrs["messaging.destination.name"] = queue
    attrs.update({k: v for k, v in more.items() if v is not None})
    return attrs


@contextlib.contextmanager
def span(op_type: str, operation: str, queue: str | None, **attributes: Any) -> Iterator[Any]:
    """A span ``<operation> <queue>`` of kind by ``op_type`` (send, receive, settle); yields
    the span to set more attributes on. Call it only when ``enabled()``."""
    assert trace is not None
    tracer = trace.get_tracer("raftq")
    kind = getattr(trace.SpanKind, _KINDS[op_type])
    attrs = _attributes(op_type, operation, queue, **attributes)
    name = operation if queue is None else f"{operation} {queue}"
    with tracer.start_as_current_span(name, kind=kind, attributes=attrs) as s:
        yield s


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (``{}`` without OpenTelemetry or a span)."""
    headers: dict[str, str] = {}
    if enabled():
        assert propagate is not None
        propagate.inject(headers)
    return headers


@contextlib.contextmanager
def process_span(queue: str, job_id: int, attempt: int, payload: Any) -> Iterator[Any]:
    """The worker's CONSUMER span around one handler run: a child of the trace context the
    payload carries (``payload["trace"]``), linked to it; an exception marks it failed."""
    if not enabled():
        yield None
        return
    assert trace is not None and propagate is not None
    headers = payload.get("trace") if isinstance(payload, Mapping) else None
    parent = None
    links = []
    if isinstance(headers, Mapping):
        parent = propagate.extract({str(k): str(v) for k, v in headers.items()})
        context = trace.get_current_span(parent).get_span_context()
        if context.is_valid:
            links.append(trace.Link(context))
    attrs = _attributes("process", "process", queue, **{"messaging.message.id": str(job_id)}) | {
        "raftq.job.attempt": attempt
    }
    tracer = trace.get_tracer("raftq")
    with tracer.start_as_current_span(
        f"process {queue}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attrs,
        links=links,
    ) as s:
        yield s


# What the traced client methods record once they returned.
def sent_one(args: tuple[Any, ...], kwargs: dict[str, Any], job_id: Any) -> dict[str, Any]:
    return {"messaging.message.id": str(job_id)}


def sent_many(args: tuple[Any, ...], kwargs: dict[str, Any], ids: Any) -> dict[str, Any]:
    return {"messaging.batch.message_count": len(ids)}


def received(args: tuple[Any, ...], kwargs: dict[str, Any], jobs: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"messaging.batch.message_count": len(jobs)}
    if len(jobs) == 1:
        attrs["messaging.message.id"] = str(jobs[0].id)
    return attrs


def settled(args: tuple[Any, ...], kwargs: dict[str, Any], _: Any) -> dict[str, Any]:
    return {"messaging.message.id": str(args[0] if args else kwargs.get("job_id"))}
