"""Fail-stop: how a node that can no longer keep its promises ends its process.

A node stops itself, rather than carrying on, in three cases. Each has an exit code of its own
(sysexits.h numbers) so a supervisor and an operator can tell them apart:

- ``EXIT_STATE_CORRUPT`` (70, EX_SOFTWARE): the state machine raised while applying an entry,
  a snapshot could not be loaded, or the leader replaces an entry this node already applied.
  PySyncObj's tick thread logs any exception and carries on, and it would apply the same entry
  again on a half-changed machine, so the process must end whatever the reporting callback
  (``on_fatal``) does.
- ``EXIT_STORAGE_FAILED`` (74, EX_IOERR): a write (or read) of the journal or of the term/vote
  file failed (ENOSPC, EIO). The node must not answer for an entry that is not on its disk,
  nor count one, nor vote from a term it could not record (``raftq.raft.pysyncobj.journal``).

- ``EXIT_VERSION_TOO_NEW`` (76, EX_PROTOCOL): the next log entry declares a version above the
  one this code applies (``raftq.core.codec.LOG_VERSION``): a newer raftq wrote it. Applying it
  as anything else would make this replica differ from the upgraded ones; the node stops
  with nothing applied, and starts again once its raftq is upgraded.

All end the process with ``os._exit``: from PySyncObj's tick thread a ``SystemExit`` would be
caught and logged like any other exception, and no cleanup may run that writes more.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import NoReturn

from raftq.errors import NewerVersionError

__all__ = [
    "EXIT_STATE_CORRUPT",
    "EXIT_STORAGE_FAILED",
    "EXIT_VERSION_TOO_NEW",
    "exit_process",
    "then_exit",
]

logger = logging.getLogger(__name__)

EXIT_STATE_CORRUPT = 70
EXIT_STORAGE_FAILED = 74
EXIT_VERSION_TOO_NEW = 76


def exit_process(code: int, reason: str) -> NoReturn:
    """Log ``reason`` (one line, critical) and end the process with ``code``, unconditionally:
    a failing log handler does not keep the process alive."""
    try:
        logger.critical("%s", reason)
    finally:
        os._exit(code)


def then_exit(on_fatal: Callable[[BaseException], None]) -> Callable[[BaseException], NoReturn]:
    """``on_fatal`` for reporting, then the end of the process (``EXIT_STATE_CORRUPT``, or
    ``EXIT_VERSION_TOO_NEW`` for a ``NewerVersionError``) whether it returns, raises or not."""

    def fatal(error: BaseException) -> NoReturn:
        code = EXIT_VERSION_TOO_NEW if isinstance(error, NewerVersionError) else EXIT_STATE_CORRUPT
        try:
            on_fatal(error)
        finally:
            exit_process(code, f"raftq: stopping (exit {code}): {error}")

    return fatal
