"""The client sub-commands of ``raftq``: enqueue, status, queues, job, dead.

Each one opens a ``raftq.client.SyncClient`` on the nodes of ``--nodes`` / ``RAFTQ_NODES``,
does one thing, and prints the answer for people (aligned columns) or, with ``--json``, as one
JSON document for scripts. Errors propagate to ``raftq.cli.main``, which maps them to exit
codes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

from raftq.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    Parser,
    UsageError,
    integer,
    non_negative_int,
    positive_int,
)
from raftq.errors import AuthError, RaftqError, TlsError

if TYPE_CHECKING:
    import ssl as ssl_module

    from raftq.client import SyncClient

__all__ = [
    "DEFAULT_NODES",
    "ENV_NODES",
    "ENV_TOKEN",
    "add_client_commands",
    "add_tls_arguments",
    "connection_options",
    "node_list",
    "open_client",
    "tls_context",
]

ENV_NODES: Final = "RAFTQ_NODES"
ENV_TOKEN: Final = "RAFTQ_TOKEN"
ENV_CA: Final = "RAFTQ_CA"  # CA file that signed the nodes' certificates (https)
ENV_CERT: Final = "RAFTQ_CERT"  # client certificate, for nodes that require one (mutual TLS)
ENV_KEY: Final = "RAFTQ_KEY"
DEFAULT_NODES: Final = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"


def connection_options() -> Parser:
    """The parent parser of every command that talks to the cluster (``open_client``):
    ``--nodes``, ``--token``, the TLS options, ``--timeout-ms``."""
    conn = Parser(add_help=False)
    conn.add_argument(
        "--nodes",
        metavar="HOST:PORT,...",
        default=None,
        help=f"API addresses of some nodes (default: ${ENV_NODES}, else {DEFAULT_NODES})",
    )
    conn.add_argument("--token", default=None, help=f"API token (default: ${ENV_TOKEN})")
    add_tls_arguments(conn)
    conn.add_argument(
        "--timeout-ms",
        type=positive_int,
        default=10_000,
        metavar="MS",
        help="give up after this long (default: 10000)",
    )
    return conn


def add_client_commands(
    commands: argparse._SubParsersAction[Parser],
    *,
    parents: Sequence[Parser],
) -> None:
    """Add the client sub-commands to ``raftq``'s parser."""
    common = [*parents, connection_options()]
    out = Parser(add_help=False)
    out.add_argument("--json", action="store_true", help="print JSON for scripts")

    enqueue = commands.add_parser(
        "enqueue",
        parents=common,
        help="add a job to a queue and print its id",
        description="Add a job; PAYLOAD is a JSON value ('-' reads it from stdin).",
    )
    enqueue.add_argument("queue", metavar="QUEUE")
    enqueue.add_argument("payload", metavar="PAYLOAD", help="JSON, or - for stdin")
    enqueue.add_argument("--priority", type=_priority, default=0, help="0..9, 9 most urgent")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--delay-ms", type=non_negative_int, metavar="MS", help="run after MS")
    when.add_argument("--run-at-ms", type=non_negative_int, metavar="MS", help="run at (epoch ms)")
    enqueue.add_argument("--key", help="idempotency key: the same key enqueues once")
    enqueue.add_argument("--max-attempts", type=positive_int, metavar="N")
    enqueue.add_argument("--lease-ms", type=positive_int, metavar="MS")
    enqueue.set_defaults(handler=_cmd_enqueue)

    status = commands.add_parser(
        "status",
        parents=[*common, out],
        help="one line per node: role, term, applied index, lag, reachable, leader",
        description="Ask every node for its own view of the cluster, once each (--timeout-ms "
        "per node, default 2000 here). LAG is how many committed entries a node has yet to "
        'apply. With --json: {"nodes": [...]}, each with the node\'s own GET /v1/cluster '
        'answer under "cluster". Exits 3 when no node answers.',
    )
    status.set_defaults(handler=_cmd_status, timeout_ms=2_000)
    from raftq.cli.members import add_members_command  # noqa: PLC0415 - imports this module

    add_members_command(commands, parents=common, out=out)
    from raftq.cli.admin import add_admin_commands  # noqa: PLC0415 - imports this module

    add_admin_commands(commands, parents=common, out=out)
    from raftq.cli.schedules import add_schedules_command  # noqa: PLC0415 - imports this module

    add_schedules_command(commands, parents=common, out=out)

    top = commands.add_parser(
        "top",
        parents=[*common, out],
        help="live view of queues and rates until Ctrl-C",
        description="Redraw the queues (depth by state) and their rates (jobs/s enqueued, "
        "succeeded, failed, dead-lettered, from two successive readings) until Ctrl-C. With "
        "--json: one JSON object per refresh and line.",
    )
    top.add_argument(
        "--interval-ms",
        type=positive_int,
        default=1_000,
        metavar="MS",
        help="refresh period (default: 1000)",
    )
    top.add_argument(
        "--iterations", type=positive_int, default=None, metavar="N", help="stop after N refreshes"
    )
    top.set_defaults(handler=_cmd_top, timeout_ms=2_000)

    queues = commands.add_parser(
        "queues", parents=[*common, out], help="list queues with their depth by state"
    )
    queues.set_defaults(handler=_cmd_queues)

    job = commands.add_parser("job", parents=[*common, out], help="show one job")
    job.add_argument("job_id", metavar="ID", type=non_negative_int)
    job.add_argument(
        "--linearizable", action="store_true", help="read through the leader (fresh, slower)"
    )
    job.set_defaults(handler=_cmd_job)

    batch = commands.add_parser(
        "batch", parents=[*common, out], help="show a batch: its jobs by state, callbacks fired"
    )
    batch.add_argument("batch_id", metavar="ID", type=non_negative_int)
    batch.set_defaults(handler=_cmd_batch)

    dead = commands.add_parser(
        "dead",
        parents=[*common, out],
        help="list a queue's dead letters, or requeue them",
        description="List the dead letters of QUEUE; with --requeue, put them back (all of "
        "them, or only the IDS given).",
    )
    dead.add_argument("queue", metavar="QUEUE")
    dead.add_argument(
        "--limit", type=positive_int, default=100, help="list at most N (default: 100)"
    )
    dead.add_argument(
        "--requeue", nargs="*", type=non_negative_int, metavar="ID", help="requeue (all, or IDS)"
    )
    dead.set_defaults(handler=_cmd_dead)


