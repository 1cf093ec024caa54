"""Logging setup for the command line. The library never calls this: only ``raftq.cli`` does,
so embedding applications keep their own logging configuration."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JSONFormatter", "LogFormat", "setup_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

_HANDLER_NAME: Final = "raftq.cli"
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``logger``, ``msg``, and ``node``
    / ``exc`` when known."""

    def __init__(self, node_id: str | None = None) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, object] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.node_id is not None:
            entry["node"] = self.node_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(
    level: str = "info",
    fmt: LogFormat = "text",
    *,
    node_id: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send every log record at ``level`` and above to ``stream`` (stderr by default).

    Replaces the handler a previous call installed, so calling it twice does not duplicate
    lines; handlers installed by others are left alone.
    """
    handler: logging.StreamHandler[TextIO] = logging.StreamHandler(
        stream if stream is not None else sys.stderr
    )
    handler.set_name(_HANDLER_NAME)
    if fmt == "json":
        handler.setFormatter(JSONFormatter(node_id))
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
