"""``raftq node drain``: stop one node for maintenance without disturbing the cluster;
``raftq upgrade status|enable``: what each node runs during a rolling upgrade, and enabling
the new log version once all run it.

It asks the node's own API (``POST /v1/node/drain``): the node stops taking claims, hands
leadership over if it has it, waits for its requests in flight and exits 0. The command then
waits until the node's API is gone, so that a script may restart or upgrade it right after.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftq.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    Parser,
    UsageError,
    positive_int,
)
from raftq.config import ClusterConfig, load_config

__all__ = ["add_node_commands", "add_upgrade_commands"]

_ENV_TOKEN = "RAFTQ_TOKEN"
_ENV_CA = "RAFTQ_CA"


def add_node_commands(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser]
) -> None:
    """Add ``raftq node drain`` to ``raftq``'s parser."""
    node = commands.add_parser("node", help="operate one node of a running cluster")
    sub = node.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    drain = sub.add_parser(
        "drain",
        parents=list(parents),
        help="stop a node cleanly: no new claims, leadership handed over, exit 0",
        description="Ask node ID of FILE to drain: it stops taking claims (workers go to the "
        "other nodes), hands leadership over if it is the leader, finishes its requests in "
        "flight and exits 0. Waits until its API is gone. Exit 0 drained, 1 refused, 3 the "
        "node did not answer or did not stop in time.",
    )
    drain.add_argument("--config", required=True, type=Path, metavar="FILE")
    drain.add_argument("--node", required=True, metavar="ID", help="the node to drain")
    drain.add_argument("--token", default=None, help=f"an admin token (default: ${_ENV_TOKEN})")
    drain.add_argument(
        "--timeout",
        type=positive_int,
        default=60,
        metavar="SECONDS",
        help="how long to wait for the node to stop (default: 60)",
    )
    drain.set_defaults(handler=_cmd_drain)


def _cmd_drain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.node not in config.node_ids:
        known = ", ".join(config.node_ids)
        raise UsageError(f"--node {args.node}: no such node in {args.config} (known: {known})")
    url = config.api_url(args.node)
    token = args.token if args.token is not None else os.environ.get(_ENV_TOKEN) or None
    context = ssl.create_default_context(cafile=os.environ.get(_ENV_CA)) if config.tls else None
    try:
        status, body = _post(f"{url}/v1/node/drain", token, context, args.timeout)
    except OSError as e:
        print(f"raftq: node {args.node} at {url} did not answer: {e}")
        return EXIT_UNREACHABLE
    if status != 200:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        print(f"raftq: node {args.node} refused to drain ({status}): {error.get('message', body)}")
        return EXIT_FAILED
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1, context=context).close()
        except (urllib.error.URLError, OSError):
            print(f"node {args.node} drained and stopped (leader now: {body.get('leader')})")
            return EXIT_OK
        time.sleep(0.1)
    print(f"raftq: node {args.node} still answers after {args.timeout} s")
    return EXIT_UNREACHABLE


def _post(
    url: str,
    token: str | None,
    context: ssl.SSLContext | None,
    timeout: float,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, None


def add_upgrade_commands(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser]
) -> None:
    """Add ``raftq upgrade status|enable`` to ``raftq``'s parser."""
    upgrade = commands.add_parser("upgrade", help="rolling upgrades: what each node runs")
    sub = upgrade.add_subparsers(dest="upgrade_command", metavar="COMMAND", required=True)
    status = sub.add_parser(
        "status",
        parents=list(parents),
        help="each node's raftq release and log version",
        description="Ask every member of the cluster (the replicated membership, as the "
        "first node of FILE that answers knows it) for GET /v1/cluster and print one line per "
        "node: "
        "its raftq release, the highest log version it applies, its role. Exit 0 when every "
        "node answered and all run the same log version, 1 when they differ, 3 when a node "
        "did not answer.",
    )
    status.add_argument("--config", required=True, type=Path, metavar="FILE")
    status.add_argument("--token", default=None, help=f"a reader token (default: ${_ENV_TOKEN})")
    status.set_defaults(handler=_cmd_upgrade_status)
    enable = sub.add_parser(
        "enable",
        parents=list(parents),
        help="enable a log version once every node runs a raftq that applies it",
        description="Ask the cluster (POST /v1/cluster/version) to enable log version N "
        "(default: the leader's own): the leader checks that every node applies it, then "
        "records it in the log. Commands of a version above the enabled one are refused until "
        "then. Exit 0 enabled, 1 refused (a node runs an older raftq or does not answer), 3 "
        "no node answered.",
    )
    enable.add_argument("--config", required=True, type=Path, metavar="FILE")
    enable.add_argument("--version", type=positive_int, default=None, metavar="N")
    enable.add_argument("--token", default=None, help=f"an admin token (default: ${_ENV_TOKEN})")
    enable.set_defaults(handler=_cmd_upgrade_enable)


