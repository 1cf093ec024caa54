"""Queue limits (``PUT /v1/queues/{queue}/limits``), counting only certain violations.

The run records the limits it set before the workload started (``run.json`` ``"limits"``:
``{queue: {"concurrency"?, "rate"?: {"limit", "period_ms"}, "group_concurrency"?,
"group_rate"?}}``). Every delivery of an ``ok`` claim that sent ``lease_ms`` carries its claim's
cluster time, ``claimed_ms = lease_expires_ms - lease_ms`` (the machine's own clock), and its
fencing token, which orders the claims as the log applied them. A job's group is the ``group``
of the enqueue that returned its id.

- concurrency_exceeded / group_concurrency_exceeded: when delivery K was handed out, job J of
  the same queue (group) was *certainly* still leased: J's claim came first (smaller token),
  K's claim time is before J's lease could have ended by expiry (J's ``lease_expires_ms`` as
  claimed; heartbeats only extend it), and no ack, nack or release of J was invoked before K's claim
  completed (so none was applied before it). More such J (K included) than the cap is a
  violation at K's claim.
- rate_exceeded / group_rate_exceeded: ``limit + 1`` known claim times of the queue (group)
  within less than ``period_ms`` of each other. Claims with an unknown outcome only add starts
  the history does not show, so the known ones are a subset: a window too full of them is a
  certain violation.

Cost: O(n log n) for the rates; O(n x leases held at once) for the caps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from raftq_jepsen.checker.history import INF, Op
from raftq_jepsen.checker.index import HistoryIndex
from raftq_jepsen.checker.result import Findings

__all__ = ["check_limits"]

KINDS = (
    "concurrency_exceeded",
    "group_concurrency_exceeded",
    "rate_exceeded",
    "group_rate_exceeded",
)


@dataclass(frozen=True, slots=True)
class _Start:
    token: int
    job_id: int
    queue: str
    group: str | None
    claimed_ms: int
    expires_ms: int
    claim: Op


def _starts(ix: HistoryIndex, queues: set[str]) -> list[_Start]:
    out: list[_Start] = []
    for c in ix.claims:
        lease_ms = c.value.get("lease_ms")
        if not c.ok or not isinstance(lease_ms, int):
            continue
        for raw in c.result.get("jobs", []):
            queue = str(raw.get("queue"))
            expires = raw.get("lease_expires_ms")
            if queue not in queues or not isinstance(expires, int):
                continue
            job_id = int(raw["id"])
            enq = ix.enqueued_ids.get(job_id, [])
            group = enq[0].value.get("group") if enq else None
            out.append(
                _Start(int(raw["token"]), job_id, queue, group, expires - lease_ms, expires, c)
            )
    out.sort(key=lambda s: s.token)
    return out


def _first_end_ns(ix: HistoryIndex, job_id: int, token: int) -> float:
    """The invoke of the first ack, nack or release of this lease (+inf: none)."""
    return min(
        (
            op.start_ns
            for op in ix.lease_ops.get(job_id, ())
            if op.f in ("ack", "nack", "release") and int(op.value.get("token", -1)) == token
        ),
        default=INF,
    )


def _check_caps(
    ix: HistoryIndex, starts: list[_Start], limits: dict[str, Any], out: Findings
) -> None:
    held: dict[str, list[tuple[_Start, float]]] = defaultdict(list)  # queue -> leases
    for k in starts:
        lim = limits.get(k.queue) or {}
        live = [
            (j, end_ns)
            for j, end_ns in held[k.queue]
            if k.claimed_ms < j.expires_ms  # (claim times only grow: pruned for good)
        ]
        held[k.queue] = live
        certain = [j for j, end_ns in live if end_ns > k.claim.end_ns]
        cap = lim.get("concurrency")
        if isinstance(cap, int) and len(certain) + 1 > cap:
            out.flag(
                "concurrency_exceeded",
                {
                    "queue": k.queue,
                    "claim_index": k.claim.index,
                    "job": k.job_id,
                    "held": [j.job_id for j in certain],
                    "cap": cap,
                },
            )
        gcap = lim.get("group_concurrency")
        if isinstance(gcap, int):
            mine = [j.job_id for j in certain if j.group == k.group]
            if len(mine) + 1 > gcap:
                out.flag(
                    "group_concurrency_exceeded",
                    {
                        "queue": k.queue,
                        "group": k.group,
                        "claim_index": k.claim.index,
                        "job": k.job_id,
                        "held": mine,
                        "cap": gcap,
                    },
                )
        live.append((k, _first_end_ns(ix, k.job_id, k.token)))


def _check_rate(
    times: list[int], rate: Any, kind: str, where: dict[str, Any], out: Findings
) -> None:
    if not isinstance(rate, dict):
        return
    limit, period = int(rate["limit"]), int(rate["period_ms"])
    times = sorted(times)
    for i in range(len(times) - limit):
        if times[i + limit] - times[i] < period:
            out.flag(kind, {**where, "starts_ms": times[i : i + limit + 1], "rate": rate})
            return  # one finding per queue or group


def check_limits(ix: HistoryIndex, run: dict[str, Any]) -> dict[str, Any]:
    out = Findings(KINDS)
    limits: dict[str, Any] = dict(run.get("limits") or {})
    starts = _starts(ix, set(limits))
    _check_caps(ix, starts, limits, out)
    by_queue: dict[str, list[int]] = defaultdict(list)
    by_group: dict[tuple[str, Any], list[int]] = defaultdict(list)
    for s in starts:
        by_queue[s.queue].append(s.claimed_ms)
        by_group[(s.queue, s.group)].append(s.claimed_ms)
    for queue, times in by_queue.items():
        _check_rate(times, limits[queue].get("rate"), "rate_exceeded", {"queue": queue}, out)
    for (queue, group), times in sorted(by_group.items(), key=lambda kv: str(kv[0])):
        where = {"queue": queue, "group": group}
        _check_rate(times, limits[queue].get("group_rate"), "group_rate_exceeded", where, out)
    out.counts = {"queues": sorted(limits), "starts_checked": len(starts)}
    return out.result()