# --- argument types ---------------------------------------------------------------------------


def _priority(text: str) -> int:
    value = integer(text)
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..9")
    return value


# --- the client -------------------------------------------------------------------------------


def node_list(arg: str | None, env: Mapping[str, str]) -> list[str]:
    """``--nodes`` if given, else ``$RAFTQ_NODES``, else the three-node example's API ports."""
    text = arg if arg is not None else env.get(ENV_NODES) or DEFAULT_NODES
    nodes = [n.strip() for n in text.split(",") if n.strip()]
    if not nodes:
        raise UsageError("--nodes lists no node")
    return nodes


@contextmanager
def open_client(args: argparse.Namespace, *, retry: bool = True) -> Iterator[SyncClient]:
    """A ``SyncClient`` for the command's connection options: each attempt and the whole
    retry budget are bounded by ``--timeout-ms``; ``retry=False`` makes one attempt only."""
    from raftq.client import SyncClient  # noqa: PLC0415 - keeps `raftq --help` and `serve` light

    nodes = node_list(args.nodes, os.environ)
    token = args.token if args.token is not None else os.environ.get(ENV_TOKEN) or None
    retry_ms = args.timeout_ms if retry else 0
    ssl = tls_context(args, os.environ)
    with SyncClient(
        nodes, timeout_ms=args.timeout_ms, retry_ms=retry_ms, token=token, ssl=ssl
    ) as client:
        yield client