def _cmd_upgrade_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    token = args.token if args.token is not None else os.environ.get(_ENV_TOKEN) or None
    context = ssl.create_default_context(cafile=os.environ.get(_ENV_CA)) if config.tls else None
    scheme = "https" if config.tls else "http"
    log_versions: set[int] = set()
    missing = False
    for nid, api in _members(config, token, context):
        if not api:
            missing = True
            print(f"{nid}  API address unknown (added at runtime without one)")
            continue
        try:
            status, body = _get(f"{scheme}://{api}/v1/cluster", token, context)
        except OSError as e:
            status, body = 0, str(e)
        me = body.get("self") if status == 200 and isinstance(body, dict) else None
        if not isinstance(me, dict):
            missing = True
            print(f"{nid}  did not answer ({status or body})")
            continue
        log_versions.add(me.get("log_version", 0))
        release, log_version = me.get("version", "?"), me.get("log_version", "?")
        enabled = me.get("enabled_version", "?")
        print(
            f"{nid}  raftq {release}  log version {log_version}  enabled {enabled}  "
            f"{me.get('role')}"
        )
    if missing:
        return EXIT_UNREACHABLE
    return EXIT_OK if len(log_versions) == 1 else EXIT_FAILED


def _members(
    config: ClusterConfig, token: str | None, context: ssl.SSLContext | None
) -> list[tuple[str, str]]:
    """``(id, api)`` of each member of the replicated membership (members added at runtime
    included, the config's removed ones left out), as the first node of the config that
    answers knows it; the config's nodes if none answers (each is then reported missing)."""
    for nid in config.node_ids:
        try:
            status, body = _get(f"{config.api_url(nid)}/v1/cluster", token, context)
        except OSError:
            continue
        members = body.get("members") if status == 200 and isinstance(body, dict) else None
        if isinstance(members, list) and members:
            found = [(str(m.get("id")), str(m.get("api") or "")) for m in members]
            order = {n: i for i, n in enumerate(config.node_ids)}  # the config's order first
            return sorted(found, key=lambda m: (order.get(m[0], len(order)), m[0]))
    return [(n.id, n.api) for n in config.nodes]


def _cmd_upgrade_enable(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    token = args.token if args.token is not None else os.environ.get(_ENV_TOKEN) or None
    context = ssl.create_default_context(cafile=os.environ.get(_ENV_CA)) if config.tls else None
    body = {} if args.version is None else {"version": args.version}
    for nid in config.node_ids:  # any node: a follower forwards to the leader
        url = f"{config.api_url(nid)}/v1/cluster/version"
        try:
            status, answer = _post(url, token, context, 30, body)
        except OSError:
            continue
        if status == 200 and isinstance(answer, dict):
            print(f"log version {answer.get('enabled_version')} enabled")
            return EXIT_OK
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        print(f"raftq: not enabled ({status}): {error.get('message', answer)}")
        return EXIT_FAILED
    print("raftq: no node of the config answered")
    return EXIT_UNREACHABLE


def _get(url: str, token: str | None, context: ssl.SSLContext | None) -> tuple[int, Any]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
