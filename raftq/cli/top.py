"""``raftq top``: a live view of the queues and their rates, redrawn until Ctrl-C.

Rates are computed here from the ``totals`` counters of two successive ``GET /v1/queues``
readings (the same counters as ``raftq_jobs_total``), so they hold whichever node answers.
Plain ANSI (clear screen, home) on a terminal; frames one after the other otherwise; with
``--json``, one JSON object per refresh and line (NDJSON) for scripts. No third-party
terminal library: a redrawn table is all this needs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

from raftq.cli.common import EXIT_OK
from raftq.errors import RaftqError

if TYPE_CHECKING:
    from raftq.client import SyncClient

__all__ = ["Reading", "frame", "rates", "run_top"]

_CLEAR: Final = "\x1b[H\x1b[2J"
_RATES: Final = ("enqueued", "succeeded", "failed", "dead")
_STATES: Final = ("queued", "delayed", "leased", "dead")


@dataclass(frozen=True, slots=True)
class Reading:
    at_s: float  # time.monotonic() of the reading
    queues: list[dict[str, Any]]
    cluster: dict[str, Any] | None
    error: str | None = None


def rates(before: Reading | None, now: Reading) -> dict[str, dict[str, float | None]]:
    """Per queue, events per second of each outcome of ``_RATES`` between two readings."""
    old = {q.get("queue"): q.get("totals") or {} for q in before.queues} if before else {}
    dt = now.at_s - before.at_s if before else 0.0
    out: dict[str, dict[str, float | None]] = {}
    for q in now.queues:
        name = str(q.get("queue"))
        totals: Mapping[str, Any] = q.get("totals") or {}
        prev = old.get(name)
        if prev is None or dt <= 0:
            out[name] = dict.fromkeys(_RATES)
        else:
            out[name] = {k: max(0.0, (totals.get(k, 0) - prev.get(k, 0)) / dt) for k in _RATES}
    return out


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def frame(reading: Reading, queue_rates: Mapping[str, Mapping[str, float | None]]) -> str:
    """One screen of ``raftq top`` as text."""
    c = reading.cluster or {}
    me: Mapping[str, Any] = c.get("self") or {}
    when = time.strftime("%H:%M:%S")
    head = (
        f"raftq top  {when}  node {me.get('id', '?')}  leader {c.get('leader') or 'none'}  "
        f"term {me.get('term', '?')}  applied {me.get('applied_index', '?')}  (Ctrl-C quits)"
    )
    lines = [head, ""]
    if reading.error is not None:
        lines.append(f"cannot reach the cluster: {reading.error}")
        return "\n".join(lines)
    rows = [["QUEUE", "PAUSED", *(s.upper() for s in _STATES)]]
    rows[0] += ["ENQ/s", "DONE/s", "FAIL/s", "DEAD/s"]
    for q in reading.queues:
        name = str(q.get("queue"))
        depth: Mapping[str, Any] = q.get("depth") or {}
        r = queue_rates.get(name, {})
        rows.append(
            [
                name,
                "yes" if q.get("paused") else "no",
                *(str(depth.get(s, 0)) for s in _STATES),
                *(_rate(r.get(k)) for k in _RATES),
            ]
        )
    if len(rows) == 1:
        lines.append("no queues")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        rest = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in rest)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _read(client: SyncClient) -> Reading:
    at = time.monotonic()
    try:
        return Reading(at, client.queues(), client.cluster())
    except RaftqError as e:
        return Reading(at, [], None, str(e))


def _json_line(reading: Reading, queue_rates: Mapping[str, Any]) -> str:
    doc = {
        "ts_ms": time.time_ns() // 1_000_000,
        "error": reading.error,
        "cluster": reading.cluster,
        "queues": [
            {**q, "rates": queue_rates.get(str(q.get("queue")), {})} for q in reading.queues
        ],
    }
    return json.dumps(doc, ensure_ascii=False)


def run_top(
    client: SyncClient,
    args: argparse.Namespace,
    out: TextIO = sys.stdout,
    sleep: Any = time.sleep,
) -> int:
    """Refresh every ``args.interval_ms`` until Ctrl-C, or ``args.iterations`` frames."""
    tty = out.isatty() and not args.json
    before: Reading | None = None
    shown = 0
    try:
        while args.iterations is None or shown < args.iterations:
            if shown:
                sleep(args.interval_ms / 1000)
            now = _read(client)
            r = rates(before, now)
            if args.json:
                print(_json_line(now, r), file=out, flush=True)
            else:
                text = frame(now, r)
                print((_CLEAR + text) if tty else (text + "\n"), file=out, flush=True)
            if now.error is None:
                before = now
            shown += 1
    except KeyboardInterrupt:
        pass  # the way to leave a live view: not an error
    return EXIT_OK
