"""Per-job lifecycle: completion once, fencing, no delivery after completion, payload kept.

"A before B" below is real time: A's completion was recorded before B's invoke, so A took
effect before B did. Concurrent operations are never ordered, so only certain violations count.

- double_ack: more than one ``ok`` ack of a job.
- token_not_increasing: a delivery whose token is not above the token of a delivery of the
  same job before it; or one token handed out twice (tokens are cluster-wide unique).
- stale_token_success: an ``ok`` ack/nack/release/heartbeat whose token was never delivered
  for the job, or was superseded by a delivery (higher token) before it, or whose lease an
  ``ok`` ack/nack/release with that token ended before it, or that came after an ``ok`` ack
  of the job.
- delivery_after_ack: a delivery of a job by a claim that began after an ``ok`` ack of it.
- payload_changed: a delivery whose payload, priority or queue differs from its enqueue (or
  from the job's other deliveries when it was enqueued with an uncertain outcome).
"""

from __future__ import annotations

from typing import Any

from raftq_jepsen.checker.history import INF, Delivery, payload_key
from raftq_jepsen.checker.index import HistoryIndex
from raftq_jepsen.checker.result import Findings

__all__ = ["check_jobs"]


def _identity(ix: HistoryIndex, job_id: int, ds: list[Delivery]) -> set[tuple[str, int, str]]:
    """The (payload, priority, queue) the job may carry: from the enqueues that returned its
    id (and those sharing their key), else from the ``info`` enqueues whose payload it came
    out with (none: the job is total_queue's ``unexpected``)."""
    ops = ix.same_job_enqueues(job_id)
    if not ops:
        payloads = {d.payload for d in ds}
        ops = [op for p in payloads for op in ix.by_payload.get(p, ()) if op.type == "info"]
    return {
        (
            payload_key(op.value.get("payload")),
            int(op.value.get("priority", 0)),
            str(op.value.get("queue")),
        )
        for op in ops
    }


# One pass per job over its deliveries and lease ops, every finding checked where the data is at
# hand: split, the per-job state would have to travel between the pieces.
def check_jobs(ix: HistoryIndex) -> dict[str, Any]:  # noqa: C901
    out = Findings(
        (
            "double_ack",
            "token_not_increasing",
            "stale_token_success",
            "delivery_after_ack",
            "payload_changed",
        )
    )
    seen_tokens: dict[int, Delivery] = {}
    for d in ix.deliveries:
        other = seen_tokens.setdefault(d.token, d)
        if other is not d:
            out.flag(
                "token_not_increasing",
                {
                    "id": d.id,
                    "token": d.token,
                    "reason": f"token also given to job {other.id} (claim {other.op.index})",
                    "claim_index": d.op.index,
                },
            )
    for job_id in ix.by_job.keys() | ix.lease_ops.keys():
        ds = sorted(ix.by_job.get(job_id, ()), key=lambda d: d.op.end_ns)
        lops = ix.lease_ops.get(job_id, [])
        acks = [op for op in lops if op.f == "ack" and op.ok]
        if len(acks) > 1:
            out.flag("double_ack", {"id": job_id, "ack_indexes": [op.index for op in acks]})
        first_ack_end = min((op.end_ns for op in acks), default=INF)
        if ds:
            ident = _identity(ix, job_id, ds)
            for d in ds:
                if ident and (d.payload, d.priority, d.queue) not in ident:
                    out.flag(
                        "payload_changed",
                        {"id": job_id, "claim_index": d.op.index, "token": d.token},
                    )
                if d.op.start_ns > first_ack_end:
                    out.flag(
                        "delivery_after_ack",
                        {"id": job_id, "claim_index": d.op.index, "token": d.token},
                    )
            # Sweep deliveries by start against those that ended before it.
            by_start = sorted(ds, key=lambda d: d.op.start_ns)
            i, best = 0, None
            for d in by_start:
                while i < len(ds) and ds[i].op.end_ns < d.op.start_ns:
                    if best is None or ds[i].token > best.token:
                        best = ds[i]
                    i += 1
                if best is not None and best.token >= d.token:
                    out.flag(
                        "token_not_increasing",
                        {
                            "id": job_id,
                            "token": d.token,
                            "claim_index": d.op.index,
                            "reason": f"token {best.token} came before (claim {best.op.index})",
                        },
                    )
        tokens = {d.token for d in ds}
        enders = [op for op in lops if op.ok and op.f in ("ack", "nack", "release")]
        for op in lops:
            if not op.ok:
                continue
            _, token = op.job()
            reason = None
            if token not in tokens:
                reason = "token never delivered for this job"
            elif any(d.token > token and d.op.end_ns < op.start_ns for d in ds):
                reason = "a newer lease was delivered before it"
            elif any(e.job()[1] == token and e.end_ns < op.start_ns for e in enders):
                reason = "its lease was already ended by an ack/nack/release"
            elif first_ack_end < op.start_ns:
                reason = "the job was already acked"
            if reason is not None:
                out.flag(
                    "stale_token_success",
                    {"id": job_id, "index": op.index, "f": op.f, "token": token, "reason": reason},
                )
    out.counts = {
        "jobs": len(ix.by_job.keys() | ix.lease_ops.keys()),
        "acks_ok": sum(op.ok for ops in ix.lease_ops.values() for op in ops if op.f == "ack"),
    }
    return out.result()
