"""The ``raftq`` command: parse arguments, set up logging, call the library.

``main(argv) -> int`` never raises and never prints a traceback: an error is one line on
stderr (``raftq: error: ...``; a config error lists each of its problems on its own line) and
an exit code:

====  =====================================================================
0     success
1     the operation failed (refused by the cluster, outcome unknown, a node died, ...)
2     usage or configuration error, or a node that cannot start here (a port taken, its
      data dir in use)
3     cannot reach the cluster (no node answers, or no leader within the deadline)
4     a node refused the credentials: 401 (no token, or one the cluster does not know) or
      403 (the token's role or queues do not allow the call)
5     the TLS handshake with a node failed (its certificate cannot be verified: --tls-ca; or
      it requires a client certificate: --tls-cert/--tls-key)
130   interrupted (Ctrl-C) during a client command
====  =====================================================================

Set ``--log-level debug`` to see the traceback of an unexpected error in the log.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn

from raftq._version import __version__
from raftq.cli.bench import add_bench_command
from raftq.cli.client import add_client_commands
from raftq.cli.common import (
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TLS,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    Parser,
    UsageError,
    non_negative_float,
)
from raftq.cli.data import add_data_commands
from raftq.cli.node import add_node_commands, add_upgrade_commands
from raftq.cli.token import add_token_command
from raftq.cli.worker import add_worker_command
from raftq.config import load_config
from raftq.errors import (
    AuthError,
    ConfigError,
    MembershipError,
    NoLeader,
    OutcomeUnknown,
    RaftqError,
    Rejected,
    StartRefused,
    TlsError,
    TransportError,
)
from raftq.logs import LOG_FORMATS, LOG_LEVELS, LogFormat, setup_logging

__all__ = ["build_parser", "main", "main_entry"]

logger = logging.getLogger(__name__)

_PROG: Final = "raftq"

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every sub-command sets ``handler``)."""
    parser = Parser(
        prog=_PROG,
        description="raftq: a distributed job queue with no external broker.",
        epilog="Exit codes: 0 ok, 1 operation failed, 2 usage or config error, "
        "3 cannot reach the cluster, 4 credentials refused (401/403), 5 TLS handshake "
        "failed. Operations guide: docs/operations.md",
    )
    parser.add_argument("-V", "--version", action="version", version=f"raftq {__version__}")
    logs = Parser(add_help=False)
    logs.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=None,
        help="log threshold (default: info for nodes, warning for client commands)",
    )
    logs.add_argument("--log-format", choices=LOG_FORMATS, default="text", help="default: text")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        parents=[logs],
        help="run one node of a cluster",
        description="Run one node until SIGINT or SIGTERM.",
    )
    _add_config_argument(serve)
    serve.add_argument("--node", required=True, metavar="ID", help="which node of the config")
    serve.add_argument(
        "--join",
        metavar="HOST:PORT",
        default=None,
        help="join the running cluster that a member at this API address belongs to (a new "
        "data dir starts with the cluster's voters, then asks to be added; RAFTQ_TOKEN: an "
        "admin token where tokens are configured)",
    )
    serve.set_defaults(handler=_cmd_serve)

    cluster = commands.add_parser("cluster", help="run a whole cluster on this machine")
    cluster_commands = cluster.add_subparsers(
        dest="cluster_command", metavar="COMMAND", required=True
    )
    up = cluster_commands.add_parser(
        "up",
        parents=[logs],
        help="start every node of a config file as child processes",
        description="Start every node of FILE on this machine, print their API URLs, copy "
        "their output prefixed with the node id, and stop them all on Ctrl-C or SIGTERM. "
        "A node that dies is reported and the others keep serving; it is started again "
        "with --restart-dead, or when you type r and Enter. Exits non-zero at the end if a "
        "node died.",
    )
    _add_config_argument(up)
    up.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long nodes get to exit after SIGTERM before SIGKILL (default: 10)",
    )
    up.add_argument(
        "--restart-dead",
        type=non_negative_float,
        nargs="?",
        const=1.0,
        default=None,
        metavar="SECONDS",
        help="start a node that died again after SECONDS (default when given: 1); a node "
        "that keeps dying right after its start, or refuses its config, is left down",
    )
    up.set_defaults(handler=_cmd_cluster_up)

    add_client_commands(commands, parents=[logs])
    add_worker_command(commands, parents=[logs])
    add_data_commands(commands, parents=[logs])
    add_node_commands(commands, parents=[logs])
    add_upgrade_commands(commands, parents=[logs])
    add_token_command(commands, parents=[logs])
    add_bench_command(commands, parents=[logs])
    return parser


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="the cluster's TOML file"
    )


def _setup_logging(args: argparse.Namespace, default: str, node_id: str | None = None) -> None:
    level: str = args.log_level or default
    fmt: LogFormat = "json" if args.log_format == "json" else "text"
    setup_logging(level, fmt, node_id=node_id)


