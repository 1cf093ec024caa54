"""The admin sub-commands of ``raftq``: ``queue pause|resume|purge|configure``,
``limits get|set``, ``cancel`` and ``leader transfer``.

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

__all__ = ["add_admin_commands", "duration_ms", "format_ms", "print_done"]

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

    _add_limits(commands, parents, common)

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


def rate_arg(text: str) -> tuple[int, int]:
    """``10/1s`` -> (10, 1000): claims per duration."""
    limit, sep, period = text.partition("/")
    if not sep or not limit.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: LIMIT/DURATION, like 10/1s")
    return int(limit), duration_ms(period)


def _add_limits(
    commands: argparse._SubParsersAction[Parser], parents: Sequence[Parser], common: list[Parser]
) -> None:
    limits = commands.add_parser(
        "limits",
        parents=list(parents),
        help="show or set a queue's concurrency and rate limits (set: admin)",
        description="A queue's limits: leased jobs at most (concurrency), claims per window "
        "(rate), and the same per group of jobs (group_concurrency, group_rate). While a "
        "queue has limits, claims serve its groups round-robin.",
    )
    sub = limits.add_subparsers(dest="limits_command", metavar="COMMAND", required=True)
    get = sub.add_parser("get", parents=common, help="the limits and their use now")
    put = sub.add_parser(
        "set",
        parents=common,
        help="replace the limits (an option not given: no such limit)",
        description="Replace the queue's limits as a whole: an option not given means no such "
        "limit (so `raftq limits set QUEUE` alone removes them all). Rates are LIMIT/DURATION: "
        "at most LIMIT claims in any window of DURATION (10/1s, 100/1m).",
    )
    put.add_argument("--concurrency", type=non_negative_int, metavar="N")
    put.add_argument("--rate", type=rate_arg, metavar="LIMIT/DURATION")
    put.add_argument("--group-concurrency", type=non_negative_int, metavar="N")
    put.add_argument("--group-rate", type=rate_arg, metavar="LIMIT/DURATION")
    for parser, handler in ((get, _cmd_limits_get), (put, _cmd_limits_set)):
        parser.add_argument("queue", metavar="QUEUE")
        parser.set_defaults(handler=handler)


def _limits_text(answer: dict[str, Any]) -> str:
    def rate(r: dict[str, int] | None) -> str:
        return "none" if r is None else f"{r['limit']}/{format_ms(r['period_ms'])}"

    def num(n: int | None) -> str:
        return "none" if n is None else str(n)

    text = (
        f"{answer['queue']}: concurrency {num(answer['concurrency'])}, rate "
        f"{rate(answer['rate'])}, group concurrency {num(answer['group_concurrency'])}, "
        f"group rate {rate(answer['group_rate'])}"
    )
    usage = answer.get("usage")
    if usage:
        text += (
            f"\n  slots used {usage['slots_used']}, starts in window "
            f"{usage['starts_in_window']}, groups {usage['groups']} ({usage['groups_ready']} "
            f"ready, {usage['groups_waiting']} waiting)"
        )
    return text


def _cmd_limits_get(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = client.limits(args.queue)
    return print_done(args, answer, _limits_text(answer))


def _cmd_limits_set(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = client.set_limits(
            args.queue,
            concurrency=args.concurrency,
            rate=args.rate,
            group_concurrency=args.group_concurrency,
            group_rate=args.group_rate,
        )
    return print_done(args, answer, _limits_text(answer))


def print_done(args: argparse.Namespace, answer: dict[str, Any], text: str) -> int:
    """A write's outcome: ``answer`` as JSON with ``--json``, else ``text``; exit 0."""
    if args.json:
        _print_json(answer, sys.stdout)
    else:
        print(text)
    return EXIT_OK


def _cmd_pause(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        client.pause(args.queue)
    return print_done(args, {"queue": args.queue, "paused": True}, f"paused {args.queue}")


def _cmd_resume(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        client.resume(args.queue)
    return print_done(args, {"queue": args.queue, "paused": False}, f"resumed {args.queue}")


def _cmd_purge(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        count = client.purge(args.queue)
    answer = {"queue": args.queue, "purged": count}
    return print_done(args, answer, f"purged {count} job(s) of {args.queue}")


def _cmd_configure(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = client.configure(
            args.queue, dedup_window_ms=args.dedup_window, retention_ms=args.retention
        )
    dedup, retention = answer["dedup_window_ms"], answer["retention_ms"]
    text = f"{answer['queue']}: dedup window {format_ms(dedup)}, retention {format_ms(retention)}"
    return print_done(args, answer, text)


def _cmd_cancel(args: argparse.Namespace) -> int:
    if args.job_id < 1:
        raise UsageError("ID must be a job id (1 or more)")
    with open_client(args) as client:
        client.cancel(args.job_id)
    return print_done(
        args, {"id": args.job_id, "state": "cancelled"}, f"cancelled job {args.job_id}"
    )


def _cmd_transfer(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = client.transfer_leadership(args.to)
    text = f"leader now {answer['leader']} (was {answer['previous']})"
    return print_done(args, answer, text)