def add_tls_arguments(parser: Parser) -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key``: https with that CA, and a client
    certificate for nodes that require one."""
    parser.add_argument(
        "--tls-ca",
        default=None,
        metavar="FILE",
        help=f"trust this CA for https (default: ${ENV_CA})",
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help=f"client certificate for mutual TLS (default: ${ENV_CERT})",
    )
    parser.add_argument(
        "--tls-key", default=None, metavar="FILE", help=f"its private key (default: ${ENV_KEY})"
    )


def tls_context(args: argparse.Namespace, env: Mapping[str, str]) -> ssl_module.SSLContext | None:
    """The TLS context of ``--tls-ca/--tls-cert/--tls-key`` (or their environment
    variables); ``None`` when none is set (plain http, or https:// addresses with the system's
    CAs)."""
    from raftq.tls import client_context  # noqa: PLC0415

    ca = args.tls_ca if args.tls_ca is not None else env.get(ENV_CA) or None
    cert = args.tls_cert if args.tls_cert is not None else env.get(ENV_CERT) or None
    key = args.tls_key if args.tls_key is not None else env.get(ENV_KEY) or None
    if ca is None and cert is None and key is None:
        return None
    return client_context(ca, cert, key)


# --- output -----------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return str(value)


def _dumps(value: object, *, indent: int | None = None) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, indent=indent)


def _print_json(value: object, out: TextIO) -> None:
    print(_dumps(value, indent=2), file=out)


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _time(ms: object) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return _text(ms)
    iso = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return f"{ms} ({iso.replace('+00:00', 'Z')})"


# --- commands ---------------------------------------------------------------------------------


def _read_payload(text: str) -> Any:
    source = "stdin" if text == "-" else "PAYLOAD"
    raw = sys.stdin.read() if text == "-" else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{source} is not JSON ({e.msg} at line {e.lineno} column {e.colno}); "
            "quote a string payload as '\"text\"'"
        ) from None


def _cmd_enqueue(args: argparse.Namespace) -> int:
    payload = _read_payload(args.payload)
    with open_client(args) as client:
        job_id = client.enqueue(
            args.queue,
            payload,
            priority=args.priority,
            delay_ms=args.delay_ms,
            run_at_ms=args.run_at_ms,
            key=args.key,
            max_attempts=args.max_attempts,
            lease_ms=args.lease_ms,
        )
    print(job_id)
    return EXIT_OK


def _address(node: str) -> str:
    """``host:port`` of a node given as ``host:port`` or as a URL, for comparing the two."""
    if "://" in node:
        node = node.split("://", 1)[1]
    return node.split("/", 1)[0]


def _node_row(
    api: str, member: Mapping[str, Any], view: Mapping[str, Any] | None
) -> dict[str, Any]:
    me: Mapping[str, Any] = view.get("self", {}) if view else {}
    return {
        "id": me.get("id", member.get("id")),
        "api": api,
        "reachable": view is not None,
        "role": me.get("role"),
        "term": me.get("term"),
        "commit_index": me.get("commit_index"),
        "applied_index": me.get("applied_index"),
        "lag": None,  # filled by _add_lag
        "digest": me.get("digest"),
        "leader": view.get("leader") if view else None,
        "cluster": view,  # the node's own GET /v1/cluster answer, as it is (None: no answer)
    }


def _add_lag(rows: list[dict[str, Any]]) -> None:
    """``lag``: how many committed entries a node has yet to apply, against the leader's commit
    index (``None`` when no reachable node is the leader)."""
    commits = [r["commit_index"] for r in rows if r["role"] == "leader"]
    commit = commits[0] if len(commits) == 1 and isinstance(commits[0], int) else None
    for r in rows:
        applied = r["applied_index"]
        if commit is not None and isinstance(applied, int):
            r["lag"] = max(0, commit - applied)


def _views(
    client: SyncClient, nodes: Sequence[str], refusals: list[RaftqError] | None = None
) -> list[dict[str, Any]]:
    """Ask each node of ``nodes``, then each member they report, for its own view (one
    attempt each). Rows follow the cluster's member order, then addresses it does not list.
    ``refusals`` collects the nodes' refusals of the credentials (401/403, TLS): such a node
    answered, only not to these credentials."""
    views: dict[str, Mapping[str, Any] | None] = {}
    members: dict[str, Mapping[str, Any]] = {}
    pending = [_address(n) for n in nodes]
    while pending:
        api = pending.pop(0)
        if api in views:
            continue
        try:
            view: Mapping[str, Any] | None = client.cluster_of(api)
        except (AuthError, TlsError) as e:
            view = None
            if refusals is not None:
                refusals.append(e)
        except RaftqError:
            view = None
        views[api] = view
        if view and not members:
            # The config's nodes, then the voters it does not list (added at runtime).
            for m in [*view.get("nodes", []), *view.get("members", [])]:
                if isinstance(m, Mapping) and isinstance(m.get("api"), str):
                    members.setdefault(_address(m["api"]), m)
            pending += [a for a in members if a not in views]
    order = [*members, *(a for a in views if a not in members)]
    rows = [_node_row(api, members.get(api, {}), views.get(api)) for api in order]
    _add_lag(rows)
    return rows


def _diverged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The applied indexes at which the answering nodes report different digests, each with
    ``{digest: [node, ...]}`` (largest group first). Replicas that applied the same entries
    have the same digest, so any difference there means a node diverged; nodes at different
    indexes are not compared."""
    by_index: dict[int, dict[str, list[str]]] = {}
    for r in rows:
        index, digest = r["applied_index"], r["digest"]
        if r["reachable"] and isinstance(index, int) and isinstance(digest, str):
            name = str(r["id"] or r["api"])
            by_index.setdefault(index, {}).setdefault(digest, []).append(name)
    found = []
    for index in sorted(by_index):
        groups = by_index[index]
        if len(groups) > 1:
            order = sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))
            found.append({"applied_index": index, "digests": dict(order)})
    return found


