"""Schedule fires: every slot at most once, and no slot missed that a leader could fire.

The run (``raftq_jepsen.schedule_probe``) puts one schedule (``every_ms``, ``catchup_ms``) at the
start of the workload, pauses it when the workload ends, and writes ``schedules.json``: the
schedule, its ``created_ms`` and ``end_ms`` (cluster time, ms) and every job it made (``id``,
``fire_ms``). When a leader was up is read from the history: every ``ok`` write (enqueue,
claim, ack, nack, heartbeat) committed through a leader, so the completions of ``ok`` writes no
more than ``GAP_MS`` apart make an interval with a leader. History times are the runner's
monotonic clock; ``wall_start_ms + time_ns / 1e6`` puts them in cluster time (the nodes'
clocks are the runner's machine's; a clock-jump nemesis moves cluster time by at most the
bounded step, which ``GRACE_MS`` absorbs).

Violations:
- ``fired_twice``: two jobs carry the same ``fire_ms``.
- ``not_a_slot``: a ``fire_ms`` that is no slot of the schedule (not a multiple of
  ``every_ms``, not after ``created_ms``, or after ``end_ms``: fired while paused).
- ``out_of_order``: a job with a higher id (made later in the log) for an earlier or equal slot.
- ``not_fired``: a job collected from the schedule's queue whose record has no ``fire_ms`` (no
  slot made it: the answer of a replica that diverged, say); the other checks skip it.
- ``missed_with_leader``: slot ``s`` did not fire although a leader was up over
  ``[s, s + GRACE_MS]`` (it must fire on time).
- ``missed_after_recovery``: slot ``s`` did not fire although, within its catch-up window
  ``[s, s + catchup_ms]``, a leader was up for ``GRACE_MS`` (the new leader must fire it late).
A slot with no leader over any ``GRACE_MS`` of its catch-up window may be skipped: that is the
documented rule (docs/guide.md, "Schedules").
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

from raftq_jepsen.checker.history import Op
from raftq_jepsen.checker.result import Findings

__all__ = ["GAP_MS", "GRACE_MS", "WRITES", "check_schedules", "leader_intervals"]

GAP_MS = 500  # ok writes at most this far apart: the leader stayed up in between
GRACE_MS = 3_000  # a leader up this long fires a due slot (pass, settle, commit, clock step)
WRITES = ("enqueue", "claim", "ack", "nack", "release", "heartbeat")


def leader_intervals(times_ms: Iterable[float], gap_ms: int = GAP_MS) -> list[tuple[float, float]]:
    """Merge the completion times of ``ok`` writes into intervals with a leader."""
    out: list[tuple[float, float]] = []
    for t in sorted(times_ms):
        if out and t - out[-1][1] <= gap_ms:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def _ok_write_times(ops: Iterable[Op], wall_start_ms: float, end_ms: float) -> list[float]:
    times = []
    for op in ops:
        if op.type == "ok" and op.f in WRITES and op.done_ns is not None:
            t = wall_start_ms + op.done_ns / 1e6
            if t <= end_ms:
                times.append(t)
    return times


def _up_for(
    intervals: list[tuple[float, float]], starts: list[float], lo: float, hi: float, need: float
) -> bool:
    """Some interval overlaps ``[lo, hi]`` for at least ``need`` ms (``intervals`` disjoint and
    sorted, ``starts`` their starts)."""
    for a, b in reversed(intervals[: bisect.bisect_right(starts, hi)]):
        if b < lo:  # the ones before end earlier still
            return False
        if min(b, hi) - max(a, lo) >= need:
            return True
    return False


def check_schedules(record: dict[str, Any] | None, ops: list[Op]) -> dict[str, Any]:
    """Judge ``schedules.json`` (``None``: the run had no schedule: nothing to judge)."""
    kinds = (
        "fired_twice",
        "not_a_slot",
        "out_of_order",
        "not_fired",
        "missed_with_leader",
        "missed_after_recovery",
    )
    out = Findings(kinds)
    if record is None or not record.get("collected"):
        out.counts = {"collected": False if record is not None else None}
        return out.result()
    every = int(record["every_ms"])
    created, end = int(record["created_ms"]), int(record["end_ms"])
    fires = []
    for f in sorted(record["fires"], key=lambda f: int(f["id"])):
        if f.get("fire_ms") is None:
            out.flag("not_fired", {"id": f["id"]})
        else:
            fires.append(f)
    _check_fires(out, fires, every, created, end)
    up = leader_intervals(_ok_write_times(ops, float(record["wall_start_ms"]), end))
    owed, excused = _check_missed(out, {int(f["fire_ms"]) for f in fires}, up, record)
    out.counts = {
        "collected": True,
        "fires": len(fires),
        "slots_owed": owed,
        "missed_excused": excused,
        "leader_intervals": len(up),
    }
    return out.result()


def _check_fires(
    out: Findings, fires: list[dict[str, Any]], every: int, created: int, end: int
) -> None:
    """``fired_twice``, ``not_a_slot``, ``out_of_order`` (``fires`` in job id order)."""
    for slot, n in sorted(Counter(int(f["fire_ms"]) for f in fires).items()):
        if n > 1:
            out.flag("fired_twice", {"fire_ms": slot, "jobs": n})
    for f in fires:
        s = int(f["fire_ms"])
        if s % every or s <= created or s > end:
            out.flag("not_a_slot", {"id": f["id"], "fire_ms": s})
    for prev, cur in pairwise(fires):
        if int(cur["fire_ms"]) <= int(prev["fire_ms"]):
            out.flag("out_of_order", {"ids": [prev["id"], cur["id"]], "fire_ms": cur["fire_ms"]})


def _check_missed(
    out: Findings, fired: set[int], up: list[tuple[float, float]], record: dict[str, Any]
) -> tuple[int, int]:
    """``missed_with_leader``, ``missed_after_recovery``; returns (owed, excused) slots."""
    every, catchup = int(record["every_ms"]), int(record["catchup_ms"])
    created, end = int(record["created_ms"]), int(record["end_ms"])
    starts = [a for a, _ in up]
    owed = excused = 0
    s = (created // every + 1) * every
    while s <= end:
        if _up_for(up, starts, s, min(s + GRACE_MS, end), GRACE_MS):
            owed += 1
            if s not in fired:
                out.flag("missed_with_leader", {"slot": s})
        elif _up_for(up, starts, s, min(s + catchup, end), GRACE_MS):
            owed += 1
            if s not in fired:
                out.flag("missed_after_recovery", {"slot": s})
        elif s not in fired:
            excused += 1
        s += every
    return owed, excused
