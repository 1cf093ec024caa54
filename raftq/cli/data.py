"""``raftq data``: check a node's data dir, back up and restore its snapshot (offline tools:
they read files, they do not talk to the cluster)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from raftq.cli.common import EXIT_FAILED, EXIT_OK, CliError, Parser

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
        parents=list(parents),
        help="copy a node's latest snapshot to a file (safe while the node runs)",
        description="Copy the snapshot file of a node's data dir to OUT and verify the copy. "
        "Safe while the node runs: it replaces its snapshot atomically.",
    )
    backup.add_argument("dir", type=Path, metavar="DIR", help="the node's data dir")
    backup.add_argument("out", type=Path, metavar="OUT", help="the backup file to write")
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
    from raftq.raft.backup import backup  # noqa: PLC0415

    info = backup(args.dir, args.out)
    h = info.header
    print(
        f"{args.out}: snapshot up to entry {h.last[1]} (term {h.last[2]}), {info.file_size} bytes"
    )
    return EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    from raftq.raft.backup import restore  # noqa: PLC0415

    try:
        info = restore(args.backup, args.dir)
    except FileExistsError as e:
        raise CliError(str(e)) from e
    print(f"{args.dir}: seeded with the snapshot up to entry {info.header.last[1]}")
    return EXIT_OK
