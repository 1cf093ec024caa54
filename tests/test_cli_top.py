"""`raftq top`'s pure parts: rates from two readings, and the frame it draws."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

from raftq.cli.top import Reading, frame, rates, run_top
from raftq.errors import TransportError


def _q(name: str, enqueued: int, succeeded: int, queued: int = 0) -> dict[str, Any]:
    return {
        "queue": name,
        "paused": False,
        "depth": {"queued": queued, "delayed": 0, "leased": 0, "dead": 0},
        "totals": {"enqueued": enqueued, "succeeded": succeeded, "failed": 0, "dead": 0},
    }


def test_rates_from_two_readings() -> None:
    a = Reading(10.0, [_q("q", 100, 50)], None)
    b = Reading(12.0, [_q("q", 140, 60), _q("new", 5, 0)], None)
    r = rates(a, b)
    assert r["q"] == {"enqueued": 20.0, "succeeded": 5.0, "failed": 0.0, "dead": 0.0}
    assert r["new"] == dict.fromkeys(("enqueued", "succeeded", "failed", "dead"))  # unknown
    assert rates(None, b)["q"]["enqueued"] is None


def test_frame_shows_queues_rates_and_errors() -> None:
    cluster = {"self": {"id": "n2", "term": 4, "applied_index": 9}, "leader": "n1"}
    reading = Reading(1.0, [_q("emails", 3, 1, queued=2)], cluster)
    text = frame(reading, {"emails": {"enqueued": 2.5}})
    head, _, columns, row = text.splitlines()
    assert "node n2" in head and "leader n1" in head and "term 4" in head
    assert columns.split()[:6] == ["QUEUE", "PAUSED", "QUEUED", "DELAYED", "LEASED", "DEAD"]
    assert row.split() == ["emails", "no", "2", "0", "0", "0", "2.5", "-", "-", "-"]
    down = frame(Reading(1.0, [], None, "no node answered"), {})
    assert down.splitlines()[-1] == "cannot reach the cluster: no node answered"


class _Client:
    def __init__(self) -> None:
        self.n = 0

    def queues(self) -> list[dict[str, Any]]:
        self.n += 1
        if self.n == 2:
            raise TransportError("flaky")
        return [_q("q", 10 * self.n, 0)]

    def cluster(self) -> dict[str, Any]:
        return {"self": {"id": "n1"}, "leader": "n1"}


def test_run_top_json_keeps_going_through_errors() -> None:
    out = io.StringIO()
    args = argparse.Namespace(json=True, iterations=3, interval_ms=1)
    assert run_top(_Client(), args, out, sleep=lambda _s: None) == 0  # type: ignore[arg-type]
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["error"] is None and first["queues"][0]["rates"]["enqueued"] is None
    assert second["error"] == "flaky" and second["queues"] == []
    assert third["queues"][0]["totals"]["enqueued"] == 30
    assert third["queues"][0]["rates"]["enqueued"] is not None  # against the first reading
