"""Dependencies and batches (``deps.py``, ``batches.py``): example tests of each rule, the
snapshot round trip, and a model test (``test_flow_model.py``)."""

from __future__ import annotations

from raftq.core import (
    Ack,
    BatchCallback,
    BatchCreated,
    Cancel,
    Claim,
    Claimed,
    Command,
    Configure,
    CreateBatch,
    EnableVersion,
    Enqueued,
    EnqueueFlow,
    FlowJob,
    JobState,
    Lease,
    Machine,
    Nack,
    NewJob,
    Purge,
    Reason,
    Refusal,
    RequeueDead,
    Result,
    Tick,
    encode_entry,
)
from raftq.core.snapshot import snapshot_bytes

T = 1_700_000_000_000


class H:
    def __init__(self) -> None:
        self.m = Machine()
        self.now = T
        self.one(EnableVersion(now_ms=T, version=3))

    def one(self, cmd: Command) -> Result:
        (result,) = self.m.apply_entry(encode_entry([cmd]))
        self.m.check_invariants()
        return result

    def flow(self, *jobs: FlowJob) -> Result:
        return self.one(EnqueueFlow(now_ms=self.now, jobs=jobs))

    def ids(self, *jobs: FlowJob) -> tuple[int, ...]:
        r = self.flow(*jobs)
        assert isinstance(r, Enqueued), r
        return r.ids

    def claim(self, queue: str = "q", n: int = 10) -> tuple[Lease, ...]:
        r = self.one(Claim(now_ms=self.now, queues=(queue,), worker="w", max=n, lease_ms=1000))
        assert isinstance(r, Claimed)
        return r.jobs

    def ack(self, lease: Lease, result: bytes | None = None) -> Result:
        return self.one(Ack(now_ms=self.now, job_id=lease.id, token=lease.token, result=result))

    def kill(self, lease: Lease) -> Result:
        return self.one(Nack(now_ms=self.now, job_id=lease.id, token=lease.token))

    def state(self, job_id: int) -> JobState | None:
        info = self.m.job_info(job_id)
        return None if info is None else info.state


def fj(  # noqa: PLR0917 - a test shorthand
    payload: bytes = b"p",
    queue: str = "q",
    deps: tuple[int, ...] = (),
    new: tuple[int, ...] = (),
    run: bool = False,
    attempts: int = 1,
) -> FlowJob:
    return FlowJob(
        queue=queue,
        job=NewJob(payload=payload, max_attempts=attempts),
        depends_on=deps,
        depends_on_new=new,
        run_on_failure=run,
    )


def test_flow_commands_need_version_3() -> None:
    m = Machine()
    cmd = EnqueueFlow(now_ms=T, jobs=(fj(),))
    (r,) = m.apply_entry(encode_entry([cmd]))
    assert isinstance(r, Refusal) and r.reason is Reason.VERSION_NOT_ENABLED


def test_a_dependant_waits_and_is_released_by_the_last_success_with_the_parents_results() -> None:
    h = H()
    a, b, c = h.ids(fj(b"a"), fj(b"b"), fj(b"c", new=(0, 1)))
    assert h.state(c) is JobState.WAITING
    first, second = h.claim(n=10)
    assert {first.id, second.id} == {a, b} and first.parents is None
    h.ack(first, b"ra")
    assert h.state(c) is JobState.WAITING and h.claim() == ()
    h.ack(second, b"rb")  # the same entry releases c
    assert h.state(c) is JobState.QUEUED
    (lease,) = h.claim()
    assert lease.id == c
    assert lease.parents == ((a, "succeeded", b"ra"), (b, "succeeded", b"rb"))
    flow = h.m.job_flow(c)
    assert flow is not None and flow.depends_on == (a, b)


