"""``python manage.py raftq_worker [--queue Q ...] [--concurrency N] [--backend ALIAS]``: run a
``raftq.Worker`` for the tasks of a ``RaftqBackend`` until SIGTERM or SIGINT (a graceful stop,
as ``raftq worker``: running tasks get the grace period; a second signal skips it)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from raftq import runloop
from raftq.contrib.django.backend import RaftqBackend
from raftq.contrib.django.compat import task_backends
from raftq.errors import RaftqError
from raftq.logs import setup_logging


class Command(BaseCommand):  # type: ignore[misc]  # Django has no type stubs here
    help = "Run a raftq worker for the Django tasks of a RaftqBackend (settings.TASKS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="QUEUE",
            help="a queue to serve (repeat for more; default: the backend's QUEUES)",
        )
        parser.add_argument(
            "--concurrency", type=int, default=10, help="tasks run at once (threads; 10)"
        )
        parser.add_argument(
            "--backend", default="default", help="the alias in settings.TASKS (default)"
        )
        parser.add_argument("--name", help="the worker's name (default: host:pid)")
        parser.add_argument(
            "--grace-ms", type=int, help="how long running tasks may finish on stop (30000)"
        )
        parser.add_argument("--log-level", default="info", help="info (default), debug...")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["backend"]
        try:
            backend = task_backends[alias]
        except Exception as e:  # InvalidTaskBackendError, ImproperlyConfigured
            raise CommandError(f"--backend {alias}: {e}") from e
        if not isinstance(backend, RaftqBackend):
            raise CommandError(f"--backend {alias}: {type(backend).__name__} is not a RaftqBackend")
        queues = options["queues"] or sorted(backend.queues)
        if not queues:
            raise CommandError("give --queue: the backend's QUEUES allows any queue")
        unknown = [q for q in queues if backend.queues and q not in backend.queues]
        if unknown:
            raise CommandError(f"--queue {unknown[0]}: not in the backend's QUEUES")
        worker_options = {
            "concurrency": options["concurrency"],
            "name": options["name"],
            "grace_ms": options["grace_ms"],
        }
        try:
            worker = backend.worker(
                queues, **{k: v for k, v in worker_options.items() if v is not None}
            )
        except (RaftqError, ValueError) as e:
            raise CommandError(str(e)) from e
        setup_logging(options["log_level"])
        runloop.run(worker.run(handle_signals=True))