def _diverged_line(d: Mapping[str, Any]) -> str:
    groups = "; ".join(f"{', '.join(ids)}: {digest[:12]}" for digest, ids in d["digests"].items())
    return (
        f"raftq: error: DIGESTS DIFFER at applied index {d['applied_index']} ({groups}): "
        "these replicas diverged; stop the node(s) whose digest differs from the majority's, "
        "move their data dir aside and start them again empty (docs/operations.md, "
        '"Digests differ")'
    )


def _cmd_status(args: argparse.Namespace) -> int:
    nodes = node_list(args.nodes, os.environ)
    refusals: list[RaftqError] = []
    with open_client(args, retry=False) as client:
        rows = _views(client, nodes, refusals)
    diverged = _diverged(rows)
    if args.json:
        _print_json({"nodes": rows, "diverged": diverged}, sys.stdout)
    else:
        table = [
            ["NODE", "API", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "DIGEST", "REACHABLE", ""]
        ]
        for r in rows:
            digest = r["digest"]
            table.append(
                [
                    _text(r["id"] or r["api"]),
                    _text(r["api"]),
                    _text(r["role"]),
                    _text(r["term"]),
                    _text(r["commit_index"]),
                    _text(r["applied_index"]),
                    _text(r["lag"]),
                    digest[:12] if isinstance(digest, str) else "-",
                    "yes" if r["reachable"] else "NO",
                    "* leader" if r["role"] == "leader" else "",
                ]
            )
        _table(table, sys.stdout)
    if not any(r["reachable"] for r in rows):
        if refusals:  # they answered, and refused these credentials: say so (exit 4 or 5)
            raise refusals[0]
        print(f"raftq: error: no node answered (tried {', '.join(nodes)})", file=sys.stderr)
        return EXIT_UNREACHABLE
    for d in diverged:
        print(_diverged_line(d), file=sys.stderr)
    return EXIT_FAILED if diverged else EXIT_OK


