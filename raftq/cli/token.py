"""``raftq token new``: make an API token and the hash that goes in the config file.

The token is printed once, for the client (``RAFTQ_TOKEN``); the config file keeps only its
SHA-256 (``[[auth.tokens]] sha256``), so reading the config never yields a usable token.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
from collections.abc import Sequence

from raftq.cli.common import EXIT_OK, Parser

__all__ = ["TOKEN_BYTES", "add_token_command", "new_token"]

TOKEN_BYTES = 32  # 256 bits from the OS's CSPRNG: not guessable, not worth brute-forcing


def new_token() -> tuple[str, str]:
    """A fresh random token and its lowercase hex SHA-256."""
    token = "rq_" + secrets.token_urlsafe(TOKEN_BYTES)
    return token, hashlib.sha256(token.encode()).hexdigest()


def add_token_command(
    commands: argparse._SubParsersAction[Parser], *, parents: Sequence[Parser]
) -> None:
    """Add ``raftq token new`` to ``raftq``'s parser."""
    token = commands.add_parser("token", help="make API tokens")
    sub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    new = sub.add_parser(
        "new",
        parents=list(parents),
        help="print a new random token and its SHA-256",
        description="Print a new random token (give it to the client, e.g. as RAFTQ_TOKEN) and "
        "an [[auth.tokens]] entry holding only its SHA-256 (put that in the config file).",
    )
    new.add_argument("--name", default="client", help="the entry's name (default: client)")
    new.add_argument(
        "--role",
        default="producer",
        choices=("admin", "producer", "worker", "reader"),
        help="the entry's role (default: producer)",
    )
    new.add_argument(
        "--queue",
        action="append",
        default=None,
        metavar="PATTERN",
        help="a queue pattern for the entry (repeatable; default: all queues)",
    )
    new.add_argument("--json", action="store_true", help="print {token, sha256} as JSON")
    new.set_defaults(handler=_cmd_token_new)


def _cmd_token_new(args: argparse.Namespace) -> int:
    token, digest = new_token()
    if args.json:
        print(json.dumps({"token": token, "sha256": digest}))
        return EXIT_OK
    queues = args.queue or ["*"]
    print(f"token:  {token}")
    print(f"sha256: {digest}")
    print()
    print("# for the config file (the token itself is not in it):")
    print("[[auth.tokens]]")
    print(f"name = {json.dumps(args.name)}")
    print(f'sha256 = "{digest}"')
    print(f'role = "{args.role}"')
    print(f"queues = {json.dumps(queues)}")
    return EXIT_OK
