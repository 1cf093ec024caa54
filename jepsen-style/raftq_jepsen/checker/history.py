"""Read a run directory's history into operations (an invoke paired with its completion).

Event shapes are issue 6 section 3 (``jepsen-style/README.md`` lists them). An operation's
completion has the invoke's process and follows it; an invoke with no completion by the end of
the history is treated as ``info`` (its outcome is unknown). Times are the runner's monotonic
``time_ns``, one clock for every event, so real-time order between operations is exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "REFUSALS",
    "Delivery",
    "HistoryError",
    "Op",
    "is_refusal",
    "load_history",
    "pair_events",
    "payload_key",
]

INF = float("inf")

# ``error`` values of a ``fail`` that mean the state machine itself answered (HTTP 404/409):
# the op was applied and refused. Any other ``fail`` (no leader, bad request...) only says the
# op had no effect.
REFUSALS = ("stale_token", "lease_expired", "finished", "not_found")

FS = ("enqueue", "claim", "ack", "nack", "release", "heartbeat", "forged", "batch")
TYPES = ("invoke", "ok", "fail", "info")


class HistoryError(ValueError):
    """The history file does not follow the format (one readable line says where)."""


def is_refusal(error: Any) -> bool:
    return isinstance(error, str) and error.split(":", 1)[0].strip() in REFUSALS


def payload_key(payload: Any) -> str:
    """A canonical text for a payload (JSON value), so equal payloads compare equal."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One job handed out by an ``ok`` claim."""

    op: Op
    id: int
    queue: str
    payload: str  # payload_key of the payload
    priority: int
    attempt: int
    token: int


@dataclass(slots=True, eq=False)
class Op:
    """One operation: invoke plus completion. ``end_ns`` is +inf for ``info`` operations."""

    index: int  # the invoke event's index
    process: Any
    f: str
    value: dict[str, Any]
    start_ns: int
    type: str = "info"  # completion type: ok | fail | info
    end_ns: float = INF
    result: dict[str, Any] = field(default_factory=dict)  # the completion's value
    error: Any = None
    node: Any = None
    done_ns: int | None = None  # the completion's time even for info (for latency)

    @property
    def ok(self) -> bool:
        return self.type == "ok"

    def job(self) -> tuple[int, int]:
        """(id, token) of an ack / nack / release / heartbeat."""
        return int(self.value["id"]), int(self.value["token"])

    def deliveries(self) -> list[Delivery]:
        if self.f != "claim" or not self.ok:
            return []
        return [
            Delivery(
                self,
                int(j["id"]),
                str(j["queue"]),
                payload_key(j.get("payload")),
                int(j["priority"]),
                int(j["attempt"]),
                int(j["token"]),
            )
            for j in self.result.get("jobs", [])
        ]


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise HistoryError(f"{where}: {what}")


def pair_events(events: Iterable[Mapping[str, Any]]) -> list[Op]:
    """Pair invokes with completions (by process, in order); ops sorted by invoke."""
    pending: dict[Any, Op] = {}
    ops: list[Op] = []
    for n, ev in enumerate(events):
        where = f"event {ev.get('index', n)}"
        typ, f = ev.get("type"), ev.get("f")
        _need(typ in TYPES, where, f"type must be one of {TYPES}, got {typ!r}")
        _need(f in FS, where, f"f must be one of {FS}, got {f!r}")
        t_raw = ev.get("time_ns")
        _need(isinstance(t_raw, int), where, "time_ns must be an integer")
        t = int(t_raw)  # type: ignore[arg-type]
        proc = ev.get("process")
        value = ev.get("value") or {}
        _need(isinstance(value, dict), where, "value must be an object")
        if typ == "invoke":
            _need(proc not in pending, where, f"process {proc!r} invoked twice without completing")
            op = Op(int(ev.get("index", n)), proc, str(f), dict(value), int(t), node=ev.get("node"))
            pending[proc] = op
            ops.append(op)
            continue
        op_or_none = pending.pop(proc, None)
        _need(op_or_none is not None, where, f"{typ} for process {proc!r} with no invoke")
        assert op_or_none is not None
        op = op_or_none
        _need(op.f == f, where, f"completion f {f!r} does not match its invoke {op.f!r}")
        _need(t >= op.start_ns, where, "completion before its invoke")
        op.type = str(typ)
        op.result = dict(value)
        op.error = ev.get("error")
        op.done_ns = int(t)
        if ev.get("node") is not None:
            op.node = ev.get("node")
        op.end_ns = INF if typ == "info" else int(t)
    ops.sort(key=lambda o: (o.start_ns, o.index))
    return ops


def load_history(path: Path) -> list[Op]:
    """Parse ``history.jsonl``; raises ``HistoryError`` on a malformed line."""
    events: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError as e:
                raise HistoryError(f"{path.name} line {lineno}: not JSON ({e.msg})") from e
            if not isinstance(ev, dict):
                raise HistoryError(f"{path.name} line {lineno}: not a JSON object")
            events.append(ev)
    return pair_events(events)
