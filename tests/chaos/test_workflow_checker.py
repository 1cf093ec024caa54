"""The workflows checker on hand-written histories: each violation kind is flagged, a legal
history passes, and the other checkers leave workflow jobs out (checker/index.py)."""

from __future__ import annotations

from typing import Any

from raftq_jepsen.checker.history import pair_events
from raftq_jepsen.checker.index import build_index
from raftq_jepsen.checker.linear import check_linearizable
from raftq_jepsen.checker.total_queue import check_total_queue
from raftq_jepsen.checker.workflows import check_workflows

P = [{"flow": "t", "n": i} for i in range(3)]
CALLBACK = {"flow": "t", "callback": True}
IDS = [11, 12, 13]


class H:
    """Events with increasing times; each op is invoked and completed at once."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.t = 0

    def op(self, f: str, value: dict[str, Any], result: Any = None, typ: str = "ok") -> None:
        self.t += 10
        self.events.append(
            {"type": "invoke", "f": f, "process": 1, "time_ns": self.t, "value": value}
        )
        self.t += 10
        done = {"type": typ, "f": f, "process": 1, "time_ns": self.t, "value": result or value}
        self.events.append(done)

    def batch(self) -> None:
        value = {
            "jobs": [
                {"queue": "flow.a", "payload": P[0]},
                {"queue": "flow.b", "payload": P[1]},
                {"queue": "flow.a", "payload": P[2], "depends_on": ["@0", "@1"]},
            ],
            "on_success": {"queue": "flow.cb", "payload": CALLBACK},
        }
        self.op("batch", value, {**value, "batch": 1, "ids": IDS})

    def claim(
        self, job_id: int, payload: Any, token: int, parents: Any = None, attempt: int = 1
    ) -> None:
        job = {"id": job_id, "queue": "flow.a", "payload": payload, "priority": 0,
               "attempt": attempt, "token": token}  # fmt: skip
        if parents is not None:
            job["parents"] = parents
        value = {"queues": ["flow.a", "flow.b", "flow.cb"], "max": 1, "lease_ms": 1000}
        self.op("claim", value, {**value, "jobs": [job]})

    def ack(self, job_id: int, token: int, typ: str = "ok") -> None:
        self.op("ack", {"id": job_id, "token": token}, typ=typ)

    def check(self) -> dict[str, int]:
        r = check_workflows(pair_events(self.events))
        return {k: v for k, v in r["violations"].items() if v}


def legal() -> H:
    h = H()
    h.batch()
    h.claim(11, P[0], 1)
    h.ack(11, 1)
    h.claim(12, P[1], 2)
    h.ack(12, 2, typ="info")  # outcome unknown: it may have succeeded
    h.claim(13, P[2], 3, parents={"11": P[0], "12": P[1]})
    h.ack(13, 3)
    h.claim(20, CALLBACK, 4, parents={"11": P[0], "12": P[1], "13": P[2]})
    h.ack(20, 4)
    return h


def test_a_legal_workflow_passes() -> None:
    assert legal().check() == {}


def test_a_dependant_claimed_before_its_parent_could_succeed() -> None:
    h = H()
    h.batch()
    h.claim(11, P[0], 1)
    h.ack(11, 1)
    h.claim(13, P[2], 3, parents={"11": P[0], "12": P[1]})  # 12 was never acked
    h.claim(12, P[1], 2)
    h.ack(12, 2)
    assert h.check() == {"dependant_started_early": 1}


def test_a_failed_ack_does_not_count() -> None:
    h = H()
    h.batch()
    for job_id, token in ((11, 1), (12, 2)):
        h.claim(job_id, P[job_id - 11], token)
        h.ack(job_id, token, typ="fail" if job_id == 12 else "ok")
    h.claim(13, P[2], 3, parents={"11": P[0], "12": P[1]})
    assert h.check() == {"dependant_started_early": 1}


def test_missing_and_wrong_parents() -> None:
    h = H()
    h.batch()
    for job_id, token in ((11, 1), (12, 2)):
        h.claim(job_id, P[job_id - 11], token)
        h.ack(job_id, token)
    h.claim(13, P[2], 3)  # no parents at all
    h.claim(13, P[2], 4, parents={"11": P[0], "12": "other"}, attempt=2)
    assert h.check() == {"missing_parents": 2, "wrong_parent_result": 1}


def test_released_twice() -> None:
    h = legal()
    h.claim(13, P[2], 9, parents={"11": P[0], "12": P[1]})  # attempt 1 again
    assert h.check() == {"released_twice": 1}


def test_a_dependant_given_back_may_come_again_with_the_same_attempt() -> None:
    """A release gives the claim's attempt back: attempt 1 twice is legal then, also when the
    release's outcome is unknown; a release that failed outright changed nothing."""
    for typ, flagged in (("ok", {}), ("info", {}), ("fail", {"released_twice": 1})):
        h = legal()
        h.op("release", {"id": 13, "token": 3}, typ=typ)
        h.claim(13, P[2], 9, parents={"11": P[0], "12": P[1]})  # attempt 1 again
        assert h.check() == flagged, typ


def test_callback_twice_early_and_without_every_result() -> None:
    h = H()
    h.batch()
    h.claim(20, CALLBACK, 1, parents={})  # before any member was acked
    h.claim(21, CALLBACK, 2, parents={})
    assert h.check() == {"callback_twice": 1, "callback_early": 2, "callback_parents": 2}


def test_the_other_checkers_leave_workflow_jobs_out() -> None:
    ix = build_index(pair_events(legal().events))
    assert ix.claims == [] and ix.deliveries == [] and dict(ix.lease_ops) == {}
    assert ix.ops == []  # the linearizability checker walks these: a batch op has no job id
    assert check_total_queue(ix)["valid"]
    assert check_linearizable(ix)["valid"]
