"""Convergence of replicas, eventual delivery, and availability per nemesis window.

- convergence: every node of the run is in ``nodes.json`` with a digest, and all digests are
  equal (the judgment). When membership changed during the run, "every node" is the final
  members (``run.json`` ``members``): a node that left is not required to converge. Applied
  indexes are reported; equal digests with different indexes are possible only through
  entries that change nothing (the digest covers what was applied).
- drain: the drain ended (``drain_end_ns`` present), having drained every job (``drained``
  not false: the harness did not give up at ``--drain-limit``), within ``DRAIN_LIMIT_S`` of
  the heal.
- availability (reported, never judged): per nemesis window, the operations invoked inside it
  and the fraction of them that completed ``ok``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any

from raftq_jepsen.checker.history import Op
from raftq_jepsen.checker.result import Findings

__all__ = ["DRAIN_LIMIT_S", "check_availability", "check_convergence", "check_drain"]

DRAIN_LIMIT_S = 30


def check_convergence(nodes: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    out = Findings(("divergent", "missing"))
    by_id = {str(n.get("id")): n for n in nodes}
    listed = run.get("members", run.get("nodes"))
    if isinstance(listed, list):  # ids, or objects with an "id"
        expected = [str(n.get("id") if isinstance(n, dict) else n) for n in listed]
    else:  # a node count (or nothing): every node of nodes.json, and at least that many
        expected = list(by_id)
        for k in range(len(by_id), listed if isinstance(listed, int) else 0):
            expected.append(f"#{k + 1} (run.json says {listed} nodes)")
    for node_id in expected:
        n = by_id.get(node_id)
        if n is None or not n.get("digest"):
            out.flag("missing", {"node": node_id})
    judged = set(expected)
    digests = {
        str(n["id"]): n["digest"] for n in nodes if n.get("digest") and str(n["id"]) in judged
    }
    if len(set(digests.values())) > 1:
        out.flag(
            "divergent",
            {
                "digests": digests,
                "applied_index": {str(n.get("id")): n.get("applied_index") for n in nodes},
            },
        )
    indexes = [int(n["applied_index"]) for n in nodes if isinstance(n.get("applied_index"), int)]
    out.counts = {
        "nodes": len(nodes),
        "distinct_digests": len(set(digests.values())),
        "applied_index_min": min(indexes, default=None),
        "applied_index_max": max(indexes, default=None),
    }
    return out.result()


def check_drain(run: dict[str, Any], limit_s: int = DRAIN_LIMIT_S) -> dict[str, Any]:
    out = Findings(("drain_unfinished", "drain_too_slow"))
    heal, end = run.get("heal_ns"), run.get("drain_end_ns")
    took_s = None
    if not isinstance(heal, int) or not isinstance(end, int):
        out.flag("drain_unfinished", {"heal_ns": heal, "drain_end_ns": end})
    elif run.get("drained") is False:  # the harness gave up (--drain-limit) with jobs left
        out.flag("drain_unfinished", {"seconds_after_heal": round((end - heal) / 1e9, 3)})
        took_s = (end - heal) / 1e9
    else:
        took_s = (end - heal) / 1e9
        if took_s > limit_s:
            out.flag("drain_too_slow", {"seconds_after_heal": round(took_s, 3)})
    out.counts = {
        "seconds_after_heal": None if took_s is None else round(took_s, 3),
        "limit_s": limit_s,
    }
    return out.result()


def check_availability(ops: list[Op], windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ok fraction of the ops invoked in each window, and per nemesis over all its windows."""
    starts = [op.start_ns for op in ops]
    per_window: list[dict[str, Any]] = []
    per_nemesis: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for w in windows:
        lo, hi = int(w["start_ns"]), int(w.get("end_ns") or w["start_ns"])
        inside = ops[bisect.bisect_left(starts, lo) : bisect.bisect_right(starts, hi)]
        ok = sum(op.ok for op in inside)
        name = str(w.get("nemesis"))
        per_window.append(
            {
                "nemesis": name,
                "start_ns": lo,
                "end_ns": hi,
                "ops": len(inside),
                "ok": ok,
                "ok_fraction": round(ok / len(inside), 4) if inside else None,
            }
        )
        per_nemesis[name][0] += len(inside)
        per_nemesis[name][1] += ok
    return {
        "valid": True,  # reported, not judged
        "per_nemesis": {
            k: {"ops": n, "ok": ok, "ok_fraction": round(ok / n, 4) if n else None}
            for k, (n, ok) in sorted(per_nemesis.items())
        },
        "windows": per_window,
    }
