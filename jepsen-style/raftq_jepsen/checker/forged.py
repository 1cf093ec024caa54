"""The ``forged_forward`` check: every request that carried the node-to-node marker without a
valid signature (the forged-forward nemesis, ``f == "forged"``) was refused 401.

A ``forged`` operation is ``ok`` (2xx) or ``fail`` with ``error`` ``http_<status>``, or ``info``
when no answer came (a node down or cut off: nothing was trusted, nothing to judge). Any answer
but 401 is a violation: ``accepted`` for a 2xx (the marker was trusted), ``not_refused`` for
any other status (the request reached a handler, e.g. 404 for the job it named, or was judged
on other grounds than the marker: the signature check must come first). Forged operations are
not queue operations: every other check is given the history without them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from raftq_jepsen.checker.history import Op

__all__ = ["FORGED", "check_forged", "split_forged"]

FORGED = "forged"


def split_forged(ops: list[Op]) -> tuple[list[Op], list[Op]]:
    """(queue operations, forged operations), each in the original order."""
    return [op for op in ops if op.f != FORGED], [op for op in ops if op.f == FORGED]


def _example(op: Op) -> dict[str, Any]:
    return {"index": op.index, "node": op.node, "error": op.error} | {
        k: op.value.get(k) for k in ("method", "path", "kind")
    }


def check_forged(forged: list[Op]) -> dict[str, Any]:
    violations: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = {}
    counts: Counter[str] = Counter()
    for op in forged:
        if op.type == "info":
            counts["unanswered"] += 1
            continue
        if op.type == "fail" and op.error == "http_401":
            counts["refused_401"] += 1
            continue
        kind = "accepted" if op.ok else "not_refused"
        violations[kind] += 1
        if len(examples.setdefault(kind, [])) < 5:
            examples[kind].append(_example(op))
    counts["forged"] = len(forged)
    return {
        "valid": not violations,
        "violations": dict(violations),
        "counts": dict(counts),
        "examples": examples,
    }