def _cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.node not in config.node_ids:
        known = ", ".join(config.node_ids)
        raise UsageError(f"--node {args.node}: no such node in {args.config} (known: {known})")
    _setup_logging(args, "info", node_id=args.node)
    from raftq.node.process import run_node  # noqa: PLC0415 - only `serve` needs the server stack

    if args.join is None:
        return run_node(config, args.node)
    return run_node(config, args.node, join=args.join)


def _cmd_cluster_up(args: argparse.Namespace) -> int:
    from raftq.cli.cluster import run_cluster, serve_command  # noqa: PLC0415

    config = load_config(args.config)
    _setup_logging(args, "warning")
    if config.source is None:  # never: load_config records the file
        raise CliError("the config has no source file")
    command = serve_command(config.source, log_level=args.log_level, log_format=args.log_format)
    return run_cluster(
        config, command, stop_timeout_s=args.stop_timeout, restart_dead_s=args.restart_dead
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``raftq`` command line with ``argv`` (``sys.argv[1:]`` when ``None``).

    Returns:
        The process exit code; see the module docstring.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        return _fail(str(e), EXIT_USAGE)
    except SystemExit as e:  # --help and --version print and "exit" with 0
        return e.code if isinstance(e.code, int) else 0
    handler: Handler = args.handler
    try:
        return handler(args)
    except BaseException as e:  # the one place that turns errors into exit codes
        return _report(e, args)


def _report(exc: BaseException, args: argparse.Namespace) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return _fail("interrupted", EXIT_INTERRUPTED)
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    # StartRefused: a port taken, a data dir in use (nothing in the data dir touched).
    if isinstance(exc, MembershipError | StartRefused):
        return _fail(str(exc), EXIT_USAGE)
    if isinstance(exc, ConfigError):
        return _fail(_config_message(exc, getattr(args, "config", None)), EXIT_USAGE)
    if isinstance(exc, UsageError):
        return _fail(str(exc), EXIT_USAGE)
    if isinstance(exc, TlsError | AuthError):
        return _refused(exc)
    if isinstance(exc, TransportError | NoLeader):
        return _fail(f"cannot reach the cluster: {exc}", EXIT_UNREACHABLE)
    if isinstance(exc, Rejected):
        return _fail(f"refused ({exc.reason}): {exc}", EXIT_FAILED)
    if isinstance(exc, OutcomeUnknown):
        return _fail(f"outcome unknown, the operation may have been applied: {exc}", EXIT_FAILED)
    if isinstance(exc, CliError | RaftqError):
        return _fail(str(exc), EXIT_FAILED)
    if isinstance(exc, OSError):
        logger.debug("OS error", exc_info=exc)
        detail = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{detail}", EXIT_FAILED)
    if isinstance(exc, Exception):
        logger.debug("unexpected error", exc_info=exc)
        message = f"unexpected {type(exc).__name__}: {exc} (--log-level debug shows more)"
        return _fail(message, EXIT_FAILED)
    raise exc  # GeneratorExit and other non-Exception BaseExceptions are not ours to swallow


# What to do, on the command line, about each kind of TLS failure (``TlsError.kind``).
_TLS_FIX: Final = {
    "client_cert": "pass --tls-cert and --tls-key (or set RAFTQ_CERT and RAFTQ_KEY)",
    "server_cert": "pass --tls-ca (or set RAFTQ_CA) with the CA that signed the nodes' "
    "certificates",
    "handshake": "check --nodes and --tls-ca/--tls-cert/--tls-key",
}


def _refused(exc: TlsError | AuthError) -> int:
    """A node refused these credentials: what it refused, and the option that fixes it."""
    if isinstance(exc, TlsError):
        return _fail(f"{exc.problem}; {_TLS_FIX.get(exc.kind, _TLS_FIX['handshake'])}", EXIT_TLS)
    return _fail(f"not allowed: {exc.problem}; {_auth_fix(exc)}", EXIT_AUTH)


def _auth_fix(exc: AuthError) -> str:
    """What to do, on the command line, about a refused credential."""
    if exc.status == 403:
        return "use a token whose role and queues allow this (docs/security.md)"
    if exc.token_sent:
        return "the token is not one of the cluster's: check --token / RAFTQ_TOKEN"
    return "pass --token or set RAFTQ_TOKEN"


def _config_message(exc: ConfigError, where: object) -> str:
    problems = exc.problems or [str(exc)]
    if len(problems) == 1 and where is not None and str(where) in problems[0]:
        return problems[0]  # already names the file ("cannot read config file F: ...")
    head = f"invalid configuration in {where}:" if where is not None else "invalid configuration:"
    if len(problems) == 1:
        return f"{head} {problems[0]}"
    return "\n  - ".join([head, *problems])


def _fail(message: str, code: int) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return code


def main_entry() -> NoReturn:
    """Console-script entry point (``raftq``)."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # `raftq queues | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)
