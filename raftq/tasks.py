"""Typed tasks: ``raftq.App`` and ``@app.task``.

A task is a plain function, sync or async, registered on an ``App``. Enqueueing it keeps the
function's signature (``ParamSpec``), so mypy checks the arguments of every enqueue, and the
worker runs the same function with them::

    app = raftq.App(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"])

    @app.task(queue="emails", max_attempts=5)
    async def send_email(to: str, subject: str) -> bool:
        ...

    handle = await send_email.enqueue(to="a@example.com", subject="hi")
    sent: bool = await handle.wait()
    send_email.options(delay_ms=60_000, key="welcome-42").enqueue_sync(to=..., subject=...)

    app.worker(concurrency=8).run_forever()   # or: raftq worker module:app

A job of a task carries ``{"task": name, "args": [...], "kwargs": {...}}``; several tasks may
share a queue (the worker looks the task up by name). With pydantic installed (``raftq[pydantic]``)
every annotated parameter and the return value are validated: on enqueue (a wrong argument
raises ``pydantic.ValidationError`` and nothing is enqueued), in the worker before the call
(a job that does not validate fails), and when a result is read back (``wait`` returns the
annotated type, e.g. a model). Without pydantic, arguments travel as JSON/msgpack values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import re
import ssl
import typing
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from raftq import otel
from raftq.client import Client, JobHandle, SyncClient
from raftq.client.sync import SyncJobHandle

if TYPE_CHECKING:
    from raftq.worker import Job, Worker

__all__ = ["App", "SyncTaskHandle", "Task", "TaskHandle"]

P = ParamSpec("P")
R = TypeVar("R")
_POS_ONLY, _POS_OR_KW = inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
_VAR_POS, _VAR_KW = inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD
_VARIADIC = (_VAR_POS, _VAR_KW)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueOptions:
    """What ``Client.enqueue`` takes besides the payload; ``None``: the queue's default."""

    priority: int = 0
    delay_ms: int | None = None
    run_at_ms: int | None = None
    key: str | None = None
    max_attempts: int | None = None
    lease_ms: int | None = None
    group: str | None = None
    depends_on: Sequence[int] | None = None
    on_dependency_failure: str | None = None


