"""Workflows: dependencies and batch callbacks (``POST /v1/batches``), certain violations only.

The workload's ``batch`` operation creates a small graph: its value lists the jobs (each with
``payload``, ``queue`` and ``depends_on`` as indexes ``"@N"`` of the same batch) and the
``on_success`` callback (``queue``, ``payload``, unique per batch); the ok completion adds the
``batch`` id and the job ``ids``. Workers ack a workflow job with its payload as the result, so
the parents a claim carries can be checked against the payloads.

An ack *may have been applied* from its invoke on unless it failed outright (``fail``): its
``ok`` or ``info`` attempts count. For an ``ok`` claim C that delivered job D:

- dependant_started_early: D depends on P, and no ack of P that may have succeeded was invoked
  before C completed. The cluster releases D only in the entry that applies P's successful
  ack, so C leased D before P could have succeeded;
- missing_parents / wrong_parent_result: D's delivery lacks ``parents[P]``, or it differs from
  P's payload (the only result any ack of P carries);
- released_twice: two ``ok`` deliveries of D with the same attempt number (a job is released
  once; each lease of it counts one attempt), unless a worker gave D back (``release``, which
  undoes a claim's attempt) with an outcome other than ``fail``;
- callback_twice: the callback payload of one batch delivered under two job ids (each callback
  is enqueued once);
- callback_early: the callback delivered by a claim that completed before some member had an
  ack invoked that may have succeeded (``on_success`` is due only once every member succeeded);
- callback_parents: the callback's ``parents`` are not every member's payload.

Cost: linear in the history.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from raftq_jepsen.checker.history import INF, Op, payload_key
from raftq_jepsen.checker.result import Findings

__all__ = ["KINDS", "check_workflows"]

KINDS = (
    "dependant_started_early",
    "missing_parents",
    "wrong_parent_result",
    "released_twice",
    "callback_twice",
    "callback_early",
    "callback_parents",
)


def _first_possible_ack(ops: list[Op]) -> dict[int, float]:
    """Job id -> the earliest invoke of an ack that may have been applied (not ``fail``)."""
    first: dict[int, float] = {}
    for op in ops:
        if op.f == "ack" and op.type != "fail":
            job_id = int(op.value["id"])
            first[job_id] = min(first.get(job_id, INF), op.start_ns)
    return first


def _graphs(ops: list[Op]) -> tuple[dict[int, list[int]], dict[int, str], dict[str, list[int]]]:
    """From the ok batches: dependant id -> parent ids, job id -> payload_key, and callback
    payload_key -> the batch's member ids."""
    deps: dict[int, list[int]] = {}
    payload_of: dict[int, str] = {}
    callbacks: dict[str, list[int]] = {}
    for op in ops:
        if op.f != "batch" or not op.ok:
            continue
        ids = [int(i) for i in op.result["ids"]]
        for spec, job_id in zip(op.value["jobs"], ids, strict=True):
            payload_of[job_id] = payload_key(spec.get("payload"))
            refs = [ids[int(str(r)[1:])] if str(r).startswith("@") else int(r)
                    for r in spec.get("depends_on", [])]  # fmt: skip
            if refs:
                deps[job_id] = refs
        cb = op.value.get("on_success")
        if cb is not None:
            callbacks[payload_key(cb.get("payload"))] = ids
    return deps, payload_of, callbacks


def check_workflows(ops: list[Op]) -> dict[str, Any]:
    found = Findings(KINDS)
    deps, payload_of, callbacks = _graphs(ops)
    acked_from = _first_possible_ack(ops)
    attempts: dict[tuple[int, int], int] = defaultdict(int)
    given_back = {int(op.value["id"]) for op in ops if op.f == "release" and op.type != "fail"}
    callback_ids: dict[str, set[int]] = defaultdict(set)
    found.counts = {"batches": len(callbacks), "dependants": len(deps)}
    for op in ops:
        if op.f != "claim" or not op.ok:
            continue
        for raw in op.result.get("jobs", []):
            job_id = int(raw["id"])
            key = payload_key(raw.get("payload"))
            parents = raw.get("parents")
            if job_id in deps:
                attempts[(job_id, int(raw["attempt"]))] += 1
                if attempts[(job_id, int(raw["attempt"]))] == 2 and job_id not in given_back:
                    found.flag("released_twice", {"id": job_id, "attempt": raw["attempt"]})
                _check_parents(found, op, job_id, deps[job_id], parents, payload_of, acked_from)
            elif key in callbacks:
                callback_ids[key].add(job_id)
                if len(callback_ids[key]) == 2:
                    found.flag("callback_twice", {"payload": key, "ids": sorted(callback_ids[key])})
                _check_callback(found, op, job_id, callbacks[key], parents, payload_of, acked_from)
    return found.result()


def _check_callback(
    found: Findings,
    claim: Op,
    job_id: int,
    members: list[int],
    parents: Any,
    payload_of: dict[int, str],
    acked_from: dict[int, float],
) -> None:
    late = [m for m in members if acked_from.get(m, INF) >= claim.end_ns]
    if late:
        found.flag("callback_early", {"id": job_id, "claim": claim.index, "before": late})
    want = {str(m): payload_of.get(m) for m in members}
    got = {str(k): payload_key(v) for k, v in (parents or {}).items()}
    if got != want:
        found.flag("callback_parents", {"id": job_id, "parents": got})


def _check_parents(
    found: Findings,
    claim: Op,
    job_id: int,
    parents_of: list[int],
    parents: Any,
    payload_of: dict[int, str],
    acked_from: dict[int, float],
) -> None:
    for p in parents_of:
        if acked_from.get(p, INF) >= claim.end_ns:
            found.flag(
                "dependant_started_early",
                {"id": job_id, "parent": p, "claim": claim.index},
            )
        if not isinstance(parents, dict) or str(p) not in parents:
            found.flag("missing_parents", {"id": job_id, "parent": p})
        elif payload_key(parents[str(p)]) != payload_of.get(p):
            found.flag("wrong_parent_result", {"id": job_id, "parent": p})
