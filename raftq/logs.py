"""Logging setup for the command line. The library never calls this: only ``raftq.cli`` does,
so embedding applications keep their own logging configuration.

Every line carries the node id (when the process runs a node), the request id on lines logged
while serving a request (``raftq.log_context``), and the structured fields of audit lines. In
``text`` they follow the message as ``key=value``; in ``json`` they are keys of the object.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

from raftq.log_context import FIELDS_ATTR, current_request_id

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ContextFilter",
    "JSONFormatter",
    "LogFormat",
    "TextFormatter",
    "setup_logging",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

_HANDLER_NAME: Final = "raftq.cli"
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(raftq_node)s %(name)s: %(message)s"


class ContextFilter(logging.Filter):
    """Stamps every record with ``raftq_node`` (the node id, or ``-``) and ``raftq_request``
    (the id of the request being served, or ``None``). Installed on the CLI's handler, so
    records of any logger (PySyncObj's, aiohttp's) get them too."""

    def __init__(self, node_id: str | None) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.raftq_node = self.node_id or "-"
        record.raftq_request = current_request_id()
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields = getattr(record, FIELDS_ATTR, None)
    return dict(fields) if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <node> <logger>: <message> [request_id=...] [key=value ...]``."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "raftq_node"):  # used without ContextFilter
            record.raftq_node = "-"
        line = super().format(record)
        extra: list[str] = []
        rid = getattr(record, "raftq_request", None)
        if rid is not None:
            extra.append(f"request_id={rid}")
        extra += [f"{k}={json.dumps(v, default=str)}" for k, v in _fields(record).items()]
        if not extra:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the first line
        return f"{head} {' '.join(extra)}{sep}{tail}"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``logger``, ``msg``, ``node``,
    and ``request_id`` / ``exc`` / an audit line's fields when present."""

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
        rid = getattr(record, "raftq_request", None) or current_request_id()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in _fields(record).items():
            entry.setdefault(key, value)
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
    handler.addFilter(ContextFilter(node_id))
    if fmt == "json":
        handler.setFormatter(JSONFormatter(node_id))
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