class _Codec:
    """Arguments and result of one function, validated by pydantic when it is installed."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        self._takes_var = any(q.kind is _VAR_POS for q in self.signature.parameters.values())
        self._fn = fn
        self._adapters: dict[str, Any] | None = None

    def _hints(self) -> dict[str, Any]:
        if self._adapters is None:
            try:
                import pydantic  # noqa: PLC0415 - optional
            except ImportError:
                self._adapters = {}
            else:
                hints = typing.get_type_hints(self._fn)
                self._adapters = {k: pydantic.TypeAdapter(t) for k, t in hints.items()}
        return self._adapters

    def _validated(self, bound: inspect.BoundArguments, dump: bool) -> None:
        """Validate each argument of ``bound`` with its annotation (in place); ``dump``: then
        turn it into its JSON form. ``*args`` and ``**kwargs`` travel as they are."""
        adapters = self._hints()
        for name, value in list(bound.arguments.items()):
            adapter = adapters.get(name)
            if adapter is None or self.signature.parameters[name].kind in _VARIADIC:
                continue
            valid = adapter.validate_python(value)
            if dump:
                # Validated again as the worker will see it: a model instance is not checked
                # by validate_python (pydantic does not revalidate instances).
                valid = adapter.dump_python(valid, mode="json")
                adapter.validate_python(valid)
            bound.arguments[name] = valid

    def _positional(self, p: inspect.Parameter) -> bool:
        """Whether a payload passes ``p`` in ``args``: if it is positional-only, or if the
        function takes ``*args`` (then every positional parameter before it must be)."""
        return p.kind is _POS_ONLY or (self._takes_var and p.kind is _POS_OR_KW)

    def dump_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The payload's ``args``/``kwargs``, checked against the signature (``TypeError``):
        every argument by name, but for those ``_positional`` says go by position."""
        bound = self.signature.bind(*args, **kwargs)
        self._validated(bound, dump=True)
        by_pos: list[Any] = []
        by_name: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            p = self.signature.parameters[name]
            if p.kind is _VAR_POS:
                by_pos.extend(value)
            elif p.kind is _VAR_KW:
                by_name.update(value)
            elif self._positional(p):
                by_pos.append(value)
            else:
                by_name[name] = value
        return {"args": by_pos, "kwargs": by_name}

    def json_schemas(self, task: str, ref_template: str) -> tuple[Any, Any, dict[str, Any]]:
        """The JSON Schemas of ``task``'s payload (what ``dump_args`` makes, and the worker
        accepts) and of its result, and the definitions they refer to (``ref_template``).
        Without pydantic, or for a parameter without annotation: any value."""
        adapters = self._hints()
        keys: list[tuple[str, Literal["validation", "serialization"], Any]] = [
            (n, "serialization" if n == "return" else "validation", a) for n, a in adapters.items()
        ]
        found: dict[Any, Any] = {}
        defs: dict[str, Any] = {}
        if keys:
            from pydantic import TypeAdapter  # noqa: PLC0415 - adapters exist only with it

            found, top = TypeAdapter.json_schemas(keys, ref_template=ref_template)
            defs = top.get("$defs", {})

        def schema(name: str) -> Any:
            mode = "serialization" if name == "return" else "validation"
            return found.get((name, mode), {})

        prefix: list[Any] = []
        n_required = 0
        items: Any = False
        props: dict[str, Any] = {}
        required: list[str] = []
        extra: Any = False
        for p in self.signature.parameters.values():
            if p.kind is _VAR_POS:
                items = schema(p.name)
            elif p.kind is _VAR_KW:
                extra = schema(p.name)
            elif self._positional(p):
                prefix.append(schema(p.name))
                n_required += p.default is inspect.Parameter.empty
            else:
                props[p.name] = schema(p.name)
                if p.default is inspect.Parameter.empty:
                    required.append(p.name)
        payload = {
            "type": "object",
            "properties": {
                "task": {"const": task},
                # W3C trace-context headers of the enqueue (raftq.otel), when traced.
                "trace": {"type": "object", "additionalProperties": {"type": "string"}},
                "args": {
                    "type": "array",
                    "prefixItems": prefix,
                    "items": items,
                    "minItems": n_required,
                },
                "kwargs": {
                    "type": "object",
                    "properties": props,
                    "required": required,
                    "additionalProperties": extra,
                },
            },
            "required": ["task", "args", "kwargs"],
            "additionalProperties": False,
        }
        return payload, schema("return"), defs

    def load_args(self, payload: Any) -> tuple[list[Any], dict[str, Any]]:
        """The call from a job's payload, validated."""
        if not isinstance(payload, dict) or not isinstance(payload.get("kwargs", {}), dict):
            raise TypeError(f"not a task payload: {payload!r}")
        bound = self.signature.bind(*payload.get("args", ()), **payload.get("kwargs", {}))
        self._validated(bound, dump=False)
        return list(bound.args), dict(bound.kwargs)

    def dump_result(self, value: Any) -> Any:
        adapter = self._hints().get("return")
        return value if adapter is None else adapter.dump_python(value, mode="json")

    def load_result(self, raw: Any) -> Any:
        adapter = self._hints().get("return")
        return raw if adapter is None else adapter.validate_python(raw)


class TaskHandle(Generic[R]):
    """An enqueued task's job: ``await handle.wait()`` is its function's return value."""

    def __init__(self, handle: JobHandle, codec: _Codec) -> None:
        self.id = handle.id
        self.job = handle  # status(), cancel()
        self._codec = codec

    def __repr__(self) -> str:
        return f"TaskHandle(id={self.id})"

    async def wait(self, timeout_ms: int | None = None) -> R:
        """See ``JobHandle.wait``; the result is validated into the return annotation."""
        result: R = self._codec.load_result(await self.job.wait(timeout_ms))
        return result


