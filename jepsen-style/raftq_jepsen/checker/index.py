"""Lookups over one history that several checkers share, built in one linear pass."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from raftq_jepsen.checker.history import Delivery, Op, payload_key

__all__ = ["FLOW_PREFIX", "HistoryIndex", "build_index"]

FLOW_PREFIX = "flow."  # the workload's workflow queues (workload.FLOW_QUEUES)


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
    # job id -> ack / nack / release / heartbeat ops naming it.
    lease_ops: dict[int, list[Op]] = field(default_factory=lambda: defaultdict(list))
    claims: list[Op] = field(default_factory=list)
    # (queue, key) -> enqueues not certainly failed that carried that idempotency key.
    keyed: dict[tuple[str, str], list[Op]] = field(default_factory=lambda: defaultdict(list))

    def same_job_enqueues(self, job_id: int) -> list[Op]:
        """Enqueues that may have created (or been deduplicated into) job ``job_id``: the ok
        enqueues that returned it and every non-failed enqueue sharing their key."""
        ops = list(self.enqueued_ids.get(job_id, ()))
        for op in list(ops):
            key = op.value.get("key")
            if key is not None:
                ops += [
                    o for o in self.keyed[(str(op.value.get("queue")), str(key))] if o not in ops
                ]
        return ops

    def job_queue(self, job_id: int) -> str | None:
        """The queue a job belongs to, from its enqueue or a delivery."""
        for op in self.enqueued_ids.get(job_id, ()):
            return str(op.value.get("queue"))
        for d in self.by_job.get(job_id, ()):
            return d.queue
        return None


def _is_flow_claim(op: Op) -> bool:
    """A claim of the workflow queues only (``workflows.py`` judges those jobs)."""
    queues = op.value.get("queues") or []
    return bool(queues) and all(str(q).startswith(FLOW_PREFIX) for q in queues)


def build_index(ops: list[Op]) -> HistoryIndex:
    """The index of the queue operations. Workflow batches, the claims of their queues and
    the acks of their jobs are left out, of ``ops`` too: the workflows checker judges them."""
    ix = HistoryIndex([])
    flow_ids: set[int] = set()
    for op in ops:
        if op.f == "batch":
            continue
        if op.f == "claim" and _is_flow_claim(op):
            flow_ids.update(d.id for d in op.deliveries())
            continue
        if op.f in ("ack", "nack", "release", "heartbeat") and op.job()[0] in flow_ids:
            continue
        ix.ops.append(op)
        if op.f == "enqueue":
            ix.enqueues.append(op)
            ix.by_payload[payload_key(op.value.get("payload"))].append(op)
            if op.type != "fail" and op.value.get("key") is not None:
                ix.keyed[(str(op.value.get("queue")), str(op.value["key"]))].append(op)
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
