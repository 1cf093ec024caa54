"""Property tests: histories of the real state machine pass every checker; one illegal edit of
such a history is flagged by the checker that owns the property."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from raftq_jepsen.checker import Bounds, judge

from tests.chaos.hist import History
from tests.chaos.sim import MUTATIONS, mutate, simulate

# The WGL search is bounded by its memo size here, not by time, so whether a component is
# decided does not depend on the machine's speed; the examples are derandomized, so a run of
# the suite is the same everywhere.
BOUNDS = Bounds(time_limit_s=300, total_time_s=600, max_cache=5_000)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


def check(events: list[dict[str, Any]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        h = History(events=events, now_ns=events[-1]["time_ns"])
        return judge(h.write(Path(d) / "run"), BOUNDS)


def violations(results: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {k: v for k, v in c.get("violations", {}).items() if v}
        for name, c in results["checks"].items()
        if not c["valid"]
    }


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(5, 40), n_procs=st.integers(1, 4))
def test_legal_histories_pass_every_checker(seed: int, n_ops: int, n_procs: int) -> None:
    results = check(simulate(seed, n_ops, n_procs))
    assert violations(results) == {}
    assert results["valid"]


def test_the_search_decides_most_legal_histories() -> None:
    """ "unknown" is honest but checks nothing: on these histories the bound is rarely hit."""
    decided = 0
    for seed in range(20):
        lin = check(simulate(seed, 30, 1 + seed % 4))["checks"]["linearizable"]["counts"]
        assert lin["illegal"] == 0
        decided += lin["unknown"] == 0
    assert decided >= 18


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n_procs=st.integers(1, 4),
    mutation=st.sampled_from(sorted(MUTATIONS)),
)
def test_one_illegal_edit_is_flagged(seed: int, n_procs: int, mutation: str) -> None:
    events = mutate(simulate(seed, 25, n_procs), mutation, seed)
    assume(events is not None)
    assert events is not None
    results = check(events)
    owners = MUTATIONS[mutation][1]
    if owners == ("linearizable",):
        # Only the search sees this one; a component it could not decide checked nothing.
        assume(results["checks"]["linearizable"]["counts"]["unknown"] == 0)
    assert not results["valid"]
    assert set(owners) & violations(results).keys(), (mutation, violations(results))


def test_simulated_histories_exercise_the_tricky_cases() -> None:
    """The generator is worth its name: across seeds it produces redeliveries, refusals,
    uncertain ops of every kind, multi-queue claims, delayed jobs, and jobs given back
    (``release``) and delivered again with the same attempt number."""
    seen: set[str] = set()
    for seed in range(30):
        events = simulate(seed, 45, 3)
        attempts: set[tuple[int, int]] = set()
        for ev in events:
            v = ev["value"]
            if ev["type"] == "info":
                seen.add(f"info {ev['f']}")
            if ev["type"] == "fail" and ev["error"] in ("stale_token", "lease_expired"):
                seen.add("refusal")
            if ev["f"] == "claim" and ev["type"] == "ok":
                if any(j["attempt"] > 1 for j in v["jobs"]):
                    seen.add("redelivery")
                if len(v["queues"]) > 1:
                    seen.add("multi-queue claim")
                for j in v["jobs"]:
                    if (j["id"], j["attempt"]) in attempts:
                        seen.add("same attempt again")
                    attempts.add((j["id"], j["attempt"]))
            if ev["f"] == "release" and ev["type"] == "ok":
                seen.add("release")
            if ev["f"] == "enqueue" and v.get("delay_ms"):
                seen.add("delayed")
    assert seen >= {
        "info enqueue", "info claim", "info ack", "info nack", "info release", "refusal",
        "redelivery", "multi-queue claim", "delayed", "release", "same attempt again",
    }  # fmt: skip
