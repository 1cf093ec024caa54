"""The history writer: one ``history.jsonl`` per run, written by the harness process only.

Every event is one JSON line ``{"index", "time_ns", "process", "type", "f", "value", "node",
"error"}`` (shapes in jepsen-style/README.md). ``index`` counts from 0 in file order and
``time_ns`` is the harness's CLOCK_MONOTONIC minus the run's origin, so both increase down the
file. Operations of worker processes reach this writer over a pipe and are stamped here: the
invoke before the worker is allowed to send its request, the completion after it reported
back, so every recorded interval contains the real one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any, Literal

__all__ = ["EventType", "History", "Op", "OpName"]

EventType = Literal["invoke", "ok", "fail", "info"]
OpName = Literal["enqueue", "claim", "ack", "nack", "release", "heartbeat", "forged", "batch"]


class Op:
    """One invoked operation not completed yet (so it can be completed exactly once)."""

    __slots__ = ("f", "node", "process", "value")

    def __init__(self, process: int, f: OpName, value: dict[str, Any], node: str) -> None:
        self.process = process
        self.f = f
        self.value = value
        self.node = node


class History:
    """Appends events; ``origin_ns`` is the run's time zero (CLOCK_MONOTONIC ns)."""

    def __init__(self, path: Path, origin_ns: int) -> None:
        self.path = path
        self.origin_ns = origin_ns
        self._file: IO[str] = path.open("w")
        self._index = 0
        self.counts: dict[str, int] = {}  # "f:type" -> events, for the run summary
        self._open: dict[int, Op] = {}  # process -> its pending op (one at a time)
        # job id -> (process, token) of its latest ok claim: the worker nemesis watches it.
        self.last_claim: dict[int, tuple[int, int]] = {}

    def now_ns(self) -> int:
        return time.monotonic_ns() - self.origin_ns

    def _write(
        self,
        process: int,
        type_: EventType,
        f: OpName,
        value: Any,
        node: str | None,
        error: str | None,
    ) -> None:
        event = {
            "index": self._index,
            "time_ns": self.now_ns(),
            "process": process,
            "type": type_,
            "f": f,
            "value": value,
            "node": node,
            "error": error,
        }
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._index += 1
        key = f"{f}:{type_}"
        self.counts[key] = self.counts.get(key, 0) + 1

    def invoke(self, process: int, f: OpName, value: dict[str, Any], node: str) -> Op:
        """Record an invoke; a process has at most one operation open at a time."""
        if process in self._open:
            raise RuntimeError(f"process {process} invoked {f} with an operation open")
        op = Op(process, f, value, node)
        self._open[process] = op
        self._write(process, "invoke", f, value, node, None)
        return op

    def complete(
        self, op: Op, type_: EventType, value: Any = None, error: str | None = None
    ) -> None:
        """Record the completion of ``op`` (``value`` defaults to the invoke's)."""
        if self._open.get(op.process) is not op:
            raise RuntimeError(f"process {op.process}: {op.f} completed twice or never invoked")
        del self._open[op.process]
        value = op.value if value is None else value
        self._write(op.process, type_, op.f, value, op.node, error)
        if op.f == "claim" and type_ == "ok":
            for job in value.get("jobs", ()):
                self.last_claim[job["id"]] = (op.process, job["token"])

    def open_op(self, process: int) -> Op | None:
        return self._open.get(process)

    @property
    def operations(self) -> int:
        """Completed operations so far."""
        return sum(n for k, n in self.counts.items() if not k.endswith(":invoke"))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        """Close the file; still-open operations are closed as ``info`` (outcome unknown).
        Closing twice is harmless."""
        if self._file.closed:
            return
        for op in list(self._open.values()):
            self.complete(op, "info", error="run_ended")
        self._file.close()
