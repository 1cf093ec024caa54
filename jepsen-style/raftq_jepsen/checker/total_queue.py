"""total-queue: what goes in must come out, once completed, and nothing else comes out.

Definitions (``jepsen-style/README.md`` has them for readers of ``results.json``):
- delivered: a job id handed out by some ``ok`` claim (drain claims included).
- lost: an ``ok`` enqueue whose id was never delivered. The run drains every queue after the
  faults heal, so "present at the end" means "delivered by the drain".
- unexpected: a delivered id that no ``ok`` enqueue returned and whose payload no uncertain
  (``info``) enqueue carried; reason ``enqueue failed`` when only ``fail`` enqueues carried it
  (``fail`` means certainly not applied).
- recovered: an ``info`` enqueue whose payload was delivered (legal; reported).
- redeliveries: deliveries after a job's first (legal at-least-once delivery; reported).
- duplicated: a job completed by more than one ``ok`` ack (a violation: the fencing token makes
  completion exactly-once). Two live leases at once are judged per job (``jobs.py``).
"""

from __future__ import annotations

from typing import Any

from raftq_jepsen.checker.index import HistoryIndex
from raftq_jepsen.checker.result import Findings

__all__ = ["check_total_queue"]


def check_total_queue(ix: HistoryIndex) -> dict[str, Any]:
    out = Findings(("lost", "unexpected", "duplicated"))
    delivered = set(ix.by_job)
    uncertain_payloads = {
        p for p, ops in ix.by_payload.items() if any(op.type == "info" for op in ops)
    }
    for job_id, ops in ix.enqueued_ids.items():
        if job_id not in delivered:
            op = ops[0]
            out.flag(
                "lost",
                {"id": job_id, "enqueue_index": op.index, "queue": op.value.get("queue")},
            )
    recovered: set[int] = set()
    for job_id, ds in ix.by_job.items():
        if job_id in ix.enqueued_ids:
            continue
        d = ds[0]
        if d.payload in uncertain_payloads:
            recovered.add(job_id)
            continue
        failed = d.payload in ix.by_payload
        out.flag(
            "unexpected",
            {
                "id": job_id,
                "claim_index": d.op.index,
                "reason": "enqueue failed" if failed else "never enqueued",
            },
        )
    for job_id, lops in ix.lease_ops.items():
        acks = [op for op in lops if op.f == "ack" and op.ok]
        if len(acks) > 1:
            out.flag(
                "duplicated",
                {"id": job_id, "ack_indexes": [op.index for op in acks]},
            )
    n_enq = len(ix.enqueues)
    out.counts = {
        "attempt_count": n_enq,
        "acknowledged_count": sum(op.ok for op in ix.enqueues),
        "failed_count": sum(op.type == "fail" for op in ix.enqueues),
        "uncertain_count": sum(op.type == "info" for op in ix.enqueues),
        "delivered_jobs": len(delivered),
        "deliveries": len(ix.deliveries),
        "redeliveries": len(ix.deliveries) - len(delivered),
        "recovered_count": len(recovered),
        "lost_count": out.violations["lost"],
        "unexpected_count": out.violations["unexpected"],
        "duplicated_count": out.violations["duplicated"],
    }
    return out.result()
