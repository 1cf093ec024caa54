"""What the ``raftq`` sub-commands share: exit codes and the CLI's own errors."""

from __future__ import annotations

import argparse
from typing import Final, Literal, NoReturn

from raftq.errors import RaftqError

__all__ = [
    "EXIT_AUTH",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TLS",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliError",
    "Parser",
    "UsageError",
    "integer",
    "non_negative_float",
    "non_negative_int",
    "positive_int",
    "prefetch_arg",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the operation failed
EXIT_USAGE: Final = 2  # bad arguments or configuration (argparse's own convention)
EXIT_UNREACHABLE: Final = 3  # no node answered, or no leader within the deadline
EXIT_AUTH: Final = 4  # a node refused the credentials (401: no or unknown token; 403: not allowed)
EXIT_TLS: Final = 5  # the TLS handshake failed (a certificate the other side does not accept)
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it


class CliError(RaftqError):
    """An operation failed for a reason the message explains (exit status 1).

    A ``RaftqError`` like every error raftq raises; ``raftq.cli.main`` tells it from the
    cluster's errors by its class, so the exit status and message stay the command line's.
    """


class UsageError(CliError):
    """Bad arguments: a wrong flag, a payload that is not JSON... (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise ``UsageError``, so ``raftq.cli.main`` reports
    them in one line and returns instead of exiting. Sub-parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- argument types (argparse ``type=``): a bad value is a one-line usage error ----------------


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def non_negative_int(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def prefetch_arg(text: str) -> int | Literal["auto"]:
    """``--prefetch``: ``auto`` or a count."""
    if text == "auto":
        return "auto"
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto or a count of jobs") from None


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds, 0 or more")
    return value


def positive_int(text: str) -> int:
    value = integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
