"""``raftq members list|add|remove|replace``: change the cluster's voters, one at a time.

The replicated membership is what counts (``GET /v1/cluster/members``); a node's TOML only
says where to reach the nodes. ``add`` asks the leader to add a voter: start the new node with
``raftq serve --join`` (it catches up, then asks for the same change itself) or start it
before. ``replace OLD NEW`` adds NEW, waits until it has caught up as a voter, then removes
OLD: never fewer voters than before.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from raftq.cli.client import _print_json, _table, open_client
from raftq.cli.common import EXIT_OK, CliError, Parser, UsageError
from raftq.config import load_config
from raftq.errors import RaftqError, Rejected

__all__ = ["add_members_command"]


def add_members_command(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser], out: Parser
) -> None:
    """Add ``raftq members`` (``parents``: the client's connection options)."""
    members = commands.add_parser(
        "members",
        parents=list(parents),
        help="list, add, remove or replace the cluster's voters",
        description="The replicated membership, changed one voter at a time (409 while a "
        "change is in flight or when the change would leave no majority connected).",
    )
    sub = members.add_subparsers(dest="members_command", metavar="COMMAND", required=True)
    listing = sub.add_parser(
        "list", parents=[*parents, out], help="the voters as the answering node knows them"
    )
    listing.set_defaults(handler=_cmd_list)
    where = Parser(add_help=False)
    where.add_argument("--api", metavar="HOST:PORT", help="the new node's API address")
    where.add_argument("--raft", metavar="HOST:PORT", help="the new node's raft address")
    where.add_argument(
        "--config", metavar="FILE", help="take --api and --raft from this TOML's [[nodes]]"
    )
    add = sub.add_parser(
        "add", parents=[*parents, out, where], help="add a voter (then start it with --join)"
    )
    add.add_argument("id", metavar="ID")
    add.set_defaults(handler=_cmd_add)
    remove = sub.add_parser(
        "remove",
        parents=[*parents, out],
        help="remove a voter (a leader removed hands leadership over first)",
    )
    remove.add_argument("id", metavar="ID", help="the member's id or raft address")
    remove.set_defaults(handler=_cmd_remove)
    replace = sub.add_parser(
        "replace",
        parents=[*parents, out, where],
        help="add NEW, wait until it votes and has caught up, then remove OLD",
    )
    replace.add_argument("old", metavar="OLD")
    replace.add_argument("new", metavar="NEW")
    replace.add_argument(
        "--wait-ms", type=int, default=120_000, metavar="MS", help="for NEW to catch up"
    )
    replace.set_defaults(handler=_cmd_replace)


def _addresses(args: argparse.Namespace, node_id: str) -> tuple[str, str]:
    api, raft = args.api, args.raft
    if args.config is not None and (api is None or raft is None):
        config = load_config(args.config)
        spec = next((n for n in config.nodes if n.id == node_id), None)
        if spec is None:
            raise UsageError(f"{args.config} has no [[nodes]] with id {node_id!r}")
        api, raft = api or spec.api, raft or spec.raft
    if api is None or raft is None:
        raise UsageError(f"give --api and --raft of {node_id}, or --config with its [[nodes]]")
    return str(api), str(raft)


def _print(args: argparse.Namespace, members: list[dict[str, Any]]) -> None:
    if args.json:
        _print_json({"members": members}, sys.stdout)
        return
    rows = [["ID", "API", "RAFT", "VOTER"]]
    for m in members:
        rows.append(
            [str(m["id"]), str(m["api"] or "-"), str(m["raft"]), "yes" if m["voter"] else "no"]
        )
    _table(rows, sys.stdout)


def _cmd_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        _print(args, client.members())
    return EXIT_OK


def _cmd_add(args: argparse.Namespace) -> int:
    api, raft = _addresses(args, args.id)
    with open_client(args) as client:
        _print(args, client.add_member(args.id, api, raft))
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        _print(args, client.remove_member(args.id))
    return EXIT_OK


def _cmd_replace(args: argparse.Namespace) -> int:
    api, raft = _addresses(args, args.new)
    with open_client(args) as client:
        if not any(m["raft"] == raft for m in client.members()):
            try:
                client.add_member(args.new, api, raft)
            except Rejected:  # NEW (started with --join) may have asked for itself meanwhile
                if not any(m["raft"] == raft for m in client.members()):
                    raise
        deadline = time.monotonic() + args.wait_ms / 1000
        while not _caught_up(client, api):
            if time.monotonic() > deadline:
                raise CliError(
                    f"{args.new} was added but has not caught up within {args.wait_ms} ms; "
                    f"{args.old} was not removed (is {args.new} running with --join?)"
                )
            time.sleep(0.2)
        _print(args, client.remove_member(args.old))
    return EXIT_OK


def _caught_up(client: Any, api: str) -> bool:
    """The new node answers, knows a leader and has applied what the leader committed."""
    try:
        view = client.cluster_of(api)
    except RaftqError:
        return False
    me = view.get("self") or {}
    return bool(me.get("ready")) and view.get("leader") is not None
