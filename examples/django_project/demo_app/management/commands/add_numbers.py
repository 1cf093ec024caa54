"""``python manage.py add_numbers A B``: enqueue ``add(A, B)``, wait, print its result."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo_app.tasks import add


class Command(BaseCommand):
    help = "Enqueue add(A, B) and print its return value once a raftq_worker ran it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("a", type=int)
        parser.add_argument("b", type=int)
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds (30)")

    def handle(self, *args: Any, **options: Any) -> None:
        deadline = time.monotonic() + options["timeout"]
        # --8<-- [start:enqueue]
        result = add.enqueue(options["a"], options["b"])  # a TaskResult: its id is the job's
        while not result.is_finished:  # READY (queued, delayed), then RUNNING (leased)
            if time.monotonic() > deadline:
                raise CommandError(f"task {result.id} is still {result.status}: no worker?")
            time.sleep(0.1)
            result.refresh()  # GET /v1/jobs/{id}
        self.stdout.write(str(result.return_value))  # raises ValueError if it FAILED
        # --8<-- [end:enqueue]