class SyncTaskHandle(Generic[R]):
    """``TaskHandle``, blocking (from ``Task.enqueue_sync``)."""

    def __init__(self, handle: SyncJobHandle, codec: _Codec) -> None:
        self.id = handle.id
        self.job = handle
        self._codec = codec

    def __repr__(self) -> str:
        return f"SyncTaskHandle(id={self.id})"

    def wait(self, timeout_ms: int | None = None) -> R:
        result: R = self._codec.load_result(self.job.wait(timeout_ms))
        return result


class Task(Generic[P, R]):
    """A function registered with ``App.task``: ``enqueue`` / ``enqueue_sync`` take its
    arguments; ``options(...)`` gives the same task with other enqueue options; ``fn`` is
    the function itself (call it directly in tests)."""

    def __init__(
        self,
        app: App,
        fn: Callable[P, Any],
        *,
        name: str,
        queue: str,
        options: EnqueueOptions,
        timeout_ms: int | None,
        codec: _Codec | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.enqueue_options = options
        self.timeout_ms = timeout_ms
        self.is_async = inspect.iscoroutinefunction(fn)
        self._codec = codec or _Codec(fn)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Task({self.name!r}, queue={self.queue!r})"

    def options(self, **changes: Any) -> Task[P, R]:
        """The same task with other enqueue options (``priority``, ``delay_ms``,
        ``run_at_ms``, ``key``, ``max_attempts``, ``lease_ms``, ``group``, ``depends_on``,
        ``on_dependency_failure``)."""
        return Task(
            self.app,
            self.fn,
            name=self.name,
            queue=self.queue,
            options=dataclasses.replace(self.enqueue_options, **changes),
            timeout_ms=self.timeout_ms,
            codec=self._codec,
        )

    def payload(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """The job payload an enqueue with these arguments sends (validated first):
        ``{"task", "args", "kwargs"}``, described by ``App.openapi()``."""
        return {"task": self.name, **self._codec.dump_args(args, kwargs)}

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Enqueue one job of this task with these arguments (validated first)."""
        payload = self.payload(*args, **kwargs)
        opts = dataclasses.asdict(self.enqueue_options)
        with self._created(payload):
            handle = await self.app.client.enqueue_job(self.queue, payload, **opts)
        return TaskHandle(handle, self._codec)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> SyncTaskHandle[R]:
        """``enqueue``, blocking (on the app's ``SyncClient``)."""
        payload = self.payload(*args, **kwargs)
        opts = dataclasses.asdict(self.enqueue_options)
        with self._created(payload):
            handle = self.app.sync_client.enqueue_job(self.queue, payload, **opts)
        return SyncTaskHandle(handle, self._codec)

    @contextlib.contextmanager
    def _created(self, payload: dict[str, Any]) -> Iterator[None]:
        """With OpenTelemetry: a ``create <queue>`` span around the enqueue, whose context
        the payload carries (``"trace"``) for the worker's ``process`` span (raftq.otel)."""
        if not otel.enabled():
            yield
            return
        with otel.span("create", "create", self.queue, **{"raftq.task": self.name}):
            payload["trace"] = otel.carrier()
            yield

    def run_job(self, job: Job) -> Any:
        """What the worker runs for a job of this task (sync tasks: in a worker thread)."""
        args, kwargs = self._codec.load_args(job.payload)
        return self._codec.dump_result(self.fn(*args, **kwargs))

    async def run_job_async(self, job: Job) -> Any:
        args, kwargs = self._codec.load_args(job.payload)
        if self.is_async:
            result = await self.fn(*args, **kwargs)
        else:
            result = await asyncio.to_thread(self.fn, *args, **kwargs)
        return self._codec.dump_result(result)


class App:
    """The tasks of an application and where their jobs go.

    Args:
        nodes: API addresses of some nodes (as for ``raftq.Client``), or
        config: the cluster's TOML file (its nodes' API addresses are used), or
        client: a ``raftq.Client`` or an embedded ``raftq.Node`` to enqueue with (the app
            does not close it; ``enqueue_sync`` needs ``nodes`` or ``config``).
        token, ssl, timeout_ms, retry_ms: those of the clients the app makes.
    """

    def __init__(
        self,
        nodes: Sequence[str] | str | None = None,
        *,
        config: str | Path | None = None,
        client: Any = None,
        token: str | None = None,
        ssl: ssl.SSLContext | None = None,
        timeout_ms: int = 10_000,
        retry_ms: int = 30_000,
    ) -> None:
        if config is not None:
            if nodes is not None:
                raise ValueError("give nodes or config, not both")
            from raftq.config import load_config  # noqa: PLC0415 - only when used

            nodes = [n.api for n in load_config(Path(config)).nodes]
        if nodes is None and client is None:
            raise ValueError("App needs nodes, config or client")
        self.nodes = nodes
        self._given = client
        self._client: Client | None = None
        self._sync: SyncClient | None = None
        self._client_kwargs: dict[str, Any] = {
            "token": token,
            "ssl": ssl,
            "timeout_ms": timeout_ms,
            "retry_ms": retry_ms,
        }
        self.tasks: dict[str, Task[Any, Any]] = {}

    def configure(self, nodes: Sequence[str] | str | None = None, *, client: Any = None) -> None:
        """Point the app at other nodes, or a client (e.g. a test's ``raftq.testing.LocalNode``
        and its ``url``). The app's ``SyncClient`` is closed; its ``Client`` must have been
        closed first (``await app.aclose()``)."""
        if (nodes is None) == (client is None):
            raise ValueError("configure takes nodes or client")
        if self._client is not None:
            raise RuntimeError("await app.aclose() before configure: its Client is open")
        self.close_sync()
        self.nodes, self._given = nodes, client

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        queue: str = "default",
        name: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        lease_ms: int | None = None,
        timeout_ms: int | None = None,
    ) -> _Decorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        queue: str = "default",
        name: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        lease_ms: int | None = None,
        timeout_ms: int | None = None,
    ) -> Any:
        """Register a function as a task (``@app.task`` or ``@app.task(queue=...)``).

        Args:
            queue: where its jobs go (default ``"default"``).
            name: the name jobs carry (default: the function's ``__qualname__``); unique in
                the app, and the same in the producers' and the workers' code.
            priority, max_attempts, lease_ms: its enqueue defaults (``options`` changes them).
            timeout_ms: the worker's per-job timeout for its queue.
        """

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            # Not the module's name: a script's is "__main__" where its worker imports it by
            # path, and the two would name the same task differently.
            task_name = name or f.__qualname__
            if task_name in self.tasks:
                raise ValueError(f"a task named {task_name!r} is already registered")
            options = EnqueueOptions(
                priority=priority, max_attempts=max_attempts, lease_ms=lease_ms
            )
            t: Task[Any, Any] = Task(
                self, f, name=task_name, queue=queue, options=options, timeout_ms=timeout_ms
            )
            self.tasks[task_name] = t
            return t

        return register if fn is None else register(fn)

    def openapi(self) -> dict[str, Any]:
        """An OpenAPI 3.1 document of this app's tasks: for each queue, the body of
        ``POST /v1/queues/{queue}/jobs`` that enqueues one of its tasks, whose ``payload`` is
        ``{"task", "args", "kwargs"}`` with the JSON Schema of the arguments (from their
        annotations, by pydantic), and each task's result schema (``<task>.result``). For
        producers in other languages, or next to raftq's own ``GET /v1/openapi.json``;
        ``raftq tasks MODULE:APP --openapi`` prints it."""
        from raftq import __version__  # noqa: PLC0415 - a cycle at import time

        ref = "#/components/schemas/{model}"
        schemas: dict[str, Any] = {}
        by_queue: dict[str, list[dict[str, str]]] = {}
        for t in self.tasks.values():
            key = re.sub(r"[^A-Za-z0-9._-]", "_", t.name)
            payload, result, defs = t._codec.json_schemas(t.name, ref)
            schemas.update(defs)
            schemas[f"{key}.payload"] = payload
            schemas[f"{key}.result"] = result
            by_queue.setdefault(t.queue, []).append({"$ref": ref.format(model=f"{key}.payload")})
        paths = {
            f"/v1/queues/{queue}/jobs": {
                "post": {
                    "summary": f"enqueue a task of queue {queue}",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"payload": {"oneOf": refs}},
                                    "required": ["payload"],
                                }
                            }
                        },
                    },
                    "responses": {"201": {"description": "enqueued: {id, existing}"}},
                }
            }
            for queue, refs in by_queue.items()
        }
        return {
            "openapi": "3.1.0",
            "info": {"title": "raftq tasks", "version": __version__},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    @property
    def client(self) -> Any:
        """The ``Client`` (or the given client) that ``Task.enqueue`` uses."""
        if self._given is not None:
            return self._given
        if self._client is None:
            assert self.nodes is not None
            self._client = Client(self.nodes, **self._client_kwargs)
        return self._client

    @property
    def sync_client(self) -> SyncClient:
        """The ``SyncClient`` that ``Task.enqueue_sync`` uses (its own thread and loop)."""
        if self._sync is None:
            if self.nodes is None:
                raise ValueError("enqueue_sync needs an App made with nodes or config")
            self._sync = SyncClient(self.nodes, **self._client_kwargs)
        return self._sync

    def worker(self, **options: Any) -> Worker:
        """A ``raftq.Worker`` that runs every task of this app (``options``: the Worker's).
        One handler per queue looks the task up by the name its job carries; a queue of
        sync tasks only runs them in the worker's threads, a queue with async tasks on its
        loop (and its sync tasks in ``asyncio.to_thread``)."""
        from raftq.worker import Worker  # noqa: PLC0415 - the worker is not always needed

        if self._given is not None:
            options.setdefault("client", self._given)
        else:
            options.setdefault("nodes", self.nodes)
            options.setdefault("token", self._client_kwargs["token"])
            options.setdefault("ssl", self._client_kwargs["ssl"])
        worker = Worker(**options)
        by_queue: dict[str, dict[str, Task[Any, Any]]] = {}
        for t in self.tasks.values():
            by_queue.setdefault(t.queue, {})[t.name] = t
        for queue, tasks in by_queue.items():
            timeouts = {t.timeout_ms for t in tasks.values()} - {None}
            if len(timeouts) > 1:
                raise ValueError(f"the tasks of queue {queue!r} have different timeout_ms")
            timeout = timeouts.pop() if timeouts else None
            worker.add_handler(queue, _dispatcher(queue, tasks), timeout_ms=timeout)
        return worker

    async def aclose(self) -> None:
        """Close the clients the app made (not a given one)."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.close_sync()

    def close_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Decorator(Protocol):
    """What ``App.task(queue=...)`` returns: a decorator that keeps the signature."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


def _task_of(queue: str, tasks: dict[str, Task[Any, Any]], job: Job) -> Task[Any, Any]:
    name = job.payload.get("task") if isinstance(job.payload, dict) else None
    t = tasks.get(name) if isinstance(name, str) else None
    if t is None:
        raise LookupError(f"queue {queue!r} has no task {name!r} in this worker")
    return t


def _dispatcher(queue: str, tasks: dict[str, Task[Any, Any]]) -> Callable[[Job], Any]:
    if not any(t.is_async for t in tasks.values()):

        def run(job: Job) -> Any:
            return _task_of(queue, tasks, job).run_job(job)

        return run

    async def run_async(job: Job) -> Any:
        return await _task_of(queue, tasks, job).run_job_async(job)

    return run_async