def _cmd_top(args: argparse.Namespace) -> int:
    from raftq.cli.top import run_top  # noqa: PLC0415 - only `top` needs it

    with open_client(args) as client:
        return run_top(client, args)


def _cmd_queues(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        queues = client.queues()
    if args.json:
        _print_json(queues, sys.stdout)
        return EXIT_OK
    if not queues:
        print("no queues")
        return EXIT_OK
    table = [["QUEUE", "PAUSED", "QUEUED", "DELAYED", "LEASED", "DEAD"]]
    for q in queues:
        depth: Mapping[str, Any] = q.get("depth") or {}
        table.append(
            [
                _text(q.get("queue")),
                "yes" if q.get("paused") else "no",
                *(_text(depth.get(k, 0)) for k in ("queued", "delayed", "leased", "dead")),
            ]
        )
    _table(table, sys.stdout)
    return EXIT_OK


_JOB_FIELDS: Final = ("id", "queue", "state", "priority", "attempts", "max_attempts")
_JOB_TIMES: Final = ("run_at_ms", "created_ms")
_JOB_VALUES: Final = ("payload", "result", "error", "progress", "checkpoint")


def _cmd_job(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        job = client.get_job(args.job_id, linearizable=args.linearizable)
    if args.json:
        _print_json(job, sys.stdout)
        return EXIT_OK
    rows = [[f"{k}:", _text(job.get(k))] for k in _JOB_FIELDS]
    rows += [[f"{k}:", _time(job.get(k))] for k in _JOB_TIMES]
    rows += [[f"{k}:", _dumps(job.get(k))] for k in _JOB_VALUES]
    if "cancel_requested" in job:  # a long job's worker was asked to stop
        rows.append(["cancel_requested:", "yes" if job["cancel_requested"] else "no"])
    if "dependencies" in job:  # one "id state" per dependency, then the policy
        deps = ", ".join(f"{d['id']} {d['state']}" for d in job["dependencies"])
        rows.append(["dependencies:", deps or "-"])
        rows.append(["on_dependency_failure:", _text(job.get("on_dependency_failure"))])
    shown = {*_JOB_FIELDS, *_JOB_TIMES, *_JOB_VALUES, "dependencies", "on_dependency_failure"}
    shown.add("cancel_requested")
    rows += [[f"{k}:", _dumps(v)] for k, v in job.items() if k not in shown]
    _table(rows, sys.stdout)
    return EXIT_OK


def _cmd_batch(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        batch = client.batch(args.batch_id)
    if args.json:
        _print_json(batch, sys.stdout)
        return EXIT_OK
    counts = batch["counts"]
    rows = [
        ["batch:", str(batch["batch"])],
        ["jobs:", f"{batch['total']} ({'all finished' if batch['done'] else 'running'})"],
        *([f"{state}:", str(n)] for state, n in counts.items() if n),
        ["fired:", ", ".join(batch["fired"]) or "-"],
    ]
    _table(rows, sys.stdout)
    return EXIT_OK


def _cmd_dead(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        if args.requeue is not None:
            count = client.requeue_dead(args.queue, args.requeue or None)
            if args.json:
                _print_json({"requeued": count}, sys.stdout)
            else:
                print(f"requeued {count} job(s) of {args.queue}")
            return EXIT_OK
        jobs = client.dead(args.queue, limit=args.limit)
    if args.json:
        _print_json(jobs, sys.stdout)
        return EXIT_OK
    if not jobs:
        print(f"no dead letters in {args.queue}")
        return EXIT_OK
    table = [["ID", "ATTEMPTS", "ERROR"]]
    for j in jobs:
        error = _dumps(j.get("error"))
        table.append(
            [
                _text(j.get("id")),
                _text(j.get("attempts")),
                error[:80] + ("..." if len(error) > 80 else ""),
            ]
        )
    _table(table, sys.stdout)
    return EXIT_OK