def test_a_failed_dependency_cancels_the_dependants_in_cascade() -> None:
    h = H()
    a, b, c = h.ids(fj(), fj(new=(0,)), fj(new=(1,), queue="other"))
    (lease,) = h.claim()
    h.kill(lease)  # one attempt: dead
    assert [h.state(i) for i in (a, b, c)] == [JobState.DEAD, JobState.CANCELLED] * 1 + [
        JobState.CANCELLED
    ]
    info = h.m.job_info(c)
    assert info is not None and info.error == "dependency_failed"


def test_run_on_failure_releases_the_dependant_with_the_outcomes() -> None:
    h = H()
    a, b = h.ids(fj(), fj(new=(0,), run=True))
    (lease,) = h.claim()
    h.one(Cancel(now_ms=h.now, job_id=a))
    assert lease.id == a and h.state(b) is JobState.QUEUED
    (released,) = h.claim()
    assert released.parents == ((a, "cancelled", None),)


def test_cancel_of_a_waiting_job_cascades_and_the_parent_still_finishes() -> None:
    h = H()
    a, b, c = h.ids(fj(), fj(new=(0,)), fj(new=(1,)))
    h.one(Cancel(now_ms=h.now, job_id=b))
    assert (h.state(b), h.state(c)) == (JobState.CANCELLED, JobState.CANCELLED)
    (lease,) = h.claim()
    assert lease.id == a and h.ack(lease) is not None and h.claim() == ()


def test_cycles_unknown_ids_and_bad_references_are_refused_and_nothing_is_created() -> None:
    h = H()
    cycle = h.flow(fj(new=(2,)), fj(new=(0,)), fj(new=(1,)))
    assert isinstance(cycle, Refusal) and cycle.reason is Reason.INVALID
    assert "cycle" in cycle.message
    unknown = h.flow(fj(deps=(999,)))
    assert isinstance(unknown, Refusal) and unknown.reason is Reason.NOT_FOUND
    itself = h.flow(fj(new=(0,)))
    assert isinstance(itself, Refusal) and itself.reason is Reason.INVALID
    out_of_range = h.flow(fj(new=(5,)))
    assert isinstance(out_of_range, Refusal) and out_of_range.reason is Reason.INVALID
    assert (h.m.jobs, h.m.queues, h.m.next_id, h.m.flow.links) == ({}, {}, 1, {})


def test_a_dependency_already_finished_is_taken_into_account_at_enqueue() -> None:
    h = H()
    (a,) = h.ids(fj())
    (lease,) = h.claim()
    h.ack(lease, b"done")
    (b,) = h.ids(fj(deps=(a,)))
    assert h.state(b) is JobState.QUEUED
    (x,) = h.ids(fj())
    (lx,) = h.claim(n=1)
    assert lx.id == b
    (lx2,) = h.claim(n=1)
    assert lx2.id == x
    h.kill(lx2)
    (c, d) = h.ids(fj(deps=(x,)), fj(deps=(x,), run=True))
    assert (h.state(c), h.state(d)) == (JobState.CANCELLED, JobState.QUEUED)


def test_the_parents_result_outlives_the_parents_retention() -> None:
    h = H()
    a, b, c = h.ids(fj(), fj(), fj(new=(0, 1)))
    (la,) = h.claim(n=1)
    h.ack(la, b"kept")
    h.now += 2 * 3_600_000  # past the default retention: a is collected
    h.one(Tick(now_ms=h.now))
    assert h.state(a) is None and h.state(c) is JobState.WAITING
    (lb,) = h.claim(n=1)
    assert lb.id == b
    h.ack(lb, b"b")
    (lc,) = h.claim()
    assert lc.parents == ((a, "succeeded", b"kept"), (b, "succeeded", b"b"))


def test_a_lease_expiring_past_max_attempts_fails_its_dependants() -> None:
    h = H()
    _, b = h.ids(fj(), fj(new=(0,)))
    h.claim()
    h.now += 5000
    h.one(Tick(now_ms=h.now))
    assert h.state(b) is JobState.CANCELLED


def test_purging_an_unfinished_parent_fails_its_dependants() -> None:
    h = H()
    _, b = h.ids(fj(queue="a"), fj(new=(0,)))
    h.one(Purge(now_ms=h.now, queue="a"))
    assert h.state(b) is JobState.CANCELLED


