"""``raftq data``: check a node's data dir (offline), back up the cluster's state as of now (the
leader writes it, ``POST /v1/cluster/backup``) or a data dir's snapshot (offline), and restore a
backup into a stopped node's empty data dir (offline)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from raftq.cli.client import connection_options, open_client
from raftq.cli.common import EXIT_FAILED, EXIT_OK, CliError, Parser, UsageError, positive_int
from raftq.errors import DataError

__all__ = ["add_data_commands"]


def add_data_commands(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser]
) -> None:
    """Add ``raftq data verify|backup|restore`` to ``raftq``'s parser."""
    data = commands.add_parser("data", help="check, back up and restore a node's data dir")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    verify = sub.add_parser(
        "verify",
        parents=list(parents),
        help="check a node's data dir (snapshot, journal, term/vote file)",
        description="Check every file of a node's data dir (e.g. data/n1) the way a node does "
        "before it starts: one line per file, exit 0 if all are fine, 1 otherwise.",
    )
    verify.add_argument("dir", type=Path, metavar="DIR", help="the node's data dir")
    verify.set_defaults(handler=_cmd_verify)

    backup = sub.add_parser(
        "backup",
        parents=[*parents, connection_options()],
        help="write the cluster's state as of now to a file (asks the leader)",
        description="Ask the cluster (--nodes; an admin token if the nodes require tokens) "
        "for its state as of now: the leader writes it after a barrier, so OUT holds every "
        "write acknowledged before the command started; the copy is verified. With DIR, "
        "instead copy the latest snapshot file of that data dir (a stopped node's; it holds "
        "the state as of that node's last compaction).",
    )
    backup.add_argument(
        "paths", nargs="+", metavar="[DIR] OUT", help="the backup file to write (OUT)"
    )
    backup.add_argument(
        "--wait-ms",
        type=positive_int,
        default=120_000,
        metavar="MS",
        help="added to --timeout-ms for the leader to write and send the file (default: "
        "120000; about 13 s per million jobs)",
    )
    backup.set_defaults(handler=_cmd_backup)

    restore = sub.add_parser(
        "restore",
        parents=list(parents),
        help="seed a stopped node's empty data dir from a backup",
        description="Verify BACKUP and seed the (empty or missing) data dir DIR of a stopped "
        "node with it; restore it into every node's dir to start a new cluster from it.",
    )
    restore.add_argument("backup", type=Path, metavar="BACKUP", help="a file from 'data backup'")
    restore.add_argument("dir", type=Path, metavar="DIR", help="the node's data dir")
    restore.set_defaults(handler=_cmd_restore)


def _cmd_verify(args: argparse.Namespace) -> int:
    from raftq.raft.datadir import verify_data_dir  # noqa: PLC0415 - imports pysyncobj

    if not args.dir.is_dir():
        raise CliError(f"{args.dir}: not a directory")
    reports = verify_data_dir(str(args.dir))
    if not reports:
        print(f"{args.dir}: no node data (a node started here begins empty)")
    for r in reports:
        print(f"{'ok ' if r.ok else 'BAD'} {r.path}: {r.text}")
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def _cmd_backup(args: argparse.Namespace) -> int:
    if len(args.paths) > 2:
        raise UsageError("backup takes OUT, or DIR OUT")
    if len(args.paths) == 2:
        return _backup_dir(Path(args.paths[0]), Path(args.paths[1]))
    from raftq.raft.backup import save_backup  # noqa: PLC0415

    out = Path(args.paths[0])
    with open_client(args) as client:
        data = client.backup(wait_ms=args.wait_ms)
    try:
        info = save_backup(data, out)
    except DataError as e:
        raise CliError(f"{out}: the backup received is damaged ({e.problem}); run it again") from e
    _, index, term = info.header.last
    print(f"{out}: the cluster's state up to entry {index} (term {term}), {info.file_size} bytes")
    return EXIT_OK


def _backup_dir(node_dir: Path, out: Path) -> int:
    """The offline copy of a data dir's snapshot file (``raftq data backup DIR OUT``)."""
    from raftq.raft.backup import backup  # noqa: PLC0415

    try:
        info = backup(node_dir, out)
    except DataError as e:
        hint = (
            "that node has not written a snapshot yet (a young node's state is in its journal)"
            if e.problem == "missing"
            else e.problem
        )
        raise CliError(
            f"{e.path}: {hint}: no backup written; back up the running cluster with "
            f"`raftq data backup {out}` (--nodes, an admin token): it holds the state as of now"
        ) from e
    h = info.header
    print(
        f"{out}: snapshot up to entry {h.last[1]} (term {h.last[2]}), {info.file_size} bytes, "
        "as of that node's last compaction"
    )
    return EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    from raftq.raft.backup import restore  # noqa: PLC0415

    try:
        info = restore(args.backup, args.dir)
    except FileExistsError as e:
        raise CliError(str(e)) from e
    except DataError as e:
        if e.path != str(args.backup):
            raise
        raise CliError(
            f"snapshot file {e.path}: {e.problem}; not a backup this raftq can restore, "
            "nothing written"
        ) from e
    print(f"{args.dir}: seeded with the snapshot up to entry {info.header.last[1]}")
    return EXIT_OK
