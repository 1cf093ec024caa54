"""Random legal histories from the real state machine (``raftq.core.Machine``), with
concurrency windows, uncertain outcomes and a drain; and mutations that make them illegal.

Each client process invokes one op at a time. Between its invoke and its completion the op
is applied to the machine at one point (its linearization point), or never: an op may be
lost before it is applied (completed ``fail`` or ``info``), or applied with its answer lost
(``info``). The machine's clock moves forward with the steps, so leases expire, delayed jobs
come due and nacked jobs return, as they do in a cluster. Workers also give jobs back
(``release``, log version 4, enabled first as a new cluster does), which undoes a claim's
attempt.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

from raftq.core.commands import Ack, Claim, EnableVersion, Enqueue, Heartbeat, Nack, NewJob, Release
from raftq.core.machine import Machine
from raftq.core.results import Acked, Claimed, Enqueued, Extended, Nacked, Refusal, Released

__all__ = ["MUTATIONS", "mutate", "simulate"]

STEP_NS = 1_000_000
MAX_ATTEMPTS = 20  # high enough that a job rarely dies of leases nobody saw (lost for us)


@dataclass
class _Proc:
    pid: int
    op: dict[str, Any] | None = None  # the pending op: f, value, applied, result, error
    held: list[tuple[int, int]] = field(default_factory=list)  # (id, token) it was given


class _Sim:
    def __init__(self, rng: random.Random, queues: list[str]) -> None:
        self.rng = rng
        self.queues = queues
        self.m = Machine()
        self.m.apply_command(EnableVersion(now_ms=0, version=4))
        self.now_ms = 1_000
        self.t_ns = 0
        self.events: list[dict[str, Any]] = []
        self.payloads = 0
        self.keys: list[tuple[str, str]] = []
        self.independent = False  # claims name one queue each

    def event(self, p: _Proc, typ: str, value: dict[str, Any], error: Any = None) -> None:
        self.t_ns += STEP_NS
        assert p.op is not None
        self.events.append(
            {
                "index": len(self.events),
                "time_ns": self.t_ns,
                "process": p.pid,
                "type": typ,
                "f": p.op["f"],
                "value": value,
                "node": "n1",
                "error": error,
            }
        )

    def new_op(self, p: _Proc, claim_only: bool = False) -> None:
        rng = self.rng
        f = rng.choice(
            ["enqueue", "enqueue", "claim", "claim", "ack", "nack", "heartbeat", "release"]
        )
        if claim_only or (f in ("ack", "nack", "heartbeat", "release") and not p.held):
            f = "claim"
        value: dict[str, Any]
        if f == "enqueue":
            self.payloads += 1
            queue = rng.choice(self.queues)
            key: str | None = None
            if self.keys and rng.random() < 0.05:
                queue, key = rng.choice(self.keys)
            elif rng.random() < 0.3:
                key = f"k{self.payloads}"
                self.keys.append((queue, key))
            value = {"queue": queue, "payload": f"p{self.payloads}", "key": key}
            value["priority"] = rng.choice([0, 0, 1, 5, 9])
            value["max_attempts"] = MAX_ATTEMPTS
            if rng.random() < 0.1:
                value["delay_ms"] = rng.randint(20, 200)
        elif f == "claim":
            n = 1 if self.independent else rng.choice([1, 1, 1, len(self.queues)])
            qs = rng.sample(self.queues, n)
            value = {"queues": sorted(qs), "max": rng.choice([1, 1, 2, 3])}
            value["lease_ms"] = rng.randint(30, 300)
        else:
            # Mostly the newest lease held, sometimes an older (maybe stale) one.
            job_id, token = p.held[-1] if rng.random() < 0.8 else rng.choice(p.held)
            value = {"id": job_id, "token": token}
            if f == "nack":
                value["retry_in_ms"] = rng.choice([0, 0, 50, None])
        p.op = {"f": f, "value": value, "applied": False}
        self.event(p, "invoke", value)

    def apply(self, p: _Proc) -> None:
        op = p.op
        assert op is not None
        v, f = op["value"], op["f"]
        now = self.now_ms
        result: Any
        if f == "enqueue":
            nj = NewJob(
                payload=v["payload"].encode(),
                priority=v["priority"],
                delay_ms=v.get("delay_ms"),
                key=v["key"],
                max_attempts=v["max_attempts"],
            )
            result = self.m.apply_command(Enqueue(now_ms=now, queue=v["queue"], jobs=(nj,)))
            assert isinstance(result, Enqueued)
            op["result"] = {"id": result.ids[0]}
        elif f == "claim":
            cmd = Claim(
                now_ms=now,
                queues=tuple(v["queues"]),
                worker=f"w{p.pid}",
                max=v["max"],
                lease_ms=v["lease_ms"],
            )
            result = self.m.apply_command(cmd)
            assert isinstance(result, Claimed)
            jobs = [
                {
                    "id": j.id,
                    "queue": j.queue,
                    "payload": j.payload.decode(),
                    "priority": j.priority,
                    "attempt": j.attempt,
                    "token": j.token,
                }
                for j in result.jobs
            ]
            op["result"] = {"jobs": jobs}
            op["held"] = [(j["id"], j["token"]) for j in jobs]
        else:
            job_id, token = v["id"], v["token"]
            if f == "ack":
                result = self.m.apply_command(Ack(now_ms=now, job_id=job_id, token=token))
            elif f == "nack":
                retry = v.get("retry_in_ms")
                cmd2 = Nack(now_ms=now, job_id=job_id, token=token, retry_in_ms=retry)
                result = self.m.apply_command(cmd2)
            elif f == "release":
                result = self.m.apply_command(Release(now_ms=now, job_id=job_id, token=token))
            else:
                result = self.m.apply_command(Heartbeat(now_ms=now, job_id=job_id, token=token))
            if isinstance(result, Refusal):
                op["error"] = result.reason.value
            else:
                assert isinstance(result, (Acked, Nacked, Released, Extended))
            op["result"] = {}
        op["applied"] = True

    def complete(self, p: _Proc, typ: str) -> None:
        op = p.op
        assert op is not None
        if typ == "ok" and op.get("error"):
            self.event(p, "fail", op["value"], op["error"])
        elif typ == "ok":
            self.event(p, "ok", {**op["value"], **op["result"]})
            p.held += op.get("held", [])
        else:
            self.event(p, typ, op["value"], "timeout" if typ == "info" else "no_leader")
        p.op = None


# The simulated cluster's step loop: one branch per client operation, as the workload has.
def simulate(  # noqa: C901
    seed: int, n_ops: int = 40, n_procs: int = 3, n_queues: int = 0
) -> list[dict[str, Any]]:
    """A legal history: ``n_ops`` client ops by ``n_procs`` processes, then a drain. With
    ``n_queues``, that many queues and every claim names one (independent queues, as the
    jepsen workload has); else 1 to 3 queues, claims sometimes naming all."""
    rng = random.Random(seed)
    names = [f"q{i}" for i in range(n_queues)] if n_queues else ["a", "b", "c"][: rng.randint(1, 3)]
    sim = _Sim(rng, names)
    sim.independent = bool(n_queues)
    procs = [_Proc(i) for i in range(n_procs)]
    started = 0
    while started < n_ops or any(p.op for p in procs):
        sim.now_ms += rng.randint(0, 30)
        moves: list[tuple[str, _Proc]] = []
        for p in procs:
            if p.op is None:
                if started < n_ops:
                    moves.append(("invoke", p))
            elif not p.op["applied"]:
                moves += [("apply", p), ("apply", p), ("apply", p), ("drop", p)]
            else:
                moves += [("complete", p)] * 4 + [("lose_answer", p)]
        kind, p = rng.choice(moves)
        if kind == "invoke":
            sim.new_op(p)
            started += 1
        elif kind == "apply":
            sim.apply(p)
        elif kind == "drop":
            sim.complete(p, rng.choice(["fail", "info"]))
        elif kind == "complete":
            sim.complete(p, "ok")
        else:
            sim.complete(p, "info")
    # Drain: far enough ahead that every lease has expired and every delay is due; one claim
    # names every queue, or one queue at a time when the queues are independent.
    drainer = _Proc(n_procs)
    sim.now_ms += 100_000
    groups = [[q] for q in sim.queues] if sim.independent else [sim.queues]
    for queues in groups:
        while True:
            drainer.op = {
                "f": "claim",
                "value": {"queues": queues, "max": 5, "lease_ms": 1000},
                "applied": False,
            }
            sim.event(drainer, "invoke", drainer.op["value"])
            sim.apply(drainer)
            jobs = drainer.op["result"]["jobs"]
            sim.complete(drainer, "ok")
            if not jobs:
                break
            for j in jobs:
                drainer.op = {"f": "ack", "value": {"id": j["id"], "token": j["token"]}}
                sim.event(drainer, "invoke", drainer.op["value"])
                sim.apply(drainer)
                sim.complete(drainer, "ok")
    return sim.events


# -- mutations: each makes the history certainly illegal -----------------------------------


def _ok_claim_jobs(events: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(event position, job dict) of every delivery, in history order."""
    return [
        (i, j)
        for i, ev in enumerate(events)
        if ev["f"] == "claim" and ev["type"] == "ok"
        for j in ev["value"]["jobs"]
    ]


