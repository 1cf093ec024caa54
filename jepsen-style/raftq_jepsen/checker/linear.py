"""Linearizability of each independent group of queues: a WGL search (Wing & Gong, with
Lowe's memoization, as Porcupine and Knossos implement it) over ``model.py``.

Queues are independent objects (P-compositionality, Horn & Kroening 2015), except that one
claim may read several: queues named together by a claim form one component, and each
component is searched on its own. Operations are placed in their component by queue (enqueue,
claim) or by their job's queue (ack, nack, heartbeat).

What enters the search:
- ok ops with their outcome; ``info`` ops (and invokes never completed) may take effect at any
  point after their invoke or never (their return is +inf);
- a ``fail`` ack/nack/heartbeat refused by the state machine (``REFUSALS``) is an op whose
  outcome is "refused"; any other ``fail`` certainly had no effect and is left out;
- an ``info`` enqueue whose payload was never delivered is left out: adding a job that nobody
  sees only forbids behaviours, so leaving it out loses no legal linearization. An ``info``
  enqueue whose payload was delivered takes the delivered id. ``info`` heartbeats are left out
  (the model does not track lease lengths, so they change nothing).

The search state is a set of concrete model states (the power-set construction, for the
nondeterminism of uncertain claims, expiry and due times). Bounds: ``time_limit_s`` of wall time
and ``max_cache`` memoized configurations per component, ``max_branch`` states per set; past
any of them the component is "unknown", which is reported and never counted as passed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from raftq.core.limits import DEFAULT_MAX_ATTEMPTS
from raftq_jepsen.checker.history import INF, Op, is_refusal, payload_key
from raftq_jepsen.checker.index import HistoryIndex
from raftq_jepsen.checker.model import Action, JobSpec, State, StateBoundError, initial, step

__all__ = ["Bounds", "check_linearizable", "search"]


@dataclass(frozen=True, slots=True)
class Bounds:
    time_limit_s: float = 10.0  # per component
    total_time_s: float = 60.0  # over all components; later ones are "unknown"
    max_cache: int = 500_000  # memoized (linearized set, states) pairs per component
    max_branch: int = 512  # concrete states in one set


@dataclass(slots=True)
class _Entry:
    op: int  # position in the component's op list
    is_call: bool
    time: float
    match: _Entry | None = None
    prev: _Entry | None = None
    next: _Entry | None = None


@dataclass(slots=True)
class Outcome:
    result: str  # ok | illegal | unknown
    reason: str = ""
    cache: int = 0
    deepest: list[int] = field(default_factory=list)  # history indexes, at the deepest point


def search(
    actions: list[Action],
    spans: list[tuple[float, float]],
    specs: dict[int, JobSpec],
    bounds: Bounds,
    deadline: float,
) -> Outcome:
    """WGL over ``actions`` with real-time ``spans`` (invoke, return; +inf when uncertain)."""
    entries: list[_Entry] = []
    for i, (start, end) in enumerate(spans):
        call = _Entry(i, True, start)
        ret = _Entry(i, False, end)
        call.match = ret
        entries += [call, ret]
    # Calls before returns at equal times: such ops are concurrent (the permissive reading).
    entries.sort(key=lambda e: (e.time, not e.is_call, e.op))
    head = _Entry(-1, True, -INF)
    prev = head
    for e in entries:
        prev.next, e.prev = e, prev
        prev = e

    def lift(e: _Entry) -> None:
        assert e.prev is not None and e.match is not None and e.match.prev is not None
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev
        m = e.match
        m.prev.next = m.next  # type: ignore[union-attr]
        if m.next is not None:
            m.next.prev = m.prev

    def unlift(e: _Entry) -> None:
        m = e.match
        assert m is not None and m.prev is not None and e.prev is not None
        m.prev.next = m
        if m.next is not None:
            m.next.prev = m
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e

    states: frozenset[State] = frozenset({initial()})
    linearized = 0
    cache: set[tuple[int, frozenset[State]]] = set()
    stack: list[tuple[_Entry, frozenset[State]]] = []
    deepest: list[int] = []
    entry = head.next
    steps = 0
    try:
        while entry is not None:
            steps += 1
            if steps & 255 == 0 and time.monotonic() > deadline:
                return Outcome("unknown", "time limit", len(cache))
            if entry.is_call:
                action = actions[entry.op]
                nxt: set[State] = set()
                for s in states:
                    nxt.update(step(s, action, specs, bounds.max_branch))
                if len(nxt) > bounds.max_branch:
                    raise StateBoundError
                if nxt:
                    key = (linearized | (1 << entry.op), frozenset(nxt))
                    if key not in cache:
                        if len(cache) >= bounds.max_cache:
                            return Outcome("unknown", "memory bound", len(cache))
                        cache.add(key)
                        stack.append((entry, states))
                        states, linearized = key[1], key[0]
                        lift(entry)
                        entry = head.next
                        continue
                entry = entry.next
            else:
                if entry.time == INF:
                    return Outcome("ok", cache=len(cache))  # only uncertain ops remain
                if len(stack) >= len(deepest):
                    deepest = [e.op for e, _ in stack] + [entry.op]
                if not stack:
                    return Outcome("illegal", "no linearization", len(cache), deepest)
                top, states = stack.pop()
                linearized &= ~(1 << top.op)
                unlift(top)
                entry = top.next
    except StateBoundError:
        return Outcome("unknown", "too many possible states", len(cache))
    return Outcome("ok", cache=len(cache))


def _components(ix: HistoryIndex) -> dict[str, str]:
    """queue -> representative of its component (union-find over claims' queue lists)."""
    parent: dict[str, str] = {}

    def find(q: str) -> str:
        parent.setdefault(q, q)
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        return q

    for op in ix.enqueues:
        find(str(op.value.get("queue")))
    for c in ix.claims:
        qs = [str(q) for q in c.value.get("queues", [])]
        for q in qs[1:]:
            parent[find(q)] = find(qs[0])
    return {q: find(q) for q in list(parent)}


def _specs_and_ids(ix: HistoryIndex) -> tuple[dict[int, JobSpec], dict[int, int]]:
    """Job specs by id, and each kept enqueue op's job id (by op index)."""
    delivered_by_payload: dict[str, int] = {}
    for d in ix.deliveries:
        if d.id not in ix.enqueued_ids:
            delivered_by_payload.setdefault(d.payload, d.id)
    specs: dict[int, JobSpec] = {}
    enq_ids: dict[int, int] = {}
    for op in ix.enqueues:
        if op.ok:
            jid = int(op.result["id"])
        elif op.type == "info":
            found = delivered_by_payload.get(payload_key(op.value.get("payload")))
            if found is None:
                continue
            jid = found
        else:
            continue
        enq_ids[op.index] = jid
        v = op.value
        specs.setdefault(
            jid,
            JobSpec(
                jid,
                str(v.get("queue")),
                int(v.get("priority", 0)),
                int(v.get("max_attempts") or DEFAULT_MAX_ATTEMPTS),
                bool(v.get("delay_ms")) or v.get("run_at_ms") is not None,
            ),
        )
    return specs, enq_ids


def _action(op: Op, enq_ids: dict[int, int]) -> Action | None:
    outcome = "ok" if op.ok else "info" if op.type == "info" else "refused"
    if op.f == "enqueue":
        jid = enq_ids.get(op.index)
        return None if jid is None else Action("enqueue", outcome, job=jid)
    if op.f == "claim":
        if op.type == "fail":
            return None
        got = tuple((d.id, d.attempt, d.token) for d in op.deliveries())
        queues = frozenset(str(q) for q in op.value.get("queues", []))
        return Action("claim", outcome, queues=queues, max=int(op.value.get("max", 1)), got=got)
    if op.type == "fail" and not is_refusal(op.error):
        return None
    if op.f == "heartbeat" and op.type == "info":
        return None
    jid, token = op.job()
    retry_zero = op.value.get("retry_in_ms") == 0
    return Action(op.f, outcome, job=jid, token=token, retry_zero=retry_zero)


def check_linearizable(ix: HistoryIndex, bounds: Bounds | None = None) -> dict[str, Any]:
    bounds = bounds or Bounds()
    comp_of = _components(ix)
    specs, enq_ids = _specs_and_ids(ix)
    groups: dict[str, list[tuple[Op, Action]]] = defaultdict(list)
    for op in ix.ops:
        action = _action(op, enq_ids)
        if action is None:
            continue
        if op.f == "enqueue":
            queue: str | None = specs[action.job].queue
        elif op.f == "claim":
            queue = next(iter(sorted(action.queues)), None)
        else:
            spec = specs.get(action.job)
            queue = spec.queue if spec is not None else ix.job_queue(action.job)
        if queue is None:
            continue
        groups[comp_of.get(queue, queue)].append((op, action))
    # Jobs delivered but never enqueued get a spec from their delivery, so the search can
    # say "illegal" (a claim cannot return them) instead of failing on a missing spec.
    for d in ix.deliveries:
        specs.setdefault(d.id, JobSpec(d.id, d.queue, d.priority, DEFAULT_MAX_ATTEMPTS, False))
    started = time.monotonic()
    components: list[dict[str, Any]] = []
    for rep in sorted(groups):
        items = groups[rep]
        queues = sorted(q for q, r in comp_of.items() if r == rep) or [rep]
        t0 = time.monotonic()
        if t0 - started > bounds.total_time_s:
            out = Outcome("unknown", "total time limit")
        else:
            deadline = min(t0 + bounds.time_limit_s, started + bounds.total_time_s)
            actions = [a for _, a in items]
            spans = [(float(op.start_ns), op.end_ns) for op, _ in items]
            out = search(actions, spans, specs, bounds, deadline)
        components.append(
            {
                "queues": queues,
                "ops": len(items),
                "result": out.result,
                "reason": out.reason,
                "ms": round((time.monotonic() - t0) * 1000, 1),
                "cache": out.cache,
                "deepest": [items[i][0].index for i in out.deepest][-12:],
            }
        )
    illegal = [c for c in components if c["result"] == "illegal"]
    unknown = [c for c in components if c["result"] == "unknown"]
    return {
        "valid": not illegal,
        "violations": {"non_linearizable": len(illegal)},
        "counts": {
            "components": len(components),
            "ok": sum(c["result"] == "ok" for c in components),
            "illegal": len(illegal),
            "unknown": len(unknown),
            "ops": sum(c["ops"] for c in components),
            "ms": round((time.monotonic() - started) * 1000, 1),
        },
        "examples": {"non_linearizable": illegal[:5]} if illegal else {},
        "components": components,
    }
