"""Strict priority (and FIFO inside a priority), counting only certain violations.

A job h is *certainly ready* over the real-time interval (enter, leave) where
- enter = the completion of h's ``ok`` enqueue (h was enqueued without delay_ms/run_at_ms, and
  no other enqueue returned h's id, so its priority is known);
- leave = the invoke of the first claim that delivered h, when that delivery says attempt 1
  (then no claim, not even one with an unknown outcome, leased h before it). Otherwise an
  ``info`` claim on h's queue may have leased h at any time after that claim's invoke, so
  leave is also capped by the earliest such invoke.
Before its first lease a job cannot be acked, nacked or expire, so h is ready all that time.

For an ``ok`` claim C over queues Q that began after enter and ended before leave, with h's
queue in Q (paused queues are not part of the workload):
- priority_inversion: C returned a job of lower priority than h;
- skipped_ready_job: C returned fewer jobs than its max (while h was there to give);
- fifo_inversion: C returned, as its first delivery, a job j of h's priority enqueued without
  delay whose enqueue began after h's enqueue completed (so h's id and ready time are smaller
  and the machine orders h first).
Each claim is counted at most once per kind. Queues with limits (``skip``: caps and
round-robin over groups are not strict priority) are left to the limits checker. Cost:
O(n log n).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from raftq_jepsen.checker.history import INF, Op
from raftq_jepsen.checker.index import HistoryIndex
from raftq_jepsen.checker.result import Findings

__all__ = ["check_priority"]


def _plain(op: Op) -> bool:
    """Enqueued ready at once (no delay): its ready time is its enqueue's cluster time."""
    return not op.value.get("delay_ms") and op.value.get("run_at_ms") is None


@dataclass(slots=True)
class _Group:
    """Certainly-ready intervals of one (queue, priority), sorted by enter, with prefix max."""

    enters: list[int]
    best_leave: list[float]
    best_id: list[int]

    def witness(self, before_ns: float, after_ns: float) -> int | None:
        """A job that entered before ``before_ns`` and left after ``after_ns``."""
        k = bisect.bisect_left(self.enters, before_ns)
        if k and self.best_leave[k - 1] > after_ns:
            return self.best_id[k - 1]
        return None


def _groups(ix: HistoryIndex) -> tuple[dict[tuple[str, int], _Group], int]:
    first_info_claim: dict[str, int] = {}
    for c in ix.claims:
        if c.type == "info":
            for q in c.value.get("queues", []):
                first_info_claim.setdefault(str(q), c.start_ns)  # ops are sorted by start
    spans: dict[tuple[str, int], list[tuple[int, float, int]]] = defaultdict(list)
    for job_id, ops in ix.enqueued_ids.items():
        if len(ops) != 1 or not _plain(ops[0]) or len(ix.same_job_enqueues(job_id)) != 1:
            continue  # several enqueues name it (idempotency key): its own is uncertain
        enq = ops[0]
        queue = str(enq.value.get("queue"))
        ds = ix.by_job.get(job_id, [])
        first = min(ds, key=lambda d: d.op.start_ns) if ds else None
        leave: float = first.op.start_ns if first is not None else INF
        if first is None or first.attempt != 1:
            leave = min(leave, first_info_claim.get(queue, INF))
        enter = int(enq.end_ns)
        if leave > enter:
            spans[(queue, int(enq.value.get("priority", 0)))].append((enter, leave, job_id))
    groups: dict[tuple[str, int], _Group] = {}
    for key, items in spans.items():
        items.sort()
        best_leave: list[float] = []
        best_id: list[int] = []
        for _, leave, job_id in items:
            if best_leave and best_leave[-1] >= leave:
                best_leave.append(best_leave[-1])
                best_id.append(best_id[-1])
            else:
                best_leave.append(leave)
                best_id.append(job_id)
        groups[key] = _Group([e for e, _, _ in items], best_leave, best_id)
    return groups, sum(len(v) for v in spans.values())


# One pass over the successful claims, each compared with the ready jobs of its queues: the
# three findings share that pass's state.
def check_priority(ix: HistoryIndex, skip: frozenset[str] = frozenset()) -> dict[str, Any]:  # noqa: C901
    out = Findings(("priority_inversion", "skipped_ready_job", "fifo_inversion"))
    groups, tracked = _groups(ix)
    checked = 0
    for c in ix.claims:
        if not c.ok:
            continue
        checked += 1
        queues = [str(q) for q in dict.fromkeys(c.value.get("queues", []))]
        if any(q in skip for q in queues):
            continue
        ds = c.deliveries()
        short = len(ds) < int(c.value.get("max", 1))
        low = min((d.priority for d in ds), default=-1)
        inversion: dict[str, Any] | None = None
        skipped: dict[str, Any] | None = None
        for q in queues:
            for p in range(9, -1, -1):
                g = groups.get((q, p))
                if g is None:
                    continue
                h = g.witness(c.start_ns, c.end_ns)
                if h is None:
                    continue
                if p > low and ds and inversion is None:
                    inversion = {"claim_index": c.index, "returned_priority": low, "queue": q}
                    inversion |= {"waiting_id": h, "waiting_priority": p}
                if short and skipped is None:
                    skipped = {"claim_index": c.index, "returned": len(ds), "queue": q}
                    skipped |= {"waiting_id": h, "waiting_priority": p}
        if inversion is not None:
            out.flag("priority_inversion", inversion)
        if skipped is not None:
            out.flag("skipped_ready_job", skipped)
        for d in ds:
            if d.attempt != 1:
                continue
            enq = ix.same_job_enqueues(d.id)
            if len(enq) != 1 or not _plain(enq[0]):
                continue
            fifo = _fifo_witness(groups, queues, d.priority, min(c.start_ns, enq[0].start_ns), c)
            if fifo is not None:
                out.flag(
                    "fifo_inversion",
                    {"claim_index": c.index, "returned_id": d.id, "waiting_id": fifo},
                )
                break
    out.counts = {"claims_checked": checked, "jobs_tracked": tracked}
    return out.result()


def _fifo_witness(
    groups: dict[tuple[str, int], _Group], queues: list[str], p: int, before: int, c: Op
) -> int | None:
    for q in queues:
        g = groups.get((q, p))
        if g is not None and (h := g.witness(before, c.end_ns)) is not None:
            return h
    return None
