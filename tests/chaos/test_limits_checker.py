"""The limits checker on hand-written histories: each certain violation is flagged, and what
only may have been a violation (an ack that may have landed first, an expired lease) is not.

The positive control in a running cluster is the ``ignore-limits`` test fault
(``raftq.server.testfaults``; ``tests/server/test_testfaults.py`` pins its effect)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftq_jepsen.checker import judge
from raftq_jepsen.checker.history import pair_events
from raftq_jepsen.checker.index import build_index
from raftq_jepsen.checker.limits import check_limits

from tests.chaos.hist import History, job

LEASE_MS = 1000  # what History.claim_invoke sends


def leased(job_id: int, token: int, claimed_ms: int, queue: str = "q") -> dict[str, Any]:
    return {
        **job(job_id, token, f"p{job_id}", queue=queue),
        "lease_expires_ms": claimed_ms + LEASE_MS,
    }


def violations(h: History, limits: dict[str, Any]) -> dict[str, int]:
    result = check_limits(build_index(pair_events(h.events)), {"limits": limits})
    assert result["valid"] == (not any(result["violations"].values()))
    return {k: v for k, v in result["violations"].items() if v}


def enqueue_all(h: History, groups: dict[int, str | None]) -> None:
    for job_id, group in groups.items():
        h.enqueue(job_id, f"p{job_id}", group=group)


def test_a_third_lease_over_a_cap_of_two_is_flagged() -> None:
    h = History()
    enqueue_all(h, {1: None, 2: None, 3: None})
    h.claim(leased(1, 1, 5000))
    h.claim(leased(2, 2, 5001))
    h.claim(leased(3, 3, 5002))
    assert violations(h, {"q": {"concurrency": 2}}) == {"concurrency_exceeded": 1}
    assert violations(h, {"q": {"concurrency": 3}}) == {}
    assert violations(h, {"other": {"concurrency": 1}}) == {}  # only limited queues count


def test_an_ack_before_the_claim_frees_the_slot_and_one_that_may_have_is_not_counted() -> None:
    h = History()
    enqueue_all(h, {1: None, 2: None, 3: None})
    h.claim(leased(1, 1, 5000))
    h.claim(leased(2, 2, 5001))
    h.lease_op("ack", 1, 1)
    h.claim(leased(3, 3, 5002))  # after job 1's ack: 2 leased
    assert violations(h, {"q": {"concurrency": 2}}) == {}
    h = History()
    enqueue_all(h, {1: None, 2: None, 3: None})
    h.claim(leased(1, 1, 5000))
    h.claim(leased(2, 2, 5001))
    c = h.claim_invoke()
    h.lease_op("ack", 1, 1, process=2, outcome="info")  # may have been applied before c
    h.claim_ok(c, leased(3, 3, 5002))
    assert violations(h, {"q": {"concurrency": 2}}) == {}


def test_an_expired_lease_frees_its_slot() -> None:
    h = History()
    enqueue_all(h, {1: None, 2: None})
    h.claim(leased(1, 1, 5000))
    h.claim(leased(2, 2, 5000 + LEASE_MS))  # job 1's lease ended at that instant
    assert violations(h, {"q": {"concurrency": 1}}) == {}


def test_a_group_over_its_cap_is_flagged_and_other_groups_are_not() -> None:
    h = History()
    enqueue_all(h, {1: "a", 2: "b", 3: "a"})
    h.claim(leased(1, 1, 5000))
    h.claim(leased(2, 2, 5001))
    assert violations(h, {"q": {"group_concurrency": 1}}) == {}
    h.claim(leased(3, 3, 5002))
    assert violations(h, {"q": {"group_concurrency": 1}}) == {"group_concurrency_exceeded": 1}


def test_a_full_rate_window_is_flagged() -> None:
    rate = {"limit": 2, "period_ms": 1000}
    h = History()
    enqueue_all(h, {1: "a", 2: "b", 3: "a"})
    h.claim(leased(1, 1, 5000))
    h.claim(leased(2, 2, 5500))
    h.claim(leased(3, 3, 6000))  # the window [5000, 6000) holds 2
    assert violations(h, {"q": {"rate": rate, "group_rate": {"limit": 1, "period_ms": 1000}}}) == {}
    h = History()
    enqueue_all(h, {1: "a", 2: "b", 3: "a"})
    h.claim(leased(1, 1, 5000))
    h.claim(leased(2, 2, 5500))
    h.claim(leased(3, 3, 5999))
    assert violations(h, {"q": {"rate": rate}}) == {"rate_exceeded": 1}
    assert violations(h, {"q": {"group_rate": {"limit": 1, "period_ms": 1000}}}) == {
        "group_rate_exceeded": 1
    }


def test_a_run_without_limits_is_valid_and_judge_reports_the_check(tmp_path: Path) -> None:
    h = History()
    enqueue_all(h, {1: None})
    h.claim(leased(1, 1, 5000))
    h.lease_op("ack", 1, 1)
    results = judge(h.write(tmp_path / "run"))
    assert results["checks"]["limits"]["valid"]
