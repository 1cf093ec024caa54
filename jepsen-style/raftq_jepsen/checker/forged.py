"""The ``forged_forward`` check: every request that carried the node-to-node marker without a
valid signature (the forged-forward nemesis, ``f == "forged"``) was refused 401.

A ``forged`` operation is ``ok`` (2xx) or ``fail`` with ``error`` ``http_<status>``, or ``info``
when no answer came (a node down or cut off: nothing was trusted, nothing to judge). Any answer
but 401 is a violation: ``accepted`` for a 2xx (the marker was trusted), ``not_refused`` for
any other status (the request reached a handler, e.g. 404 for the job it named, or was judged
on other grounds than the marker: the signature check must come first). A run with a
``forged-forward`` window in which no forged request was answered judged nothing it claims
to: ``none_answered`` (as the membership check's ``no_change_made``). Forged operations are
not queue operations: every other check is given the history without them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from raftq_jepsen.checker.history import Op
from raftq_jepsen.checker.result import Findings

__all__ = ["FORGED", "check_forged", "split_forged"]

FORGED = "forged"


def split_forged(ops: list[Op]) -> tuple[list[Op], list[Op]]:
    """(queue operations, forged operations), each in the original order."""
    return [op for op in ops if op.f != FORGED], [op for op in ops if op.f == FORGED]


def _example(op: Op) -> dict[str, Any]:
    return {"index": op.index, "node": op.node, "error": op.error} | {
        k: op.value.get(k) for k in ("method", "path", "kind")
    }


def check_forged(forged: list[Op], windows: list[dict[str, Any]]) -> dict[str, Any]:
    out = Findings(("accepted", "not_refused", "none_answered"))
    counts: Counter[str] = Counter()
    for op in forged:
        if op.type == "info":
            counts["unanswered"] += 1
        elif op.type == "fail" and op.error == "http_401":
            counts["refused_401"] += 1
        else:
            out.flag("accepted" if op.ok else "not_refused", _example(op))
    counts["forged"] = len(forged)
    tried = [w for w in windows if w.get("nemesis") == "forged-forward"]
    if tried and counts["forged"] == counts["unanswered"]:
        out.flag("none_answered", {"windows": len(tried), "detail": tried[0].get("detail")})
    out.counts = dict(counts)
    return out.result()