def _invoke_of(events: list[dict[str, Any]], pos: int) -> int:
    proc = events[pos]["process"]
    return max(
        i for i in range(pos) if events[i]["process"] == proc and events[i]["type"] == "invoke"
    )


def _append_op(
    events: list[dict[str, Any]], f: str, value: dict[str, Any], done: dict[str, Any]
) -> None:
    t = events[-1]["time_ns"]
    proc = 10_000 + len(events)
    for k, (typ, v) in enumerate((("invoke", value), ("ok", {**value, **done}))):
        events.append(
            {
                "index": len(events),
                "time_ns": t + (k + 1) * STEP_NS,
                "process": proc,
                "type": typ,
                "f": f,
                "value": v,
                "node": "n1",
                "error": None,
            }
        )


def _sequential_pairs(
    events: list[dict[str, Any]],
) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(first delivery, later delivery, later's claim event) of one job, the first claim
    completed before the later one was invoked."""
    out = []
    deliveries = _ok_claim_jobs(events)
    for a_pos, a in deliveries:
        for b_pos, b in deliveries:
            if b["id"] == a["id"] and a_pos < _invoke_of(events, b_pos):
                out.append((a, b, events[b_pos]))
    return out


def _lost(events: list[dict[str, Any]], rng: random.Random) -> bool:
    enq: dict[int, int] = {}
    for ev in events:
        if ev["f"] == "enqueue" and ev["type"] == "ok":
            enq[ev["value"]["id"]] = enq.get(ev["value"]["id"], 0) + 1
    delivered = {j["id"] for _, j in _ok_claim_jobs(events)}
    choices = sorted(i for i, n in enq.items() if n == 1 and i in delivered)
    if not choices:
        return False
    victim = rng.choice(choices)
    for ev in events:
        if ev["f"] == "claim" and ev["type"] == "ok":
            ev["value"]["jobs"] = [j for j in ev["value"]["jobs"] if j["id"] != victim]
    events[:] = [ev for ev in events if ev["value"].get("id") != victim or ev["f"] == "enqueue"]
    return True


def _unexpected(events: list[dict[str, Any]], rng: random.Random) -> bool:
    claims = [ev for ev in events if ev["f"] == "claim" and ev["type"] == "ok"]
    ev = rng.choice(claims)
    q = ev["value"]["queues"][0]
    intruder = {"id": 999_999, "queue": q, "payload": "intruder", "priority": 0}
    ev["value"]["jobs"].append({**intruder, "attempt": 1, "token": 10**9})
    return True


def _double_ack(events: list[dict[str, Any]], rng: random.Random) -> bool:
    acks = [ev for ev in events if ev["f"] == "ack" and ev["type"] == "ok"]
    ev = rng.choice(acks)
    _append_op(events, "ack", {"id": ev["value"]["id"], "token": ev["value"]["token"]}, {})
    return True


def _stale_ack(events: list[dict[str, Any]], rng: random.Random) -> bool:
    pairs = _sequential_pairs(events)
    if not pairs:
        return False
    a, _, _ = rng.choice(pairs)
    _append_op(
        events, rng.choice(["ack", "nack", "heartbeat"]), {"id": a["id"], "token": a["token"]}, {}
    )
    return True


def _delivery_after_ack(events: list[dict[str, Any]], rng: random.Random) -> bool:
    acked = {ev["value"]["id"] for ev in events if ev["f"] == "ack" and ev["type"] == "ok"}
    deliveries = [j for _, j in _ok_claim_jobs(events) if j["id"] in acked]
    j = rng.choice(deliveries)
    top = max(d["token"] for _, d in _ok_claim_jobs(events))
    again = {**j, "token": top + 1, "attempt": j["attempt"] + 1}
    _append_op(
        events, "claim", {"queues": [j["queue"]], "max": 1, "lease_ms": 1000}, {"jobs": [again]}
    )
    return True


def _payload(events: list[dict[str, Any]], rng: random.Random) -> bool:
    _, j = rng.choice(_ok_claim_jobs(events))
    j["payload"] = j["payload"] + "-changed"
    return True


def _token(events: list[dict[str, Any]], rng: random.Random) -> bool:
    pairs = _sequential_pairs(events)
    if not pairs:
        return False
    a, b, _ = rng.choice(pairs)
    b["token"] = a["token"]
    return True


def _attempt(events: list[dict[str, Any]], rng: random.Random) -> bool:
    pairs = _sequential_pairs(events)
    if not pairs:
        return False
    a, b, _ = rng.choice(pairs)
    b["attempt"] = a["attempt"]
    return True


# mutation name -> (edit, the checks that may own it: one of them must flag it)
MUTATIONS = {
    "lost": (_lost, ("total_queue",)),
    "unexpected": (_unexpected, ("total_queue",)),
    "double_ack": (_double_ack, ("jobs",)),
    "stale_token_success": (_stale_ack, ("jobs",)),
    "delivery_after_ack": (_delivery_after_ack, ("jobs",)),
    # The only delivery of a job enqueued with an unknown outcome: nothing else says what its
    # payload was, so a changed one is a payload nobody enqueued.
    "payload_changed": (_payload, ("jobs", "total_queue")),
    "token_not_increasing": (_token, ("jobs",)),
    "attempt_not_counted": (_attempt, ("linearizable",)),
}


def mutate(events: list[dict[str, Any]], name: str, seed: int) -> list[dict[str, Any]] | None:
    """A copy of ``events`` with mutation ``name`` applied (None: not applicable here)."""
    out = copy.deepcopy(events)
    edit, _ = MUTATIONS[name]
    if not edit(out, random.Random(seed)):
        return None
    for i, ev in enumerate(out):
        ev["index"] = i
    return out
