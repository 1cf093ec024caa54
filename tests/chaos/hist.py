"""Write jepsen-style run directories by hand (tests of the checkers).

``History`` records events in the format of ``jepsen-style/README.md``; every helper returns
the op handle so a test can complete it later (concurrency) or at once (``ok=...``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["History", "Pending"]

SECOND_NS = 1_000_000_000


@dataclass
class Pending:
    process: int
    f: str
    value: dict[str, Any]


@dataclass
class History:
    events: list[dict[str, Any]] = field(default_factory=list)
    now_ns: int = 0
    step_ns: int = 1_000_000  # each event 1 ms after the previous one

    def _tick(self) -> int:
        self.now_ns += self.step_ns
        return self.now_ns

    def _event(self, p: Pending, typ: str, value: dict[str, Any], error: Any = None) -> None:
        self.events.append(
            {
                "index": len(self.events),
                "time_ns": self._tick(),
                "process": p.process,
                "type": typ,
                "f": p.f,
                "value": value,
                "node": "n1",
                "error": error,
            }
        )

    def invoke(self, process: int, f: str, value: dict[str, Any]) -> Pending:
        p = Pending(process, f, value)
        self._event(p, "invoke", value)
        return p

    def ok(self, p: Pending, extra: dict[str, Any] | None = None) -> Pending:
        self._event(p, "ok", {**p.value, **(extra or {})})
        return p

    def fail(self, p: Pending, error: str = "no_leader") -> Pending:
        self._event(p, "fail", p.value, error)
        return p

    def info(self, p: Pending) -> Pending:
        self._event(p, "info", p.value, "timeout")
        return p

    # -- one-shot helpers (invoke and complete at once) ------------------------------------

    def enqueue(
        self,
        job_id: int | None,
        payload: Any,
        priority: int = 0,
        *,
        queue: str = "q",
        process: int = 0,
        outcome: str = "ok",
        **more: Any,
    ) -> Pending:
        value = {"queue": queue, "payload": payload, "priority": priority, "key": None, **more}
        p = self.invoke(process, "enqueue", value)
        if outcome == "ok":
            return self.ok(p, {"id": job_id})
        if outcome == "fail":
            return self.fail(p)
        if outcome == "info":
            return self.info(p)
        return p  # left pending

    def claim_invoke(
        self, process: int = 1, queues: tuple[str, ...] = ("q",), max_jobs: int = 1
    ) -> Pending:
        return self.invoke(
            process, "claim", {"queues": list(queues), "max": max_jobs, "lease_ms": 1000}
        )

    def claim_ok(self, p: Pending, *jobs: dict[str, Any]) -> Pending:
        return self.ok(p, {"jobs": list(jobs)})

    def claim(
        self,
        *jobs: dict[str, Any],
        process: int = 1,
        queues: tuple[str, ...] = ("q",),
        max_jobs: int = 1,
    ) -> Pending:
        return self.claim_ok(self.claim_invoke(process, queues, max_jobs), *jobs)

    def lease_op(
        self, f: str, job_id: int, token: int, process: int = 1, outcome: str = "ok", **more: Any
    ) -> Pending:
        p = self.invoke(process, f, {"id": job_id, "token": token, **more})
        if outcome == "ok":
            return self.ok(p)
        if outcome == "info":
            return self.info(p)
        return self.fail(p, outcome)  # outcome names the error (stale_token, no_leader...)

    # -- the run directory ------------------------------------------------------------------

    def write(
        self,
        run_dir: Path,
        digests: tuple[str, ...] = ("d", "d", "d"),
        drain_s: float = 1.0,
        nemeses: list[dict[str, Any]] | None = None,
    ) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / "history.jsonl").open("w") as fh:
            for ev in self.events:
                fh.write(json.dumps(ev) + "\n")
        nodes = [
            {"id": f"n{i + 1}", "applied_index": 100, "digest": d} for i, d in enumerate(digests)
        ]
        (run_dir / "nodes.json").write_text(json.dumps(nodes))
        heal = self.now_ns + 1
        run = {
            "nodes": [n["id"] for n in nodes],
            "nemeses": ["none"],
            "time_limit": 1,
            "seed": 1,
            "commit": "test",
            "start_ns": 0,
            "end_ns": heal + int(drain_s * SECOND_NS),
            "heal_ns": heal,
            "drain_start_ns": heal,
            "drain_end_ns": heal + int(drain_s * SECOND_NS),
        }
        (run_dir / "run.json").write_text(json.dumps(run))
        with (run_dir / "nemesis.jsonl").open("w") as fh:
            for w in nemeses or []:
                fh.write(json.dumps(w) + "\n")
        return run_dir


def job(
    job_id: int, token: int, payload: Any, *, priority: int = 0, attempt: int = 1, queue: str = "q"
) -> dict[str, Any]:
    """A job as an ok claim returns it."""
    return {
        "id": job_id,
        "queue": queue,
        "payload": payload,
        "priority": priority,
        "attempt": attempt,
        "token": token,
    }
