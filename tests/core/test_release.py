"""``Release``: a leased job given back unstarted (log version 4).

A worker that stops with jobs it claimed and never started, or a stream that closes with
jobs leased for it and never pushed, hands them back. With ``Nack`` that costs an attempt, so
a job handed back on its last attempt went to the dead letters without ever running (the
defect these tests pin); ``Release`` undoes the claim instead.
"""

from __future__ import annotations

import pytest

from raftq.core import (
    Claim,
    EnableVersion,
    JobState,
    Nacked,
    Reason,
    Release,
    Released,
    Result,
    SetLimits,
    VersionEnabled,
)
from tests.core.test_commands import T0, Harness, rejected


class V4(Harness):
    def __init__(self) -> None:
        super().__init__()
        assert self.one(EnableVersion(now_ms=self.now, version=4)) == VersionEnabled(4)

    def release(self, job_id: int, token: int) -> Result:
        return self.one(Release(now_ms=self.now, job_id=job_id, token=token))


@pytest.fixture
def h() -> V4:
    return V4()


def test_a_job_given_back_on_its_last_attempt_runs_again(h: V4) -> None:
    """The defect: handed back with a nack, a job with one attempt left is dead unrun."""
    nacked = h.enqueue(max_attempts=1)
    assert h.nack(h.claim_one(), retry_in_ms=0) == Nacked(nacked, "dead", None)

    job_id = h.enqueue(max_attempts=1)
    lease = h.claim_one()
    assert h.release(job_id, lease.token) == Released(job_id)
    info = h.m.job_info(job_id)
    assert info is not None and (info.state, info.attempts) == (JobState.QUEUED, 0)
    again = h.claim_one()
    assert (again.id, again.attempt) == (job_id, 1)  # its one attempt, still to run
    h.ack(again)
    assert h.state(job_id) is JobState.SUCCEEDED


def test_a_released_job_keeps_its_place_in_line(h: V4) -> None:
    first, second = h.enqueue(), h.enqueue()
    h.advance(500)
    urgent = h.enqueue(priority=9)
    leases = h.claim(max=3)
    assert [x.id for x in leases] == [urgent, first, second]
    for x in reversed(leases):  # given back in any order: the line is what it was
        assert h.release(x.id, x.token) == Released(x.id)
    assert [x.id for x in h.claim(max=3)] == [urgent, first, second]
    info = h.m.job_info(first)
    assert info is not None and info.run_at_ms == T0


def test_the_released_token_is_stale_and_a_second_release_is_refused(h: V4) -> None:
    job_id = h.enqueue()
    lease = h.claim_one()
    assert h.release(job_id, lease.token) == Released(job_id)
    for r in (h.release(job_id, lease.token), h.ack(lease), h.nack(lease), h.heartbeat(lease)):
        assert rejected(r, Reason.STALE_TOKEN), r
    assert h.depth()["queued"] == 1 and h.depth()["leased"] == 0


def test_release_refusals(h: V4) -> None:
    assert rejected(h.release(999, 1), Reason.NOT_FOUND)
    job_id = h.enqueue(lease_ms=1000)
    old = h.claim_one()
    assert rejected(h.release(job_id, old.token + 1), Reason.STALE_TOKEN)
    h.advance(1000)  # the lease ended: the job is another claim's to take
    assert rejected(h.release(job_id, old.token), Reason.LEASE_EXPIRED)
    lease = h.claim_one()
    h.ack(lease)
    assert rejected(h.release(job_id, lease.token), Reason.FINISHED)


def test_release_frees_the_concurrency_slot(h: V4) -> None:
    h.one(SetLimits(now_ms=h.now, queue="q", concurrency=1))
    a = h.enqueue()
    h.enqueue()
    lease = h.claim_one()
    assert lease.id == a and h.claim() == []  # the one slot is taken
    h.release(a, lease.token)
    assert h.claim_one().id == a


def test_release_needs_log_version_4() -> None:
    h = Harness()
    h.one(EnableVersion(now_ms=h.now, version=3))
    job_id = h.enqueue()
    lease = h.claim_one()
    r = h.one(Release(now_ms=h.now, job_id=job_id, token=lease.token))
    assert rejected(r, Reason.VERSION_NOT_ENABLED), r
    assert h.state(job_id) is JobState.LEASED


def test_a_claim_in_the_same_entry_sees_the_released_job(h: V4) -> None:
    job_id = h.enqueue()
    lease = h.claim_one()
    release = Release(now_ms=h.now, job_id=job_id, token=lease.token)
    claim = Claim(now_ms=h.now, queues=("q",), worker="w2")
    released, claimed = h.apply(release, claim)
    assert released == Released(job_id)
    assert [x.id for x in claimed.jobs] == [job_id]  # type: ignore[union-attr]
