"""``raftq schedules list|set|delete|trigger|pause|resume``: periodic jobs fired by the leader.

``set NAME --queue Q (--every DURATION | --cron EXPR [--tz ZONE]) --payload JSON`` creates or
replaces a schedule (a producer's token for its queue, or an admin's); ``list`` shows each
schedule with its last and next fire. Durations as elsewhere: ``500ms``, ``30s``, ``10m``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from raftq.cli.admin import duration_ms, format_ms, print_done
from raftq.cli.client import _print_json, _table, open_client
from raftq.cli.common import EXIT_OK, Parser, UsageError

__all__ = ["add_schedules_command"]


def add_schedules_command(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser], out: Parser
) -> None:
    """Add ``raftq schedules`` (``parents``: the client's connection options)."""
    common = [*parents, out]
    schedules = commands.add_parser(
        "schedules",
        parents=list(parents),
        help="list, set, delete, trigger, pause or resume periodic jobs",
        description="Schedules enqueue one job per slot (every DURATION, or each time of a "
        "cron expression in a time zone); the leader fires them and each slot fires at most "
        "once, across leader changes and restarts.",
    )
    sub = schedules.add_subparsers(dest="schedules_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", parents=common, help="every schedule, last and next fire")
    listing.set_defaults(handler=_cmd_list)
    put = sub.add_parser(
        "set",
        parents=common,
        help="create or replace a schedule",
        description="Create or replace schedule NAME. A replaced schedule keeps its last "
        "slot: no slot fires twice.",
    )
    put.add_argument("name", metavar="NAME")
    put.add_argument("--queue", required=True, metavar="QUEUE")
    when = put.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", type=duration_ms, metavar="DURATION")
    when.add_argument("--cron", metavar="EXPR", help='5 fields, e.g. "0 3 * * *"')
    put.add_argument("--tz", metavar="ZONE", help="IANA time zone of --cron (default UTC)")
    put.add_argument("--payload", default="null", metavar="JSON", help="the job's payload")
    put.add_argument("--priority", type=int, default=None)
    put.add_argument("--overlap", choices=("allow", "skip"), default=None)
    put.add_argument("--catchup", type=duration_ms, default=None, metavar="DURATION")
    put.add_argument("--paused", action="store_true", help="create it paused")
    put.set_defaults(handler=_cmd_set)
    for verb, handler, text in (
        ("delete", _cmd_delete, "delete a schedule (its jobs stay)"),
        ("trigger", _cmd_trigger, "enqueue its job now (consumes no slot)"),
        ("pause", _cmd_pause, "stop firing it"),
        ("resume", _cmd_resume, "fire it again from its next slot"),
    ):
        parser = sub.add_parser(verb, parents=common, help=text)
        parser.add_argument("name", metavar="NAME")
        parser.set_defaults(handler=handler)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _cmd_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        items = client.schedules()
    if args.json:
        _print_json(items, sys.stdout)
        return EXIT_OK
    if not items:
        print("no schedules")
        return EXIT_OK
    rows = [["NAME", "QUEUE", "WHEN", "PAUSED", "LAST FIRE", "NEXT FIRE", "FIRES", "SKIPPED"]]
    for s in items:
        every = s["every_ms"]
        when = f"every {format_ms(every)}" if every is not None else f"{s['cron']} {s['tz'] or ''}"
        rows.append(
            [
                s["name"],
                s["queue"],
                when.strip(),
                "yes" if s["paused"] else "no",
                _when(s["last_fire_ms"]),
                _when(s["next_fire_ms"]),
                str(s["fires"]),
                str(s["skipped"]),
            ]
        )
    _table(rows, sys.stdout)
    return EXIT_OK


def _cmd_set(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as e:
        raise UsageError(f"--payload is not JSON: {e}") from e
    fields: dict[str, Any] = {
        "every_ms": args.every,
        "cron": args.cron,
        "tz": args.tz,
        "priority": args.priority,
        "overlap": args.overlap,
        "catchup_ms": args.catchup,
        "paused": True if args.paused else None,
    }
    with open_client(args) as client:
        answer = client.set_schedule(args.name, args.queue, payload, **fields)
    verb = "created" if answer.get("created") else "replaced"
    return print_done(
        args, answer, f"{verb} {args.name}: next fire {_when(answer['next_fire_ms'])}"
    )


def _cmd_delete(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        client.delete_schedule(args.name)
    return print_done(args, {"name": args.name, "deleted": True}, f"deleted {args.name}")


def _cmd_trigger(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = client.trigger_schedule(args.name)
    return print_done(args, answer, f"triggered {args.name}: job {answer['id']}")


def _cmd_pause(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        client.pause_schedule(args.name)
    return print_done(args, {"name": args.name, "paused": True}, f"paused {args.name}")


def _cmd_resume(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        client.resume_schedule(args.name)
    return print_done(args, {"name": args.name, "paused": False}, f"resumed {args.name}")
