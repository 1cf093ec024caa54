"""Long jobs: progress and checkpoints on the heartbeat, and a cancel that asks the lease holder
to stop (docs/state-machine.md, "Heartbeat" and "Cancel")."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raftq.core import (
    Ack,
    Cancelled,
    Claim,
    Claimed,
    Command,
    EnableVersion,
    Extended,
    Heartbeat,
    JobState,
    Lease,
    Machine,
    Nack,
    Reason,
    Refusal,
    Result,
    Tick,
    codec,
    decode_entry,
    encode_entry,
)
from raftq.core.codec import decode_results, encode_command, encode_results
from raftq.core.limits import MAX_PROGRESS_BYTES
from raftq.core.snapshot import snapshot_bytes
from tests.core.test_commands import Harness


class H(Harness):
    """``Harness`` at log version ``version`` (3: long jobs on), 1 s leases."""

    def __init__(self, version: int = 3) -> None:
        super().__init__()
        if version > 1:
            self.one(EnableVersion(now_ms=self.now, version=version))

    def claim_lease(self) -> Lease:
        return self.claim_one(lease_ms=1000)

    def beat(
        self, lease: Lease, progress: bytes | None = None, checkpoint: bytes | None = None
    ) -> Result:
        return self.heartbeat(lease, progress=progress, checkpoint=checkpoint)


def test_a_heartbeat_stores_the_latest_progress_and_checkpoint_each_on_its_own() -> None:
    h = H()
    h.enqueue()
    lease = h.claim_lease()
    assert lease.checkpoint is None
    h.now += 10
    assert h.beat(lease, progress=b"1", checkpoint=b"c1") == Extended(h.now + 1000)
    assert h.beat(lease, progress=b"2") == Extended(h.now + 1000)  # the checkpoint stays
    info = h.m.job_info(lease.id)
    assert info is not None
    assert (info.progress, info.checkpoint, info.cancel_requested) == (b"2", b"c1", False)
    assert h.beat(lease, checkpoint=b"c2") == Extended(h.now + 1000)
    info = h.m.job_info(lease.id)
    assert info is not None and (info.progress, info.checkpoint) == (b"2", b"c2")


def test_the_checkpoint_goes_to_the_next_attempt_and_progress_restarts() -> None:
    h = H()
    job_id = h.enqueue()
    first = h.claim_lease()
    h.beat(first, progress=b"50%", checkpoint=b"page-7")
    h.one(Nack(now_ms=h.now, job_id=job_id, token=first.token, retry_in_ms=0))
    second = h.claim_lease()
    assert second.checkpoint == b"page-7"
    info = h.m.job_info(job_id)
    assert info is not None and (info.progress, info.checkpoint) == (None, b"page-7")
    # An expired lease hands it on too.
    h.beat(second, checkpoint=b"page-9")
    h.now += 1000
    h.one(Tick(now_ms=h.now))
    assert h.claim_lease().checkpoint == b"page-9"


def test_a_finished_job_keeps_its_last_progress_but_not_its_checkpoint() -> None:
    h = H()
    job_id = h.enqueue()
    lease = h.claim_lease()
    h.beat(lease, progress=b"done", checkpoint=b"c")
    h.one(Ack(now_ms=h.now, job_id=job_id, token=lease.token))
    info = h.m.job_info(job_id)
    assert info is not None and info.state is JobState.SUCCEEDED
    assert (info.progress, info.checkpoint, info.cancel_requested) == (b"done", None, False)


def test_only_the_live_leases_token_stores_anything_and_sizes_are_capped() -> None:
    h = H()
    job_id = h.enqueue()
    lease = h.claim_lease()
    stale = Lease(job_id, "q", b"p", 0, 1, lease.token - 1, 0)
    refused = h.beat(stale, progress=b"x", checkpoint=b"y")
    assert isinstance(refused, Refusal) and refused.reason is Reason.STALE_TOKEN
    big = b"x" * (MAX_PROGRESS_BYTES + 1)
    for kw in ({"progress": big}, {"checkpoint": big}):
        refused = h.beat(lease, **kw)
        assert isinstance(refused, Refusal) and refused.reason is Reason.INVALID
    assert isinstance(h.beat(lease, progress=big[:-1]), Extended)  # the limit itself is fine
    info = h.m.job_info(job_id)
    assert info is not None and info.checkpoint is None


def test_cancelling_a_leased_job_asks_its_worker_to_stop() -> None:
    h = H()
    job_id = h.enqueue()
    lease = h.claim_lease()
    h.beat(lease, progress=b"1", checkpoint=b"c")
    h.now += 100
    cancel_ms = h.now
    assert h.cancel(job_id) == Cancelled(job_id)
    info = h.m.job_info(job_id)
    assert info is not None and info.state is JobState.CANCELLED and info.cancel_requested
    assert (info.progress, info.checkpoint) == (b"1", None)
    before = h.m.job_info(job_id)
    h.now += 100
    # The lease's heartbeat is answered, not refused, and changes nothing (progress neither).
    assert h.beat(lease, progress=b"2") == Extended(cancel_ms, cancel_requested=True)
    assert h.beat(lease) == Extended(cancel_ms, cancel_requested=True)
    assert h.m.job_info(job_id) == before
    # Ack and nack stay refused; another token too.
    for cmd in (
        Ack(now_ms=h.now, job_id=job_id, token=lease.token),
        Nack(now_ms=h.now, job_id=job_id, token=lease.token),
    ):
        refused = h.one(cmd)
        assert isinstance(refused, Refusal) and refused.reason is Reason.FINISHED
    other = Lease(job_id, "q", b"p", 0, 1, lease.token + 1, 0)
    assert isinstance(h.beat(other), Refusal)


def test_a_queued_job_or_an_expired_lease_is_cancelled_without_a_request() -> None:
    h = H()
    queued = h.enqueue()
    assert h.cancel(queued) == Cancelled(queued)
    info = h.m.job_info(queued)
    assert info is not None and not info.cancel_requested
    expired = h.enqueue(max_attempts=2)
    lease = h.claim_lease()
    assert lease.id == expired
    h.now += 1000  # the lease has ended: the job is queued again when cancelled
    assert h.cancel(expired) == Cancelled(expired)
    info = h.m.job_info(expired)
    assert info is not None and not info.cancel_requested
    refused = h.beat(lease)
    assert isinstance(refused, Refusal) and refused.reason is Reason.FINISHED


def test_before_version_3_a_cancel_sets_no_request_and_long_heartbeats_are_refused() -> None:
    h = H(version=2)
    job_id = h.enqueue()
    lease = h.claim_lease()
    refused = h.beat(lease, progress=b"1")
    assert isinstance(refused, Refusal) and refused.reason is Reason.VERSION_NOT_ENABLED
    h.cancel(job_id)
    info = h.m.job_info(job_id)
    assert info is not None and not info.cancel_requested
    refused = h.beat(lease)
    assert isinstance(refused, Refusal) and refused.reason is Reason.FINISHED


def test_long_fields_survive_a_snapshot() -> None:
    h = H()
    running, cancelled, retried = h.enqueue(), h.enqueue(), h.enqueue()
    leases = {x.id: x for x in (h.claim_lease(), h.claim_lease(), h.claim_lease())}
    h.beat(leases[running], progress=b"p", checkpoint=b"c")
    h.beat(leases[cancelled], progress=b"q")
    h.cancel(cancelled)
    h.beat(leases[retried], checkpoint=b"r")
    h.one(Nack(now_ms=h.now, job_id=retried, token=leases[retried].token, retry_in_ms=5))
    raw = snapshot_bytes(h.m)
    copy = Machine.restore(raw)
    copy.check_invariants()
    assert snapshot_bytes(copy) == raw
    for job_id in (running, cancelled, retried):
        assert copy.job_info(job_id) == h.m.job_info(job_id)
    info = copy.job_info(cancelled)
    assert info is not None and info.cancel_requested


def test_a_long_heartbeat_is_a_version_3_command_and_a_plain_one_keeps_its_bytes() -> None:
    plain = Heartbeat(now_ms=1, job_id=2, token=3, lease_ms=4)
    assert encode_command(plain) == [3, None, 1, 2, 3, 4]
    assert codec.command_version(plain) == 1
    for long in (
        Heartbeat(now_ms=1, job_id=2, token=3, progress=b"p"),
        Heartbeat(now_ms=1, job_id=2, token=3, lease_ms=4, checkpoint=b"c"),
        Heartbeat(now_ms=1, request_id="r", job_id=2, token=3, progress=b"", checkpoint=b"c"),
    ):
        raw = encode_entry([long])
        assert raw[:2] == b"\x92\x03"
        assert decode_entry(raw) == [long]
        assert codec.command_version(long) == 3
        # In an entry that declares version 2 (what an older node reads), malformed.
        with pytest.raises(codec.CodecError):
            decode_entry(msgpack.packb([2, [encode_command(long)]]))
    # Tag 15 without progress nor checkpoint is not a command (tag 3 is).
    with pytest.raises(codec.CodecError):
        decode_entry(msgpack.packb([3, [[15, None, 1, 2, 3, None, None, None]]]))


def test_the_answers_round_trip() -> None:
    results: list[Result] = [
        Extended(5),
        Extended(6, cancel_requested=True),
        Claimed((Lease(1, "q", b"p", 0, 2, 9, 100, None, b"ck"),)),
        Claimed((Lease(1, "q", b"p", 0, 2, 9, 100, ((3, "succeeded", b"r"),), b"ck"),)),
    ]
    assert decode_results(encode_results(results)) == results
    assert codec.encode_result(Extended(5)) == [3, 5]  # the bytes of a plain answer stay


# -- a model of the long-job fields, against the machine ---------------------------------------


@dataclass
class _MJob:
    state: str = "queued"
    token: int = 0
    progress: bytes | None = None
    checkpoint: bytes | None = None
    cancel_requested: bool = False
    cancelled_ms: int = 0
    lease_end: int = 0


class LongJobsModel(RuleBasedStateMachine):
    """Three jobs that one worker claims, heartbeats (with progress and checkpoints), acks,
    nacks, lets expire, and that get cancelled; after every step the machine's job fields equal
    the model's and survive a snapshot. Leases are 1 s, retries immediate, attempts unbounded
    enough (50) that nothing dies."""

    def __init__(self) -> None:
        super().__init__()
        self.h = H()
        self.jobs: dict[int, _MJob] = {}
        for _ in range(3):
            self.jobs[self.h.enqueue(max_attempts=50)] = _MJob()

    def _settle(self) -> None:
        for j in self.jobs.values():
            if j.state == "leased" and j.lease_end <= self.h.now:
                j.state = "queued"

    @rule(ms=st.sampled_from([1, 300, 1000]))
    def advance(self, ms: int) -> None:
        self.h.now += ms
        self.h.one(Tick(now_ms=self.h.now))
        self._settle()

    @rule()
    def claim(self) -> None:
        r = self.h.one(Claim(now_ms=self.h.now, queues=("q",), worker="w", lease_ms=1000))
        assert isinstance(r, Claimed)
        ready = sorted(i for i, j in self.jobs.items() if j.state == "queued")
        assert len(r.jobs) == min(1, len(ready)) and {x.id for x in r.jobs} <= set(ready)
        for x in r.jobs:
            j = self.jobs[x.id]
            assert x.checkpoint == j.checkpoint  # the last attempt's checkpoint, handed on
            j.state, j.token, j.progress, j.lease_end = "leased", x.token, None, self.h.now + 1000

    @rule(
        data=st.data(),
        progress=st.none() | st.binary(max_size=2),
        checkpoint=st.none() | st.binary(max_size=2),
    )
    def heartbeat(
        self, data: st.DataObject, progress: bytes | None, checkpoint: bytes | None
    ) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        j = self.jobs[job_id]
        got = self.h.beat(Lease(job_id, "q", b"p", 0, 1, j.token, 0), progress, checkpoint)
        if j.cancel_requested:
            assert got == Extended(j.cancelled_ms, cancel_requested=True)
        elif j.state == "leased":
            assert got == Extended(self.h.now + 1000)
            j.lease_end = self.h.now + 1000
            j.progress = j.progress if progress is None else progress
            j.checkpoint = j.checkpoint if checkpoint is None else checkpoint
        else:
            assert isinstance(got, Refusal)

    @rule(data=st.data(), ack=st.booleans())
    def finish(self, data: st.DataObject, ack: bool) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        j = self.jobs[job_id]
        cmd: Command
        if ack:
            cmd = Ack(now_ms=self.h.now, job_id=job_id, token=j.token)
        else:
            cmd = Nack(now_ms=self.h.now, job_id=job_id, token=j.token, retry_in_ms=0)
        got = self.h.one(cmd)
        if j.state != "leased":
            assert isinstance(got, Refusal)
        elif ack:
            j.state, j.checkpoint = "succeeded", None
        else:
            j.state = "queued"

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        j = self.jobs[job_id]
        got = self.h.cancel(job_id)
        if j.state in ("succeeded", "cancelled"):
            assert isinstance(got, Refusal)
            return
        assert got == Cancelled(job_id)
        j.cancel_requested = j.state == "leased"
        j.state, j.checkpoint, j.cancelled_ms = "cancelled", None, self.h.now

    @invariant()
    def fields_match(self) -> None:
        copy = Machine.restore(snapshot_bytes(self.h.m))
        for job_id, j in self.jobs.items():
            info = self.h.m.job_info(job_id)
            assert info is not None and info == copy.job_info(job_id)
            assert info.state.value == j.state
            assert (info.progress, info.checkpoint) == (j.progress, j.checkpoint)
            assert info.cancel_requested == j.cancel_requested


TestLongJobsModel = LongJobsModel.TestCase
TestLongJobsModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
