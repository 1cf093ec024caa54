"""``raftq worker MODULE:ATTR``: run a worker until SIGINT/SIGTERM.

ATTR is either a handler function (``--queue`` names the queue(s) it handles) or a
``raftq.Worker`` object (its handlers say which queues; ``--queue`` narrows them down), or a
``raftq.App`` (its tasks' queues, as ``App.worker()`` builds them). Flags
override the worker's settings. The current directory is importable, as with ``python -m``.

Exit codes: 0 after a clean stop (signal), 1 if the worker failed (the cluster refused its
claims, a crash), 2 for usage errors, including a target that cannot be imported.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from raftq import runloop
from raftq.cli.client import (
    DEFAULT_NODES,
    ENV_NODES,
    ENV_TOKEN,
    add_tls_arguments,
    node_list,
    tls_context,
)
from raftq.cli.common import (
    EXIT_OK,
    Parser,
    UsageError,
    non_negative_int,
    positive_int,
    prefetch_arg,
)
from raftq.logs import LogFormat, setup_logging

__all__ = ["add_worker_command", "load_target", "run_tasks_command"]


def add_worker_command(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser]
) -> None:
    """Add ``raftq worker`` to ``raftq``'s parser."""
    p = commands.add_parser(
        "worker",
        parents=list(parents),
        help="run jobs with a Python handler until Ctrl-C or SIGTERM",
        description="Run jobs of the given queues with a handler function, or with a "
        "raftq.Worker or raftq.App object, from MODULE:ATTR (the current directory is importable). "
        "SIGINT/SIGTERM stops it gracefully: no new claims, running jobs get the grace "
        "period, then are nacked for immediate redelivery; a second signal stops at once. "
        "Exit codes: 0 clean stop, 1 failure, 2 usage or import error.",
    )
    p.add_argument("target", metavar="MODULE:ATTR", help="a handler function, a Worker or an App")
    p.add_argument(
        "--queue",
        "-q",
        action="append",
        dest="queues",
        metavar="QUEUE",
        help="a queue to serve (repeat for several; required for a function)",
    )
    p.add_argument("--concurrency", "-c", type=positive_int, metavar="N", help="jobs at once")
    p.add_argument(
        "--nodes",
        metavar="HOST:PORT,...",
        default=None,
        help=f"API addresses of some nodes (default: the Worker's, else ${ENV_NODES}, else "
        f"{DEFAULT_NODES})",
    )
    p.add_argument("--token", default=None, help=f"API token (default: ${ENV_TOKEN})")
    add_tls_arguments(p)
    p.add_argument("--name", help="worker name recorded on jobs (default: host:pid)")
    p.add_argument("--lease-ms", type=positive_int, metavar="MS", help="lease per claim (30000)")
    p.add_argument(
        "--job-timeout-ms", type=positive_int, metavar="MS", help="cancel and nack a job after MS"
    )
    p.add_argument(
        "--retry-in-ms",
        type=non_negative_int,
        metavar="MS",
        help="retry delay after a failure (default: the cluster's exponential backoff)",
    )
    p.add_argument(
        "--grace-ms", type=non_negative_int, metavar="MS", help="time to finish on stop (30000)"
    )
    p.add_argument("--wait-ms", type=non_negative_int, metavar="MS", help="claim long-poll (2000)")
    p.add_argument(
        "--prefetch",
        type=prefetch_arg,
        metavar="N|auto",
        help="jobs claimed ahead of free slots, held until a slot frees (auto: what the slots "
        "finish in about 20 ms, at most --concurrency; 0: none)",
    )
    p.add_argument(
        "--no-stream",
        action="store_true",
        help="claim over HTTP long-polls instead of the worker stream (the default: one "
        "WebSocket on which the leader leases jobs ahead and acks travel back)",
    )
    p.set_defaults(handler=run_worker_command)

    t = commands.add_parser(
        "tasks",
        parents=list(parents),
        help="list a raftq.App's tasks, or print their OpenAPI document",
        description="List the tasks of the raftq.App at MODULE:ATTR (name, queue, signature), "
        "or with --openapi print the OpenAPI 3.1 document of their enqueue bodies and results "
        "(JSON Schemas from the annotations; pydantic needed for them).",
    )
    t.add_argument("target", metavar="MODULE:ATTR", help="a raftq.App")
    t.add_argument("--openapi", action="store_true", help="print the OpenAPI document (JSON)")
    t.set_defaults(handler=run_tasks_command)


