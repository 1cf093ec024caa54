"""Linearizability of each queue: a WGL search (Wing & Gong, with Lowe's memoization, as
Porcupine and Knossos implement it) over ``model.py``.

Queues are independent objects (P-compositionality, Horn & Kroening 2015), so each is searched
on its own. Operations are placed by queue (enqueue, claim) or by their job's queue (ack, nack,
release, heartbeat). A claim naming several queues picks the best job of all, one at a time, so
the jobs it took from one queue are, in order, that queue's best at each pick, and if it
returned fewer than its max every queue was left with nothing ready: it is checked as one such
claim per queue. Those parts may linearize at different points, which only allows more (the
priority order *across* the queues of one claim is the priority checker's). An uncertain
claim's part may have taken any number of its queue's best jobs, up to the claim's max, even
with more left ready there: the other queues may have filled the rest (Bug fixed: the part had
to take its max or empty its queue, which rejected the legal history of the 2026-11-28
partition-leader run; ``jepsen-style/evidence/2026-11-28-partition-leader/README.md``).

What enters the search:
- ok ops with their outcome; ``info`` ops (and invokes never completed) may take effect at any
  point after their invoke or never (their return is +inf);
- a ``fail`` ack/nack/release/heartbeat refused by the state machine (``REFUSALS``) is an op whose
  outcome is "refused"; any other ``fail`` certainly had no effect and is left out;
- an ``info`` op is left out when "no effect" allows every future the effect allows (so no
  legal linearization is lost, and the search does not branch on it): an ``info`` enqueue whose
  payload was never delivered (a job nobody sees only forbids behaviours); every ``info``
  heartbeat (lease lengths are not modelled); and an ``info`` ack or nack unless a refusal of
  the same token may come after it (a lease left live permits all that a finished, delayed or
  ready job permits: the same claims through expiry, and more acks; only a refusal tells them
  apart, as it turns a live lease into a ready job). An ``info`` release stays: the attempt
  number of the job's next delivery tells whether it took effect. An ``info`` enqueue whose
  payload was delivered takes the delivered id. ``info`` claims stay: they lease jobs under
  tokens nobody holds, and count attempts; a claim's attempt numbers bound how many of them a
  job can have had between two of its ok deliveries (``JobSpec.seen_attempts``), unless a
  release of the job (which gives an attempt back) may have taken effect.

Where the model is nondeterministic (uncertain claims) the search tries each possible state in
turn, depth first, and backtracks into the next one; the memo holds (linearized set, state).
Bounds: ``time_limit_s`` of wall time and ``max_cache`` memoized configurations per component,
``max_branch`` outcomes of one uncertain claim; past
any of them the component is "unknown", which is reported and never counted as passed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from raftq.core.limits import DEFAULT_MAX_ATTEMPTS
from raftq_jepsen.checker.history import INF, Delivery, Op, is_refusal, payload_key
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


# The WGL search (Lowe's algorithm): one loop with its backtracking, which reads as the paper's
# pseudocode only in one piece.
def search(  # noqa: C901
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

    state = initial()
    linearized = 0
    cache: set[tuple[int, State]] = set()
    # The model is pure and the search re-tries the same op on the same state often (each
    # restart rescans pending uncertain ops): remember step results.
    memo: dict[tuple[int, State], list[State]] = {}
    # (call entry linearized, state before it, its other possible states still to try)
    stack: list[tuple[_Entry, State, list[State]]] = []
    deepest: list[int] = []
    # Candidates at one point are tried in two passes: completed ops first, then uncertain ones
    # (WGL may try them in any order; uncertain ops tried early sent the search down long
    # wrong paths, as one is needed only when a later op shows its effect).
    entry, uncertain_pass = head.next, False
    steps = 0
    try:
        while entry is not None:
            steps += 1
            if steps & 255 == 0 and time.monotonic() > deadline:
                return Outcome("unknown", "time limit", len(cache))
            if entry.is_call:
                if (spans[entry.op][1] == INF) != uncertain_pass:
                    entry = entry.next
                    continue
                bit = 1 << entry.op
                memo_key = (entry.op, state)
                stepped = memo.get(memo_key)
                if stepped is None:
                    if len(memo) >= bounds.max_cache:
                        memo.clear()  # a memo of step results only: safe to forget
                    stepped = memo[memo_key] = step(
                        state, actions[entry.op], specs, bounds.max_branch
                    )
                options = [s for s in stepped if (linearized | bit, s) not in cache]
                if options:
                    if len(cache) + len(options) > bounds.max_cache:
                        return Outcome("unknown", "memory bound", len(cache))
                    cache.update((linearized | bit, s) for s in options)
                    stack.append((entry, state, options[1:]))
                    state, linearized = options[0], linearized | bit
                    lift(entry)
                    entry, uncertain_pass = head.next, False
                    continue
                entry = entry.next
            else:
                if entry.time == INF:
                    return Outcome("ok", cache=len(cache))  # only uncertain ops remain
                if not uncertain_pass:
                    entry, uncertain_pass = head.next, True
                    continue
                if len(stack) >= len(deepest):
                    deepest = [e.op for e, _, _ in stack] + [entry.op]
                # Backtrack: the newest choice takes its next possible state, or is undone
                # and the scan goes on after its call (another op in its place).
                if not stack:
                    return Outcome("illegal", "no linearization", len(cache), deepest)
                if stack[-1][2]:
                    state = stack[-1][2].pop(0)
                    entry, uncertain_pass = head.next, False
                    continue
                top, state, _ = stack.pop()
                linearized &= ~(1 << top.op)
                unlift(top)
                entry, uncertain_pass = top.next, spans[top.op][1] == INF
    except StateBoundError:
        return Outcome("unknown", "too many possible states", len(cache))
    return Outcome("ok", cache=len(cache))


def _specs_and_ids(ix: HistoryIndex) -> tuple[dict[int, JobSpec], dict[int, int]]:
    """Job specs by id, and the job id of each enqueue op kept (by op index).

    A delivered job's queue and priority are its delivery's (a change is payload_changed's
    business); the enqueue that carried the delivered payload says whether it was delayed. An
    ok enqueue names its job by id; an ``info`` one by its payload, when delivered.
    """
    released = {
        job_id
        for job_id, lops in ix.lease_ops.items()
        if any(op.f == "release" and op.type != "fail" for op in lops)
    }
    delivered: dict[str, int] = {}
    first: dict[int, Delivery] = {}
    seen: dict[int, set[int]] = defaultdict(set)
    for d in ix.deliveries:
        delivered.setdefault(d.payload, d.id)
        first.setdefault(d.id, d)
        seen[d.id].add(d.attempt)
    specs: dict[int, JobSpec] = {}
    enq_ids: dict[int, int] = {}
    for op in ix.enqueues:
        pkey = payload_key(op.value.get("payload"))
        if op.ok:
            jid = int(op.result["id"])
        elif op.type == "info" and pkey in delivered:
            jid = delivered[pkey]
        else:
            continue
        enq_ids[op.index] = jid
        v = op.value
        d1 = first.get(jid)
        if jid in specs and (d1 is None or d1.payload != pkey):
            continue  # the spec comes from the enqueue whose payload came out
        specs[jid] = JobSpec(
            jid,
            str(v.get("queue")) if d1 is None else d1.queue,
            int(v.get("priority", 0)) if d1 is None else d1.priority,
            int(v.get("max_attempts") or DEFAULT_MAX_ATTEMPTS),
            bool(v.get("delay_ms")) or v.get("run_at_ms") is not None,
            tuple(sorted(seen.get(jid, ()))),
            jid in released,
        )
    return specs, enq_ids


def _refused_after(ix: HistoryIndex) -> dict[tuple[int, int], float]:
    """(job, token) -> the latest completion of a refusal naming them."""
    out: dict[tuple[int, int], float] = {}
    for job_id, lops in ix.lease_ops.items():
        for op in lops:
            if op.type == "fail" and is_refusal(op.error):
                key = (job_id, op.job()[1])
                out[key] = max(out.get(key, -INF), op.end_ns)
    return out


def _actions(
    op: Op, enq_ids: dict[int, int], refused: dict[tuple[int, int], float]
) -> list[tuple[str | None, Action]]:
    """The model ops for ``op``, each with the queue it belongs to (None: its job's)."""
    outcome = "ok" if op.ok else "info" if op.type == "info" else "refused"
    if op.f == "enqueue":
        jid = enq_ids.get(op.index)
        return [] if jid is None else [(None, Action("enqueue", outcome, job=jid))]
    if op.f == "claim":
        if op.type == "fail":
            return []
        ds = op.deliveries()
        named = sorted({str(q) for q in op.value.get("queues", [])})
        cap = int(op.value.get("max", 1))
        exhaustive = op.ok and len(ds) < cap
        out: list[tuple[str | None, Action]] = []
        for q in named:
            got = tuple((d.id, d.attempt, d.token) for d in ds if d.queue == q)
            part = Action(
                "claim",
                outcome,
                queues=frozenset((q,)),
                max=cap,
                got=got,
                exhaustive=exhaustive,
                split=len(named) > 1,
            )
            out.append((q, part))
        for d in ds:  # a job from a queue the claim did not name: illegal in its queue
            if d.queue not in named:
                got = ((d.id, d.attempt, d.token),)
                stray = Action("claim", outcome, queues=frozenset(named), max=cap, got=got)
                out.append((d.queue, stray))
        return out
    if op.type == "fail" and not is_refusal(op.error):
        return []
    jid, token = op.job()
    if op.type == "info" and (
        op.f == "heartbeat" or (op.f != "release" and refused.get((jid, token), -INF) < op.start_ns)
    ):
        return []  # dominated by "no effect" (module docstring)
    retry_zero = op.value.get("retry_in_ms") == 0
    return [(None, Action(op.f, outcome, job=jid, token=token, retry_zero=retry_zero))]


def check_linearizable(
    ix: HistoryIndex, bounds: Bounds | None = None, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``skip``: queues with limits, which the model does not follow (the limits checker and
    the jobs and total-queue checks judge them)."""
    bounds = bounds or Bounds()
    specs, enq_ids = _specs_and_ids(ix)
    refused = _refused_after(ix)
    groups: dict[str, list[tuple[Op, Action]]] = defaultdict(list)
    for op in ix.ops:
        for named, action in _actions(op, enq_ids, refused):
            queue = named
            if queue is None:
                spec = specs.get(action.job)
                queue = spec.queue if spec is not None else ix.job_queue(action.job)
            if queue is not None and queue not in skip:
                groups[queue].append((op, action))
    # Jobs delivered but never enqueued get a spec from their delivery, so the search can
    # say "illegal" (a claim cannot return them) instead of failing on a missing spec.
    for d in ix.deliveries:
        specs.setdefault(d.id, JobSpec(d.id, d.queue, d.priority, DEFAULT_MAX_ATTEMPTS, False))
    started = time.monotonic()
    components: list[dict[str, Any]] = []
    for rep in sorted(groups):
        items = groups[rep]
        queues = [rep]
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