def batch(h: H, *jobs: FlowJob) -> BatchCreated:
    r = h.one(
        CreateBatch(
            now_ms=h.now,
            jobs=jobs,
            on_complete=BatchCallback(queue="cb", payload=b"complete"),
            on_success=BatchCallback(queue="cb", payload=b"success"),
            on_death=BatchCallback(queue="cb", payload=b"death"),
        )
    )
    assert isinstance(r, BatchCreated), r
    return r


def test_batch_callbacks_fire_once_when_due_and_carry_the_outcomes() -> None:
    h = H()
    created = batch(h, fj(b"1"), fj(b"2"))
    info = h.m.batch_info(created.batch)
    assert info is not None and info.counts["queued"] == 2 and info.fired == ()
    l1, l2 = h.claim()
    h.ack(l1, b"r1")
    assert h.claim("cb") == ()
    h.ack(l2, b"r2")  # the same entry fires on_complete and on_success
    fired = h.claim("cb")
    assert sorted(x.payload for x in fired) == [b"complete", b"success"]
    for x in fired:
        assert x.parents == ((l1.id, "succeeded", b"r1"), (l2.id, "succeeded", b"r2"))
    info = h.m.batch_info(created.batch)
    assert info is not None and info.counts["succeeded"] == 2
    assert info.fired == ("on_complete", "on_success")


def test_on_death_at_the_first_death_and_on_success_after_a_requeue() -> None:
    h = H()
    batch(h, fj(b"1"), fj(b"2"))
    l1, l2 = h.claim()
    h.kill(l1)
    (death,) = h.claim("cb")
    assert death.payload == b"death"
    h.ack(l2)
    (complete,) = h.claim("cb")
    assert complete.payload == b"complete"
    h.one(RequeueDead(now_ms=h.now, queue="q"))
    (again,) = h.claim()
    h.ack(again, b"late")
    (success,) = h.claim("cb")
    assert success.payload == b"success" and h.claim("cb") == ()


def test_a_batch_job_cannot_carry_a_key() -> None:
    h = H()
    job = FlowJob(queue="q", job=NewJob(payload=b"p", key="k"))
    r = h.one(CreateBatch(now_ms=h.now, jobs=(job,)))
    assert isinstance(r, Refusal) and r.reason is Reason.INVALID


def test_snapshot_round_trip_with_waiting_jobs_and_batches() -> None:
    h = H()
    h.ids(fj(), fj(new=(0,)), fj(new=(0, 1), run=True))
    batch(h, fj(), fj(new=(0,)))
    l1 = h.claim()[0]
    h.ack(l1, b"r")
    raw = snapshot_bytes(h.m)
    restored = Machine.restore(raw)
    restored.check_invariants()
    assert snapshot_bytes(restored) == raw
    # Both go on alike.
    rest: list[Machine] = [h.m, restored]
    answers = []
    for m in rest:
        (claimed,) = m.apply_entry(encode_entry([Claim(now_ms=h.now, queues=("q",), worker="w")]))
        assert isinstance(claimed, Claimed)
        acks = [Ack(now_ms=h.now, job_id=x.id, token=x.token) for x in claimed.jobs]
        answers.append((claimed, m.apply_entry(encode_entry(acks)), snapshot_bytes(m)))
    assert answers[0] == answers[1]


def test_an_at_reference_to_a_key_of_a_collected_job_is_refused() -> None:
    h = H()
    h.one(Configure(now_ms=h.now, queue="q", retention_ms=0, dedup_window_ms=600_000))
    keyed = FlowJob(queue="q", job=NewJob(payload=b"p", key="k"))
    (a,) = h.ids(keyed)
    (lease,) = h.claim()
    h.ack(lease)  # collected at once (retention 0), its key still live for 10 minutes
    assert h.state(a) is None
    r = h.flow(keyed, fj(new=(0,)))
    assert isinstance(r, Refusal) and r.reason is Reason.NOT_FOUND