def load_target(target: str) -> Any:
    """The object named by ``MODULE:ATTR`` (ATTR may be dotted).

    Raises:
        UsageError: malformed, the module cannot be imported, or has no such attribute.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:ATTR (e.g. myapp.tasks:send_email), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # whatever the module raises while importing is the user's error
        detail = f"{type(e).__name__}: {e}"
        raise UsageError(f"cannot import {module_name!r}: {detail}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


def _worker_of(target: Any, args: argparse.Namespace) -> Any:
    """The ``raftq.Worker`` that ``target`` (a Worker, an App or a handler function) is."""
    from raftq.tasks import App  # noqa: PLC0415 - keeps `raftq --help` light
    from raftq.worker import Worker  # noqa: PLC0415

    if isinstance(target, App):
        if not target.tasks:
            raise UsageError(f"{args.target} has no task: register one with @app.task")
        return target.worker()
    if isinstance(target, Worker):
        if not target.queues:
            raise UsageError(f"{args.target} has no handler: register one with @worker.handler")
        return target
    if not callable(target):
        kind = type(target).__name__
        raise UsageError(
            f"{args.target} is a {kind}, not a handler function, a raftq.Worker or a raftq.App"
        )
    if not args.queues:
        raise UsageError(f"{args.target} is a function: give its queue(s) with --queue")
    worker = Worker()
    try:
        for q in args.queues:
            worker.add_handler(q, target)
    except ValueError as e:
        raise UsageError(f"--queue: {e}") from None
    return worker


def _build(target: Any, args: argparse.Namespace) -> tuple[Any, list[str] | None]:
    """The worker to run and the queues to serve (``None``: all of its handlers')."""
    queues: list[str] | None = args.queues
    worker = _worker_of(target, args)
    options = {
        "concurrency": args.concurrency,
        "name": args.name,
        "lease_ms": args.lease_ms,
        "job_timeout_ms": args.job_timeout_ms,
        "retry_in_ms": args.retry_in_ms,
        "grace_ms": args.grace_ms,
        "wait_ms": args.wait_ms,
        "prefetch": args.prefetch,
    }
    worker.configure(**{k: v for k, v in options.items() if v is not None})
    if args.no_stream:
        worker.configure(stream=False)
    if args.nodes is not None or (worker.nodes is None and worker.client is None):
        worker.configure(nodes=node_list(args.nodes, os.environ))
    token = args.token if args.token is not None else os.environ.get(ENV_TOKEN) or None
    if token is not None:
        worker.configure(token=token)
    ssl = tls_context(args, os.environ)
    if ssl is not None:
        worker.configure(ssl=ssl)
    if queues is not None:
        unknown = [q for q in queues if q not in worker.queues]
        if unknown:
            known = ", ".join(worker.queues) or "none"
            raise UsageError(f"--queue {unknown[0]}: the worker has no handler for it ({known})")
    return worker, queues


def run_tasks_command(args: argparse.Namespace) -> int:
    """``raftq tasks``: an App's tasks, one per line, or its OpenAPI document."""
    import inspect  # noqa: PLC0415
    import json  # noqa: PLC0415

    from raftq.tasks import App  # noqa: PLC0415 - keeps `raftq --help` light

    app = load_target(args.target)
    if not isinstance(app, App):
        raise UsageError(f"{args.target} is a {type(app).__name__}, not a raftq.App")
    if args.openapi:
        print(json.dumps(app.openapi(), indent=2))
    else:
        for t in app.tasks.values():
            print(f"{t.name}\tqueue {t.queue}\t{t.name}{inspect.signature(t.fn, eval_str=True)}")
    return EXIT_OK


def run_worker_command(args: argparse.Namespace) -> int:
    """``raftq worker``: build the worker, set up logging, run until a signal."""
    target = load_target(args.target)
    worker, queues = _build(target, args)
    fmt: LogFormat = "json" if args.log_format == "json" else "text"
    setup_logging(args.log_level or "info", fmt)
    runloop.run(worker.run(queues, handle_signals=True))
    return EXIT_OK
