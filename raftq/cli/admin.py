"""The admin sub-commands of ``raftq``: ``queue pause|resume|purge|configure``, ``cancel`` and
``leader transfer``.

Each one is one call of ``raftq.client.SyncClient`` (an admin token where tokens are
configured; ``cancel`` also takes a producer's), so every admin route of the API has a command
(``tests/test_admin_surface.py`` holds the routes table to it). Durations are written with a
unit: ``500ms``, ``30s``, ``10m``, ``2h``, ``7d``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any, Final

from raftq.cli.client import _print_json, open_client
from raftq.cli.common import EXIT_OK, Parser, UsageError, non_negative_int

__all__ = ["add_admin_commands", "duration_ms", "format_ms"]

_UNITS_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION: Final = re.compile(r"(\d+)(ms|s|m|h|d)")


def duration_ms(text: str) -> int:
    """``10m`` -> 600000: a whole number and a unit (ms, s, m, h, d); ``0`` alone is 0."""
    if text == "0":
        return 0
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a whole number and a unit, like 500ms, 30s, 10m, 2h, 7d"
        )
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def format_ms(ms: int) -> str:
    """``600000`` -> ``10m``: the largest unit that divides ``ms``."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def add_admin_commands(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser], out: Parser
) -> None:
    """Add ``raftq queue``, ``raftq cancel`` and ``raftq leader`` (``parents``: the client's
    connection options; ``out``: ``--json``)."""
    common = [*parents, out]
    queue = commands.add_parser(
        "queue",
        parents=list(parents),
        help="pause, resume, purge or configure a queue (admin)",
        description="Change one queue (an admin token where tokens are configured).",
    )
    sub = queue.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)
    pause = sub.add_parser(
        "pause", parents=common, help="stop handing out its jobs (enqueues still accepted)"
    )
    resume = sub.add_parser("resume", parents=common, help="undo pause")
    purge = sub.add_parser("purge", parents=common, help="delete its queued, delayed and dead jobs")
    configure = sub.add_parser(
        "configure",
        parents=common,
        help="set its dedup window and retention (without options: show them)",
        description="Set the queue's dedup window (how long a finished job's key still "
        "deduplicates an enqueue; 0..24h, default 10m) and retention (how long succeeded and "
        "cancelled jobs stay readable; 0..7d, default 1h). An option not given keeps its "
        "value; the values applied are printed.",
    )
    configure.add_argument("--dedup-window", type=duration_ms, metavar="DURATION")
    configure.add_argument("--retention", type=duration_ms, metavar="DURATION")
    for parser, handler in (
        (pause, _cmd_pause),
        (resume, _cmd_resume),
        (purge, _cmd_purge),
        (configure, _cmd_configure),
    ):
        parser.add_argument("queue", metavar="QUEUE")
        parser.set_defaults(handler=handler)

    cancel = commands.add_parser(
        "cancel", parents=common, help="cancel a job that is not finished (producer, admin)"
    )
    cancel.add_argument("job_id", metavar="ID", type=non_negative_int)
    cancel.set_defaults(handler=_cmd_cancel)

    leader = commands.add_parser(
        "leader", parents=list(parents), help="hand leadership to another node (admin)"
    )
    leader_sub = leader.add_subparsers(dest="leader_command", metavar="COMMAND", required=True)
    transfer = leader_sub.add_parser(
        "transfer",
        parents=common,
        help="hand leadership over, answered once it moved",
        description="Ask the leader to hand leadership to node --to (default: the most "
        "caught-up follower), for example before a planned restart of the leader.",
    )
    transfer.add_argument("--to", metavar="ID", default=None, help="the new leader's node id")
    transfer.set_defaults(handler=_cmd_transfer)


def _done(args: argparse.Namespace, answer: dict[str, Any], text: str) -> int:
    if args.json:
        _print_json(answer, sys.stdout)
    else:
        print(text)
    return EXIT_OK


def _cmd_pause(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        client.pause(args.queue)
    return _done(args, {"queue": args.queue, "paused": True}, f"paused {args.queue}")


def _cmd_resume(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        client.resume(args.queue)
    return _done(args, {"queue": args.queue, "paused": False}, f"resumed {args.queue}")


def _cmd_purge(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        count = client.purge(args.queue)
    answer = {"queue": args.queue, "purged": count}
    return _done(args, answer, f"purged {count} job(s) of {args.queue}")


def _cmd_configure(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = client.configure(
            args.queue, dedup_window_ms=args.dedup_window, retention_ms=args.retention
        )
    dedup, retention = answer["dedup_window_ms"], answer["retention_ms"]
    text = f"{answer['queue']}: dedup window {format_ms(dedup)}, retention {format_ms(retention)}"
    return _done(args, answer, text)


def _cmd_cancel(args: argparse.Namespace) -> int:
    if args.job_id < 1:
        raise UsageError("ID must be a job id (1 or more)")
    with open_client(args) as client:
        client.cancel(args.job_id)
    return _done(args, {"id": args.job_id, "state": "cancelled"}, f"cancelled job {args.job_id}")


def _cmd_transfer(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = client.transfer_leadership(args.to)
    text = f"leader now {answer['leader']} (was {answer['previous']})"
    return _done(args, answer, text)
