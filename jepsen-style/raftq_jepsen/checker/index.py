"""Lookups over one history that several checkers share, built in one linear pass."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from raftq_jepsen.checker.history import Delivery, Op, payload_key

__all__ = ["HistoryIndex", "build_index"]


@dataclass(slots=True)
class HistoryIndex:
    ops: list[Op]
    enqueues: list[Op] = field(default_factory=list)
    # id -> ok enqueues that returned it (several only through the idempotency key).
    enqueued_ids: dict[int, list[Op]] = field(default_factory=lambda: defaultdict(list))
    # payload_key -> enqueues (any outcome) that carried it.
    by_payload: dict[str, list[Op]] = field(default_factory=lambda: defaultdict(list))
    deliveries: list[Delivery] = field(default_factory=list)
    by_job: dict[int, list[Delivery]] = field(default_factory=lambda: defaultdict(list))
    # job id -> ack / nack / heartbeat ops naming it.
    lease_ops: dict[int, list[Op]] = field(default_factory=lambda: defaultdict(list))
    claims: list[Op] = field(default_factory=list)

    def job_queue(self, job_id: int) -> str | None:
        """The queue a job belongs to, from its enqueue or a delivery."""
        for op in self.enqueued_ids.get(job_id, ()):
            return str(op.value.get("queue"))
        for d in self.by_job.get(job_id, ()):
            return d.queue
        return None


def build_index(ops: list[Op]) -> HistoryIndex:
    ix = HistoryIndex(ops)
    for op in ops:
        if op.f == "enqueue":
            ix.enqueues.append(op)
            ix.by_payload[payload_key(op.value.get("payload"))].append(op)
            if op.ok:
                ix.enqueued_ids[int(op.result["id"])].append(op)
        elif op.f == "claim":
            ix.claims.append(op)
            for d in op.deliveries():
                ix.deliveries.append(d)
                ix.by_job[d.id].append(d)
        else:
            ix.lease_ops[op.job()[0]].append(op)
    return ix
