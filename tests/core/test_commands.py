"""Example tests: every command, every refusal reason, the rules of DESIGN.md §2.

Commands go through the replicated entry point (``encode_entry`` -> ``apply_entry``), as in
production. Tests that pin a fixed bug say so in their docstring.
"""

from __future__ import annotations

from typing import Any

import pytest

from raftq.core import (
    Ack,
    Acked,
    Cancel,
    Cancelled,
    Claim,
    Claimed,
    Command,
    Configure,
    Configured,
    Enqueue,
    Enqueued,
    Extended,
    Heartbeat,
    JobState,
    Lease,
    Machine,
    Nack,
    Nacked,
    NewJob,
    Pause,
    Paused,
    Purge,
    Purged,
    Reason,
    Refusal,
    Requeued,
    RequeueDead,
    Result,
    Resume,
    Resumed,
    Tick,
    Ticked,
    admin_ops,
    encode_entry,
    machine,
    ops,
    snapshot_bytes,
)
from raftq.core.backoff import BACKOFF_BASE_MS, BACKOFF_CAP_MS, backoff_ms
from raftq.core.codec import decode_results
from raftq.core.limits import (
    DEFAULT_DEDUP_WINDOW_MS,
    DEFAULT_LEASE_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETENTION_MS,
    MAX_BATCH_JOBS,
    MAX_CLAIM,
    MAX_DEDUP_WINDOW_MS,
    MAX_DELAY_MS,
    MAX_ERROR_CHARS,
    MAX_FINISHED_PER_QUEUE,
    MAX_KEY_CHARS,
    MAX_LEASE_MS,
    MAX_MAX_ATTEMPTS,
    MAX_PAYLOAD_BYTES,
    MAX_REQUEST_ID_CHARS,
    MAX_RETENTION_MS,
    MAX_TIME_MS,
    MAX_WORKER_CHARS,
    REQUEST_WINDOW_MS,
)

T0 = 1_700_000_000_000
SECOND = 1000


class Harness:
    """A machine, a proposer clock, and short ways to say the usual things."""

    def __init__(self) -> None:
        self.m = Machine()
        self.now = T0

    def advance(self, ms: int) -> None:
        self.now += ms

    def apply(self, *cmds: Command) -> list[Result]:
        results = self.m.apply_entry(encode_entry(list(cmds)))
        self.m.check_invariants()
        return results

    def one(self, cmd: Command) -> Result:
        (result,) = self.apply(cmd)
        return result

    def enqueue(self, queue: str = "q", **job: Any) -> int:
        job.setdefault("payload", b"p")
        r = self.one(Enqueue(now_ms=self.now, queue=queue, jobs=(NewJob(**job),)))
        assert isinstance(r, Enqueued), r
        return r.ids[0]

    def enqueue_many(self, queue: str, jobs: list[NewJob]) -> tuple[int, ...]:
        r = self.one(Enqueue(now_ms=self.now, queue=queue, jobs=tuple(jobs)))
        assert isinstance(r, Enqueued), r
        return r.ids

    def claim(self, *queues: str, max: int = 1, lease_ms: int | None = None) -> list[Lease]:
        r = self.one(
            Claim(
                now_ms=self.now,
                queues=queues or ("q",),
                worker="w",
                max=max,
                lease_ms=lease_ms,
            )
        )
        assert isinstance(r, Claimed), r
        return list(r.jobs)

    def claim_one(self, *queues: str, lease_ms: int | None = None) -> Lease:
        (lease,) = self.claim(*queues, lease_ms=lease_ms)
        return lease

    def ack(self, lease: Lease, result: bytes | None = None) -> Result:
        return self.one(Ack(now_ms=self.now, job_id=lease.id, token=lease.token, result=result))

    def nack(
        self, lease: Lease, error: str | None = None, retry_in_ms: int | None = None
    ) -> Result:
        return self.one(
            Nack(
                now_ms=self.now,
                job_id=lease.id,
                token=lease.token,
                error=error,
                retry_in_ms=retry_in_ms,
            )
        )

    def heartbeat(
        self,
        lease: Lease,
        lease_ms: int | None = None,
        progress: bytes | None = None,
        checkpoint: bytes | None = None,
    ) -> Result:
        return self.one(
            Heartbeat(
                now_ms=self.now,
                job_id=lease.id,
                token=lease.token,
                lease_ms=lease_ms,
                progress=progress,
                checkpoint=checkpoint,
            )
        )

    def cancel(self, job_id: int) -> Result:
        return self.one(Cancel(now_ms=self.now, job_id=job_id))

    def tick(self) -> Result:
        return self.one(Tick(now_ms=self.now))

    def configure(self, queue: str = "q", **kw: Any) -> Result:
        return self.one(Configure(now_ms=self.now, queue=queue, **kw))

    def state(self, job_id: int) -> JobState | None:
        info = self.m.job_info(job_id)
        return None if info is None else info.state

    def depth(self, queue: str = "q") -> dict[str, int]:
        stats = self.m.queue_stats(queue)
        assert stats is not None
        return stats.depth


@pytest.fixture
def h() -> Harness:
    return Harness()


def rejected(result: Result, reason: Reason) -> bool:
    return isinstance(result, Refusal) and result.reason is reason


# -- enqueue --------------------------------------------------------------------------------------


def test_enqueue_one(h: Harness) -> None:
    job_id = h.enqueue(payload=b"hello", priority=3)
    info = h.m.job_info(job_id)
    assert info is not None
    assert info.state is JobState.QUEUED
    assert (info.queue, info.payload, info.priority) == ("q", b"hello", 3)
    assert (info.attempts, info.max_attempts) == (0, DEFAULT_MAX_ATTEMPTS)
    assert info.lease_ms == DEFAULT_LEASE_MS
    assert info.created_ms == info.run_at_ms == T0
    assert info.key is None and info.result is None and info.error is None
    assert h.m.queue_names() == ["q"]


def test_job_queue_reads_a_jobs_queue_as_job_info_does(h: Harness) -> None:
    a = h.enqueue("qa")
    b = h.enqueue("qb")
    h.ack(h.claim_one("qb"))
    for job_id in (a, b):
        info = h.m.job_info(job_id)
        assert info is not None and h.m.job_queue(job_id) == info.queue
    assert (h.m.job_queue(a), h.m.job_queue(b)) == ("qa", "qb")  # finished jobs too
    assert h.m.job_queue(b + 1) is None  # unknown
    h.configure("qb", retention_ms=0)
    h.tick()
    assert h.m.job_info(b) is None and h.m.job_queue(b) is None  # collected


def test_enqueue_many_gives_increasing_ids_across_queues(h: Harness) -> None:
    a = h.enqueue_many("a", [NewJob(payload=bytes([i])) for i in range(5)])
    b = h.enqueue_many("b", [NewJob(payload=b"x"), NewJob(payload=b"y")])
    assert list(a + b) == list(range(a[0], a[0] + 7))
    assert [h.m.job_info(i).payload for i in a] == [bytes([i]) for i in range(5)]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        {"priority": -1},
        {"priority": 10},
        {"delay_ms": 5, "run_at_ms": T0 + 5},
        {"delay_ms": -1},
        {"delay_ms": MAX_DELAY_MS + 1},
        {"run_at_ms": -1},
        {"run_at_ms": MAX_TIME_MS + 1},
        {"key": ""},
        {"key": "k" * (MAX_KEY_CHARS + 1)},
        {"max_attempts": 0},
        {"max_attempts": MAX_MAX_ATTEMPTS + 1},
        {"lease_ms": 0},
        {"lease_ms": MAX_LEASE_MS + 1},
        {"payload": b"x" * (MAX_PAYLOAD_BYTES + 1)},
    ],
)
def test_enqueue_batch_is_all_or_nothing(h: Harness, bad: dict[str, Any]) -> None:
    h.enqueue(queue="other")
    before = (h.m.next_id, len(h.m.jobs), h.m.queue_names())
    jobs = (NewJob(payload=b"ok"), NewJob(**{"payload": b"bad", **bad}), NewJob(payload=b"ok"))
    r = h.one(Enqueue(now_ms=h.now, queue="q", jobs=jobs))
    assert rejected(r, Reason.INVALID), r
    assert "jobs[1]" in r.message  # type: ignore[union-attr]
    assert (h.m.next_id, len(h.m.jobs), h.m.queue_names()) == before


def test_enqueue_limits_at_the_edges_are_accepted(h: Harness) -> None:
    h.enqueue(
        priority=9,
        delay_ms=MAX_DELAY_MS,
        key="k" * MAX_KEY_CHARS,
        max_attempts=MAX_MAX_ATTEMPTS,
        lease_ms=MAX_LEASE_MS,
    )
    h.enqueue(priority=0, run_at_ms=MAX_TIME_MS, max_attempts=1, lease_ms=1)


@pytest.mark.parametrize("name", ["", "a b", "x" * 129, "é", "a/b", "q\n"])
def test_enqueue_to_an_invalid_queue_name(h: Harness, name: str) -> None:
    r = h.one(Enqueue(now_ms=h.now, queue=name, jobs=(NewJob(payload=b""),)))
    assert rejected(r, Reason.INVALID)
    assert h.m.queue_names() == []


def test_enqueue_batch_size_limits(h: Harness) -> None:
    assert rejected(h.one(Enqueue(now_ms=h.now, queue="q", jobs=())), Reason.INVALID)
    too_many = tuple(NewJob(payload=b"") for _ in range(MAX_BATCH_JOBS + 1))
    assert rejected(h.one(Enqueue(now_ms=h.now, queue="q", jobs=too_many)), Reason.INVALID)
    assert len(h.enqueue_many("q", list(too_many[:MAX_BATCH_JOBS]))) == MAX_BATCH_JOBS


def test_too_many_queues(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "MAX_QUEUES", 2)
    h.enqueue("a")
    h.enqueue("b")
    job = (NewJob(payload=b""),)
    assert rejected(h.one(Enqueue(now_ms=h.now, queue="c", jobs=job)), Reason.TOO_MANY_QUEUES)
    assert rejected(h.one(Pause(now_ms=h.now, queue="c")), Reason.TOO_MANY_QUEUES)
    assert rejected(h.configure("c", retention_ms=0), Reason.TOO_MANY_QUEUES)
    h.enqueue("a")  # existing queues go on
    assert h.m.queue_names() == ["a", "b"]


# -- priority and order ---------------------------------------------------------------------------


def test_strict_priority_and_fifo_inside_a_priority(h: Harness) -> None:
    priorities = [3, 9, 0, 3, 7, 9, 0, 5, 3, 1, 2, 4, 6, 8, 8]
    ids = h.enqueue_many("q", [NewJob(payload=b"", priority=p) for p in priorities])
    expected = [
        i for _, i in sorted(zip(priorities, ids, strict=True), key=lambda t: (-t[0], t[1]))
    ]
    one_by_one = [h.claim_one().id for _ in ids]
    assert one_by_one == expected
    assert h.claim() == []


def test_claim_many_returns_best_first(h: Harness) -> None:
    ids = h.enqueue_many("q", [NewJob(payload=b"", priority=p) for p in [1, 5, 5, 9, 0]])
    assert [x.id for x in h.claim(max=4)] == [ids[3], ids[1], ids[2], ids[0]]


def test_later_higher_priority_job_goes_first(h: Harness) -> None:
    low = h.enqueue(priority=2)
    h.advance(SECOND)
    high = h.enqueue(priority=8)
    assert [h.claim_one().id, h.claim_one().id] == [high, low]


def test_fifo_is_by_ready_time(h: Harness) -> None:
    """A delayed job that became ready before a later enqueue is claimed first."""
    delayed = h.enqueue(delay_ms=SECOND)
    h.advance(5 * SECOND)
    plain = h.enqueue()
    assert [h.claim_one().id, h.claim_one().id] == [delayed, plain]


def test_due_delayed_high_priority_beats_waiting_low_priority(h: Harness) -> None:
    low = h.enqueue(priority=0)
    high = h.enqueue(priority=9, delay_ms=10 * SECOND)
    h.advance(10 * SECOND)
    assert [h.claim_one().id, h.claim_one().id] == [high, low]


# -- delays ---------------------------------------------------------------------------------------


def test_delay_ms(h: Harness) -> None:
    job_id = h.enqueue(delay_ms=5 * SECOND)
    info = h.m.job_info(job_id)
    assert info is not None
    assert info.state is JobState.DELAYED and info.run_at_ms == T0 + 5 * SECOND
    h.advance(5 * SECOND - 1)
    assert h.claim() == []
    h.advance(1)
    assert h.claim_one().id == job_id


def test_run_at_ms(h: Harness) -> None:
    job_id = h.enqueue(run_at_ms=T0 + 7 * SECOND)
    h.advance(7 * SECOND - 1)
    assert h.claim() == []
    h.advance(1)
    assert h.claim_one().id == job_id


def test_run_at_in_the_past_or_delay_zero_is_ready_now(h: Harness) -> None:
    past = h.enqueue(run_at_ms=T0 - 60 * SECOND)
    zero = h.enqueue(delay_ms=0)
    assert h.m.job_info(past).run_at_ms == T0  # type: ignore[union-attr]
    assert h.state(past) is h.state(zero) is JobState.QUEUED
    assert [x.id for x in h.claim(max=2)] == [past, zero]


def test_tick_releases_due_delayed_jobs(h: Harness) -> None:
    h.enqueue(delay_ms=SECOND)
    assert h.depth()["delayed"] == 1
    h.advance(SECOND)
    assert h.tick() == Ticked(T0 + SECOND)
    assert (h.depth()["delayed"], h.depth()["queued"]) == (0, 1)


# -- idempotency keys -----------------------------------------------------------------------------


def test_key_dedups_while_unfinished(h: Harness) -> None:
    first = h.enqueue(key="k")
    r = h.one(Enqueue(now_ms=h.now, queue="q", jobs=(NewJob(payload=b"other", key="k"),)))
    assert r == Enqueued((first,), (True,))
    assert h.m.job_info(first).payload == b"p"  # type: ignore[union-attr]
    lease = h.claim_one()
    assert h.one(Enqueue(now_ms=h.now, queue="q", jobs=(NewJob(payload=b"", key="k"),))) == r
    assert lease.id == first
    assert h.enqueue("other-queue", key="k") != first  # keys are per queue


def test_key_repeated_inside_one_batch(h: Harness) -> None:
    r = h.one(
        Enqueue(
            now_ms=h.now,
            queue="q",
            jobs=(
                NewJob(payload=b"a", key="k"),
                NewJob(payload=b"b", key="k"),
                NewJob(payload=b"c"),
            ),
        )
    )
    assert isinstance(r, Enqueued)
    assert r.ids[0] == r.ids[1] != r.ids[2] and r.existing == (False, True, False)


def test_key_dedups_within_the_window_after_finish(h: Harness) -> None:
    first = h.enqueue(key="k")
    assert h.ack(h.claim_one()) == Acked(first)
    finished = h.now
    h.advance(DEFAULT_DEDUP_WINDOW_MS - 1)
    assert h.enqueue(key="k") == first
    h.now = finished + DEFAULT_DEDUP_WINDOW_MS
    second = h.enqueue(key="k")
    assert second != first
    assert h.enqueue(key="k") == second


def test_key_of_a_cancelled_job_dedups_within_the_window(h: Harness) -> None:
    first = h.enqueue(key="k")
    assert h.cancel(first) == Cancelled(first)
    assert h.enqueue(key="k") == first
    h.advance(DEFAULT_DEDUP_WINDOW_MS)
    assert h.enqueue(key="k") != first


def test_configure_widens_and_narrows_the_window(h: Harness) -> None:
    first = h.enqueue(key="k")
    h.ack(h.claim_one())
    assert h.configure(dedup_window_ms=MAX_DEDUP_WINDOW_MS) == Configured(
        "q", MAX_DEDUP_WINDOW_MS, DEFAULT_RETENTION_MS
    )
    h.advance(DEFAULT_DEDUP_WINDOW_MS + 1)
    assert h.enqueue(key="k") == first  # the wider window applies to a finished job too
    h.configure(dedup_window_ms=SECOND)
    assert h.enqueue(key="k") != first


def test_narrowed_window_applies_to_collected_jobs(h: Harness) -> None:
    """Bug fixed: a collected job's key kept the window it finished with."""
    h.configure(retention_ms=0)
    first = h.enqueue(key="k")
    h.ack(h.claim_one())
    h.tick()
    assert h.m.job_info(first) is None  # collected
    h.advance(1)
    assert h.enqueue(key="k") == first  # still in its window: the id of a collected job
    h.configure(dedup_window_ms=SECOND)
    h.advance(SECOND)
    assert h.enqueue(key="k") != first


def test_widened_window_applies_to_collected_jobs(h: Harness) -> None:
    """Bug fixed: a collected job's key was forgotten at the end of its old window."""
    h.configure(retention_ms=0, dedup_window_ms=SECOND)
    first = h.enqueue(key="k")
    h.ack(h.claim_one())
    h.tick()
    h.configure(dedup_window_ms=60 * SECOND)
    h.advance(30 * SECOND)
    assert h.enqueue(key="k") == first


def test_a_wider_window_does_not_revive_an_expired_key(h: Harness) -> None:
    """Bug fixed (dead letters): their keys are judged from the job, and widening the window
    brought an expired one back, unlike the key of a succeeded or cancelled job."""
    h.configure(dedup_window_ms=SECOND)
    cancelled = h.enqueue(key="c")
    h.cancel(cancelled)
    dead = h.enqueue(key="d", max_attempts=1, priority=9)
    h.nack(h.claim_one())
    live = h.enqueue(key="l")
    h.advance(SECOND)  # c and d expired; l's job is unfinished
    h.configure(dedup_window_ms=DEFAULT_DEDUP_WINDOW_MS)
    assert h.enqueue(key="c") != cancelled
    assert h.enqueue(key="d") != dead
    assert h.enqueue(key="l") == live


def test_key_window_restarts_when_a_requeued_dead_letter_finishes(h: Harness) -> None:
    """Bug fixed: the expiry of the job's first (dead) finish deleted the key of its second
    finish early, so a duplicate was created inside the window."""
    h.configure(retention_ms=0, dedup_window_ms=40 * SECOND)
    job_id = h.enqueue(key="k", max_attempts=1)
    assert h.nack(h.claim_one()) == Nacked(job_id, "dead", None)
    h.advance(30 * SECOND)
    assert h.one(RequeueDead(now_ms=h.now, queue="q")) == Requeued(1)
    h.ack(h.claim_one())  # finished again, at T0 + 30 s; collected at once (retention 0)
    h.advance(11 * SECOND)  # 41 s after the death, 11 s after the success
    assert h.enqueue(key="k") == job_id
    h.advance(29 * SECOND)
    assert h.enqueue(key="k") != job_id


def test_key_of_a_dead_letter(h: Harness) -> None:
    job_id = h.enqueue(key="k", max_attempts=1)
    h.nack(h.claim_one())
    assert h.enqueue(key="k") == job_id
    h.advance(DEFAULT_DEDUP_WINDOW_MS)
    new = h.enqueue(key="k")
    assert new != job_id
    # The old dead letter, requeued, does not take the key from the live new job.
    assert h.one(RequeueDead(now_ms=h.now, queue="q", job_ids=(job_id,))) == Requeued(1)
    assert h.enqueue(key="k") == new


def test_requeued_dead_letter_takes_back_a_free_key(h: Harness) -> None:
    job_id = h.enqueue(key="k", max_attempts=1)
    h.nack(h.claim_one())
    h.advance(DEFAULT_DEDUP_WINDOW_MS)
    h.one(RequeueDead(now_ms=h.now, queue="q"))
    assert h.enqueue(key="k") == job_id


def test_purge_frees_keys(h: Harness) -> None:
    first = h.enqueue(key="k")
    h.one(Purge(now_ms=h.now, queue="q"))
    assert h.enqueue(key="k") != first


# -- claim ----------------------------------------------------------------------------------------


def test_claim_best_across_queues(h: Harness) -> None:
    a_low = h.enqueue("a", priority=1)
    b_high = h.enqueue("b", priority=6)
    c_mid = h.enqueue("c", priority=6)
    a_top = h.enqueue("a", priority=9)
    got = [x.id for x in h.claim("a", "b", "c", max=10)]
    assert got == [a_top, b_high, c_mid, a_low]
    assert [x.queue for x in h.claim("a", "b", "c")] == []


def test_paused_and_unknown_queues_give_nothing(h: Harness) -> None:
    h.enqueue("a")
    ready_b = h.enqueue("b")
    assert h.one(Pause(now_ms=h.now, queue="a")) == Paused("a")
    assert h.claim("a", "nope") == []
    assert h.m.queue_names() == ["a", "b"]  # claim does not create queues
    assert [x.id for x in h.claim("a", "b", "b", max=5)] == [ready_b]


def test_claim_lease_fields(h: Harness) -> None:
    job_id = h.enqueue(payload=b"body", priority=4, lease_ms=10 * SECOND)
    lease = h.claim_one()
    assert lease == Lease(job_id, "q", b"body", 4, 1, lease.token, T0 + 10 * SECOND)
    info = h.m.job_info(job_id)
    assert info is not None
    assert (info.state, info.worker, info.lease_expires_ms) == (
        JobState.LEASED,
        "w",
        T0 + 10 * SECOND,
    )
    assert h.depth()["leased"] == 1


def test_claim_lease_ms_overrides_the_jobs(h: Harness) -> None:
    h.enqueue(lease_ms=10 * SECOND)
    assert h.claim_one(lease_ms=2 * SECOND).lease_expires_ms == T0 + 2 * SECOND


def test_claim_max(h: Harness) -> None:
    h.enqueue_many("q", [NewJob(payload=b"") for _ in range(5)])
    assert len(h.claim(max=3)) == 3
    assert len(h.claim(max=3)) == 2
    assert h.claim(max=3) == []


@pytest.mark.parametrize(
    "kw",
    [
        {"queues": ()},
        {"queues": tuple(f"q{i}" for i in range(65))},
        {"queues": ("bad name",)},
        {"worker": ""},
        {"worker": "w" * (MAX_WORKER_CHARS + 1)},
        {"max": 0},
        {"max": MAX_CLAIM + 1},
        {"lease_ms": 0},
        {"lease_ms": MAX_LEASE_MS + 1},
    ],
)
def test_claim_invalid(h: Harness, kw: dict[str, Any]) -> None:
    h.enqueue()
    args: dict[str, Any] = {"now_ms": h.now, "queues": ("q",), "worker": "w", **kw}
    assert rejected(h.one(Claim(**args)), Reason.INVALID)
    assert h.depth()["queued"] == 1


def test_fencing_tokens_increase_cluster_wide_and_per_job(h: Harness) -> None:
    h.enqueue_many("a", [NewJob(payload=b"", lease_ms=SECOND) for _ in range(3)])
    h.enqueue_many("b", [NewJob(payload=b"", lease_ms=SECOND) for _ in range(3)])
    tokens: list[int] = []
    per_job: dict[int, list[int]] = {}
    for _ in range(4):
        for lease in h.claim("a", "b", max=2) + h.claim("b", max=2):
            tokens.append(lease.token)
            per_job.setdefault(lease.id, []).append(lease.token)
        h.advance(SECOND)  # every lease expires; the jobs come back
    assert tokens == sorted(set(tokens))
    assert all(seq == sorted(set(seq)) and len(seq) > 1 for seq in per_job.values())


# -- heartbeat, ack, nack: the lease holder -------------------------------------------------------


def test_heartbeat_extends(h: Harness) -> None:
    h.enqueue(lease_ms=10 * SECOND)
    lease = h.claim_one()
    h.advance(8 * SECOND)
    assert h.heartbeat(lease) == Extended(T0 + 18 * SECOND)
    h.advance(8 * SECOND)  # past the first end
    assert h.claim() == []
    assert h.heartbeat(lease, lease_ms=SECOND) == Extended(T0 + 17 * SECOND)
    assert h.ack(lease) == Acked(lease.id)


def test_heartbeat_keeps_the_length_the_lease_was_claimed_with(h: Harness) -> None:
    """Bug fixed: a heartbeat without lease_ms used the job's lease_ms, not the claim's."""
    h.enqueue(lease_ms=30 * SECOND)
    lease = h.claim_one(lease_ms=5 * 60 * SECOND)
    h.advance(60 * SECOND)
    assert h.heartbeat(lease) == Extended(h.now + 5 * 60 * SECOND)
    assert h.heartbeat(lease, lease_ms=SECOND) == Extended(h.now + SECOND)
    assert h.heartbeat(lease) == Extended(h.now + 5 * 60 * SECOND)  # still the claim's


def test_heartbeat_back_and_forth_keeps_one_live_lease(h: Harness) -> None:
    """Bug fixed: returning a lease to an earlier end made a stale heap entry valid again,
    and check_invariants failed (two entries for one lease)."""
    h.enqueue()
    lease = h.claim_one()
    h.heartbeat(lease, lease_ms=3 * SECOND)
    h.heartbeat(lease, lease_ms=DEFAULT_LEASE_MS)  # back to the end it was claimed with
    h.heartbeat(lease, lease_ms=3 * SECOND)
    h.advance(3 * SECOND)
    h.tick()
    assert h.state(lease.id) is JobState.QUEUED
    again = h.claim_one()
    assert again.attempt == 2
    h.advance(DEFAULT_LEASE_MS - 3 * SECOND)
    h.tick()  # the old copies of the first lease's key come due: they change nothing
    assert h.state(lease.id) is JobState.LEASED
    assert h.ack(again) == Acked(lease.id)


def test_ack(h: Harness) -> None:
    job_id = h.enqueue()
    lease = h.claim_one()
    assert h.ack(lease, result=b"42") == Acked(job_id)
    info = h.m.job_info(job_id)
    assert info is not None
    assert (info.state, info.result, info.finished_ms) == (JobState.SUCCEEDED, b"42", T0)
    assert info.worker is None and info.lease_expires_ms is None


def test_nack_with_backoff(h: Harness) -> None:
    job_id = h.enqueue()
    lease = h.claim_one()
    r = h.nack(lease, error="boom")
    delay = backoff_ms(job_id, 1)
    assert r == Nacked(job_id, "delayed", T0 + delay)
    info = h.m.job_info(job_id)
    assert info is not None and info.error == "boom" and info.attempts == 1
    h.advance(delay - 1)
    assert h.claim() == []
    h.advance(1)
    second = h.claim_one()
    assert (second.attempt, second.id) == (2, job_id)
    assert h.nack(second) == Nacked(job_id, "delayed", h.now + backoff_ms(job_id, 2))


def test_nack_retry_in_ms(h: Harness) -> None:
    job_id = h.enqueue()
    assert h.nack(h.claim_one(), retry_in_ms=0) == Nacked(job_id, "queued", T0)
    again = h.claim_one()
    assert again.id == job_id
    h.advance(1)
    assert h.nack(again, retry_in_ms=500) == Nacked(job_id, "delayed", h.now + 500)
    h.advance(499)
    assert h.claim() == []
    h.advance(1)
    assert h.claim_one().attempt == 3


def test_nack_error_is_truncated(h: Harness) -> None:
    job_id = h.enqueue()
    h.nack(h.claim_one(), error="e" * (MAX_ERROR_CHARS + 10))
    assert h.m.job_info(job_id).error == "e" * MAX_ERROR_CHARS  # type: ignore[union-attr]


def test_nack_past_max_attempts_dead_letters(h: Harness) -> None:
    job_id = h.enqueue(max_attempts=2)
    h.nack(h.claim_one(), retry_in_ms=0)
    assert h.nack(h.claim_one(), error="last") == Nacked(job_id, "dead", None)
    info = h.m.job_info(job_id)
    assert info is not None
    assert (info.state, info.error, info.attempts) == (JobState.DEAD, "last", 2)
    assert [d.id for d in h.m.dead_letters("q")] == [job_id]
    assert h.depth()["dead"] == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    for attempts in range(1, 40):
        nominal = min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempts - 1))
        values = [backoff_ms(job_id, attempts) for job_id in range(1, 200)]
        assert all(nominal * 3 // 4 <= v <= nominal for v in values), attempts
        assert len(set(values)) > 100  # spread by the job id
        assert values == [backoff_ms(job_id, attempts) for job_id in range(1, 200)]
    assert backoff_ms(7, 1) <= 1000 and backoff_ms(7, 13) >= 3 * BACKOFF_CAP_MS // 4
    assert 750 <= backoff_ms(7, 0) <= 1000  # attempts below 1 count as the first retry


@pytest.mark.parametrize(
    "make",
    [
        lambda h, lease: Heartbeat(now_ms=h.now, job_id=lease.id, token=lease.token, lease_ms=0),
        lambda h, lease: Heartbeat(
            now_ms=h.now, job_id=lease.id, token=lease.token, lease_ms=MAX_LEASE_MS + 1
        ),
        lambda h, lease: Ack(
            now_ms=h.now, job_id=lease.id, token=lease.token, result=b"x" * (MAX_PAYLOAD_BYTES + 1)
        ),
        lambda h, lease: Nack(now_ms=h.now, job_id=lease.id, token=lease.token, retry_in_ms=-1),
        lambda h, lease: Nack(
            now_ms=h.now, job_id=lease.id, token=lease.token, retry_in_ms=MAX_DELAY_MS + 1
        ),
    ],
)
def test_lease_commands_invalid_fields(h: Harness, make: Any) -> None:
    h.enqueue()
    lease = h.claim_one()
    assert rejected(h.one(make(h, lease)), Reason.INVALID)
    assert h.state(lease.id) is JobState.LEASED


LEASE_COMMANDS = [
    lambda h, job_id, token: Heartbeat(now_ms=h.now, job_id=job_id, token=token),
    lambda h, job_id, token: Ack(now_ms=h.now, job_id=job_id, token=token),
    lambda h, job_id, token: Nack(now_ms=h.now, job_id=job_id, token=token),
]
lease_commands = pytest.mark.parametrize("make", LEASE_COMMANDS, ids=["heartbeat", "ack", "nack"])


@lease_commands
def test_unknown_job_is_not_found(h: Harness, make: Any) -> None:
    assert rejected(h.one(make(h, 12345, 1)), Reason.NOT_FOUND)
    assert rejected(h.cancel(12345), Reason.NOT_FOUND)


@lease_commands
def test_wrong_token_is_stale(h: Harness, make: Any) -> None:
    h.enqueue()
    lease = h.claim_one()
    for token in (0, lease.token - 1, lease.token + 1, -5):
        assert rejected(h.one(make(h, lease.id, token)), Reason.STALE_TOKEN)
    assert h.state(lease.id) is JobState.LEASED


@lease_commands
def test_old_token_after_a_new_claim_is_stale(h: Harness, make: Any) -> None:
    h.enqueue(lease_ms=SECOND)
    old = h.claim_one()
    h.advance(SECOND)
    new = h.claim_one()
    assert new.id == old.id and new.token > old.token and new.attempt == 2
    assert rejected(h.one(make(h, old.id, old.token)), Reason.STALE_TOKEN)
    assert h.heartbeat(new) == Extended(h.now + SECOND)


@lease_commands
def test_expired_lease(h: Harness, make: Any) -> None:
    h.enqueue(lease_ms=10 * SECOND)
    lease = h.claim_one()
    h.advance(10 * SECOND - 1)
    assert h.heartbeat(lease, lease_ms=SECOND) == Extended(h.now + SECOND)
    h.advance(SECOND)  # exactly at the end: expired, whether or not a tick ran
    assert rejected(h.one(make(h, lease.id, lease.token)), Reason.LEASE_EXPIRED)
    h.tick()
    assert rejected(h.one(make(h, lease.id, lease.token)), Reason.LEASE_EXPIRED)
    assert h.state(lease.id) is JobState.QUEUED


@lease_commands
def test_expired_lease_of_a_dead_letter(h: Harness, make: Any) -> None:
    h.enqueue(lease_ms=SECOND, max_attempts=1)
    lease = h.claim_one()
    h.advance(2 * SECOND)
    h.tick()
    assert h.state(lease.id) is JobState.DEAD
    assert rejected(h.one(make(h, lease.id, lease.token)), Reason.LEASE_EXPIRED)


@lease_commands
def test_after_ack_is_finished(h: Harness, make: Any) -> None:
    h.enqueue()
    lease = h.claim_one()
    h.ack(lease)
    assert rejected(h.one(make(h, lease.id, lease.token)), Reason.FINISHED)


@lease_commands
def test_after_cancel_is_finished(h: Harness, make: Any) -> None:
    h.enqueue()
    lease = h.claim_one()
    h.cancel(lease.id)
    assert rejected(h.one(make(h, lease.id, lease.token)), Reason.FINISHED)


@lease_commands
def test_after_nack_the_token_is_stale(h: Harness, make: Any) -> None:
    h.enqueue()
    lease = h.claim_one()
    h.nack(lease, retry_in_ms=0)
    assert rejected(h.one(make(h, lease.id, lease.token)), Reason.STALE_TOKEN)


def test_no_job_is_completed_twice(h: Harness) -> None:
    h.enqueue(lease_ms=SECOND)
    slow = h.claim_one()
    h.advance(SECOND)
    fast = h.claim_one()
    assert h.ack(fast) == Acked(fast.id)
    assert rejected(h.ack(slow), Reason.STALE_TOKEN)
    assert rejected(h.ack(fast), Reason.FINISHED)


# -- lease expiry ---------------------------------------------------------------------------------


def test_lease_expiry_requeues_with_the_attempt_counted(h: Harness) -> None:
    job_id = h.enqueue(lease_ms=10 * SECOND)
    h.claim_one()
    h.advance(10 * SECOND - 1)
    h.tick()
    assert h.state(job_id) is JobState.LEASED
    h.advance(1)
    h.tick()
    info = h.m.job_info(job_id)
    assert info is not None
    assert (info.state, info.attempts, info.run_at_ms) == (JobState.QUEUED, 1, T0 + 10 * SECOND)
    assert h.claim_one().attempt == 2


def test_expired_job_keeps_its_place_by_when_the_lease_ended(h: Harness) -> None:
    expired = h.enqueue(lease_ms=SECOND)
    h.claim_one()
    h.advance(5 * SECOND)
    later = h.enqueue()  # ready at T0 + 5 s; the expired job has been ready since T0 + 1 s
    assert [h.claim_one().id, h.claim_one().id] == [expired, later]


def test_lease_expiry_dead_letters_when_attempts_are_exhausted(h: Harness) -> None:
    """Bug fixed: the job died at the tick's time, not at the lease's end."""
    job_id = h.enqueue(lease_ms=SECOND, max_attempts=2)
    h.claim_one()
    h.advance(SECOND)
    h.claim_one()
    h.advance(SECOND)  # the second lease ends at T0 + 2 s
    h.advance(60 * SECOND)  # no tick until much later
    h.tick()
    info = h.m.job_info(job_id)
    assert info is not None
    assert (info.state, info.attempts) == (JobState.DEAD, 2)
    assert info.finished_ms == T0 + 2 * SECOND
    assert info.error is not None and info.error.startswith("lease expired after attempt 2")


def test_outcome_of_an_expiry_does_not_depend_on_ticks(h: Harness) -> None:
    """Bug fixed: a cancel (or a requeue, or an enqueue with the job's key) acted on a queue
    not yet brought to cluster time: a job whose last lease had ended could be cancelled."""
    ticked = Harness()
    for x in (h, ticked):
        x.enqueue(lease_ms=SECOND, max_attempts=1, key="k")
        x.claim_one()
        x.advance(5 * SECOND)
    ticked.tick()
    for x in (h, ticked):
        assert rejected(x.cancel(1), Reason.FINISHED)
        assert x.state(1) is JobState.DEAD
    for x in (h, ticked):
        x.advance(DEFAULT_DEDUP_WINDOW_MS - 4 * SECOND)  # the window ran from the lease's end
        assert x.enqueue(key="k") != 1
    assert h.m.state_digest() != ticked.m.state_digest()  # one more entry applied
    assert h.m.jobs.keys() == ticked.m.jobs.keys()


def test_requeue_sees_leases_that_ran_out(h: Harness) -> None:
    h.enqueue(lease_ms=SECOND, max_attempts=1)
    h.claim_one()
    h.advance(SECOND)
    assert h.one(RequeueDead(now_ms=h.now, queue="q")) == Requeued(1)


# -- dead letters ---------------------------------------------------------------------------------


def _make_dead(h: Harness, queue: str, n: int) -> list[int]:
    """``n`` dead letters in ``queue`` (which must hold no other priority-9 ready job)."""
    ids = h.enqueue_many(queue, [NewJob(payload=b"", priority=9, max_attempts=1)] * n)
    leases = h.claim(queue, max=n)
    assert [x.id for x in leases] == list(ids)
    for lease in leases:
        assert h.nack(lease) == Nacked(lease.id, "dead", None)
    return list(ids)


def test_requeue_all_dead_letters(h: Harness) -> None:
    dead = _make_dead(h, "q", 3)
    other = _make_dead(h, "other", 1)
    h.advance(SECOND)
    assert h.one(RequeueDead(now_ms=h.now, queue="q")) == Requeued(3)
    for job_id in dead:
        info = h.m.job_info(job_id)
        assert info is not None
        assert (info.state, info.attempts, info.run_at_ms) == (JobState.QUEUED, 0, h.now)
    assert h.state(other[0]) is JobState.DEAD
    assert [x.id for x in h.claim(max=5)] == dead
    assert h.one(RequeueDead(now_ms=h.now, queue="q")) == Requeued(0)


def test_requeue_dead_letters_by_id(h: Harness) -> None:
    dead = _make_dead(h, "q", 4)
    other = _make_dead(h, "other", 1)
    alive = h.enqueue()
    ids = (dead[2], dead[0], dead[2], other[0], alive, 99_999)
    assert h.one(RequeueDead(now_ms=h.now, queue="q", job_ids=ids)) == Requeued(2)
    assert [h.state(i) for i in dead] == [
        JobState.QUEUED,
        JobState.DEAD,
        JobState.QUEUED,
        JobState.DEAD,
    ]
    assert h.state(other[0]) is JobState.DEAD


def test_requeue_edge_cases(h: Harness) -> None:
    assert h.one(RequeueDead(now_ms=h.now, queue="nope")) == Requeued(0)
    too_many = tuple(range(MAX_BATCH_JOBS + 1))
    assert rejected(h.one(RequeueDead(now_ms=h.now, queue="q", job_ids=too_many)), Reason.INVALID)
    assert h.m.queue_names() == []


def test_dead_letters_listing_pages_in_id_order(h: Harness) -> None:
    """Bug fixed: the listing followed the order of death while ``after_id`` paged by id, so
    a page could skip dead letters."""
    a, b, c = h.enqueue_many(
        "q",
        [
            NewJob(payload=b"", max_attempts=1, lease_ms=SECOND),
            NewJob(payload=b"", max_attempts=1, lease_ms=60 * SECOND),
            NewJob(payload=b"", max_attempts=1, lease_ms=60 * SECOND),
        ],
    )
    leases = {x.id: x for x in h.claim(max=3)}
    h.nack(leases[c])  # dies first
    h.advance(2 * SECOND)
    h.nack(leases[b])  # a's lease ended before, but nothing advanced the queue: dies later
    h.tick()
    assert [d.id for d in h.m.dead_letters("q")] == [a, b, c]
    pages: list[int] = []
    after = 0
    while page := h.m.dead_letters("q", limit=1, after_id=after):
        pages.append(page[0].id)
        after = page[0].id
    assert pages == [a, b, c]
    assert h.m.dead_letters("nope") == []


# -- purge, pause, resume, cancel -----------------------------------------------------------------


def test_purge(h: Harness) -> None:
    (dead,) = _make_dead(h, "q", 1)
    queued = h.enqueue()
    delayed = h.enqueue(delay_ms=60 * SECOND)
    leased = h.enqueue(priority=9)
    lease = h.claim_one()
    assert lease.id == leased
    done = h.enqueue(priority=9)
    h.ack(h.claim_one())
    assert h.one(Purge(now_ms=h.now, queue="q")) == Purged(3)
    assert [h.state(i) for i in (queued, delayed, dead)] == [None, None, None]
    assert h.state(leased) is JobState.LEASED and h.state(done) is JobState.SUCCEEDED
    assert h.ack(lease) == Acked(leased)  # a leased job runs on
    assert h.depth() == {
        "queued": 0,
        "delayed": 0,
        "leased": 0,
        "succeeded": 2,
        "dead": 0,
        "cancelled": 0,
        "waiting": 0,
    }
    assert h.one(Purge(now_ms=h.now, queue="nope")) == Purged(0)
    assert "nope" not in h.m.queue_names()


def test_pause_and_resume(h: Harness) -> None:
    assert h.one(Pause(now_ms=h.now, queue="q")) == Paused("q")  # creates the queue
    assert h.m.queue_stats("q").paused  # type: ignore[union-attr]
    job_id = h.enqueue()  # enqueues are still accepted
    assert h.claim() == []
    assert h.one(Resume(now_ms=h.now, queue="q")) == Resumed("q")
    lease = h.claim_one()
    assert lease.id == job_id
    h.one(Pause(now_ms=h.now, queue="q"))
    assert h.heartbeat(lease) == Extended(h.now + DEFAULT_LEASE_MS)  # lease holders go on
    assert h.ack(lease) == Acked(job_id)
    assert rejected(h.one(Pause(now_ms=h.now, queue="bad name")), Reason.INVALID)
    assert rejected(h.one(Resume(now_ms=h.now, queue="")), Reason.INVALID)


def test_cancel(h: Harness) -> None:
    queued = h.enqueue()
    delayed = h.enqueue(delay_ms=SECOND)
    leased = h.enqueue(priority=9)
    lease = h.claim_one()
    for job_id in (queued, delayed, leased):
        assert h.cancel(job_id) == Cancelled(job_id)
        assert h.state(job_id) is JobState.CANCELLED
        assert rejected(h.cancel(job_id), Reason.FINISHED)
    assert lease.id == leased and rejected(h.ack(lease), Reason.FINISHED)
    h.advance(SECOND)
    assert h.claim() == []
    (dead,) = _make_dead(h, "q", 1)
    assert rejected(h.cancel(dead), Reason.FINISHED)
    done = h.enqueue()
    h.ack(h.claim_one())
    assert rejected(h.cancel(done), Reason.FINISHED)


# -- configure and retention ----------------------------------------------------------------------


def test_configure(h: Harness) -> None:
    assert h.configure() == Configured("q", DEFAULT_DEDUP_WINDOW_MS, DEFAULT_RETENTION_MS)
    assert h.configure(retention_ms=5) == Configured("q", DEFAULT_DEDUP_WINDOW_MS, 5)
    assert h.configure(dedup_window_ms=0) == Configured("q", 0, 5)
    for bad in (
        {"dedup_window_ms": -1},
        {"dedup_window_ms": MAX_DEDUP_WINDOW_MS + 1},
        {"retention_ms": -1},
        {"retention_ms": MAX_RETENTION_MS + 1},
    ):
        assert rejected(h.configure(**bad), Reason.INVALID)
    assert rejected(h.configure("bad name"), Reason.INVALID)
    stats = h.m.queue_stats("q")
    assert stats is not None and (stats.dedup_window_ms, stats.retention_ms) == (0, 5)


def test_succeeded_and_cancelled_jobs_are_collected_after_retention(h: Harness) -> None:
    done = h.enqueue()
    h.ack(h.claim_one())
    cancelled = h.enqueue()
    h.cancel(cancelled)
    (dead,) = _make_dead(h, "q", 1)
    h.advance(DEFAULT_RETENTION_MS - 1)
    h.tick()
    assert h.state(done) is JobState.SUCCEEDED and h.state(cancelled) is JobState.CANCELLED
    h.advance(1)
    h.tick()
    assert h.state(done) is None and h.state(cancelled) is None
    assert h.state(dead) is JobState.DEAD  # dead letters stay until requeued or purged
    assert rejected(h.cancel(done), Reason.NOT_FOUND)


def test_retention_is_configurable(h: Harness) -> None:
    h.configure(retention_ms=SECOND)
    done = h.enqueue()
    h.ack(h.claim_one())
    h.advance(SECOND)
    h.tick()
    assert h.state(done) is None


def test_at_most_10000_finished_jobs_are_kept_per_queue(h: Harness) -> None:
    n = MAX_FINISHED_PER_QUEUE + 5
    ids = h.enqueue_many("q", [NewJob(payload=b"") for _ in range(MAX_BATCH_JOBS)])
    ids += h.enqueue_many("q", [NewJob(payload=b"") for _ in range(n - MAX_BATCH_JOBS)])
    leases = [lease for _ in range(n // MAX_CLAIM + 1) for lease in h.claim(max=MAX_CLAIM)]
    assert len(leases) == n
    acks = [Ack(now_ms=h.now, job_id=x.id, token=x.token) for x in leases]
    for i in range(0, n, 2000):
        assert all(isinstance(r, Acked) for r in h.apply(*acks[i : i + 2000]))
    assert [h.state(i) for i in ids[:5]] == [None] * 5
    assert h.state(ids[5]) is JobState.SUCCEEDED
    assert h.depth()["succeeded"] == MAX_FINISHED_PER_QUEUE


# -- request ids ----------------------------------------------------------------------------------


def test_repeated_request_id_gets_the_first_answer(h: Harness) -> None:
    cmd = Enqueue(now_ms=h.now, request_id="r1", queue="q", jobs=(NewJob(payload=b""),))
    first = h.one(cmd)
    h.advance(SECOND)
    assert h.one(cmd) == first
    assert len(h.m.jobs) == 1 and h.m.next_id == 2
    # A different command under the same id is not a retry: refused, nothing applied, and the
    # id keeps its first answer.
    assert rejected(h.one(Tick(now_ms=h.now, request_id="r1")), Reason.REQUEST_ID_REUSED)
    assert h.one(cmd) == first


def test_repeated_request_id_for_a_claim_and_an_ack(h: Harness) -> None:
    h.enqueue_many("q", [NewJob(payload=b""), NewJob(payload=b"")])
    claim = Claim(now_ms=h.now, request_id="c", queues=("q",), worker="w")
    first = h.one(claim)
    assert h.one(claim) == first  # the same lease, not a second job
    assert h.depth()["leased"] == 1
    assert isinstance(first, Claimed)
    (lease,) = first.jobs
    ack = Ack(now_ms=h.now, request_id="a", job_id=lease.id, token=lease.token)
    assert h.one(ack) == Acked(lease.id)
    assert h.one(ack) == Acked(lease.id)  # not "finished": the retry sees its own answer


def test_refusals_are_remembered_too(h: Harness) -> None:
    cmd = Ack(now_ms=h.now, request_id="x", job_id=77, token=1)
    assert rejected(h.one(cmd), Reason.NOT_FOUND)
    assert rejected(h.one(cmd), Reason.NOT_FOUND)


def test_request_ids_expire(h: Harness) -> None:
    cmd = Enqueue(now_ms=h.now, request_id="r", queue="q", jobs=(NewJob(payload=b""),))
    first = h.one(cmd)
    h.advance(REQUEST_WINDOW_MS - 1)
    assert h.one(cmd) == first
    h.advance(1)
    assert h.one(Tick(now_ms=h.now, request_id="r")) == Ticked(h.now)  # applied this time
    assert not h.m.requests or "r" in h.m.requests


def test_request_ids_survive_a_snapshot(h: Harness) -> None:
    cmd = Enqueue(now_ms=h.now, request_id="r", queue="q", jobs=(NewJob(payload=b""),))
    first = h.one(cmd)
    h.m = Machine.restore(snapshot_bytes(h.m))
    assert h.one(cmd) == first
    assert len(h.m.jobs) == 1


def test_request_id_table_is_bounded(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "REQUEST_WINDOW_MAX", 3)
    for i in range(6):
        h.one(Tick(now_ms=h.now, request_id=f"r{i}"))
    assert len(h.m.requests) <= 4
    assert "r0" not in h.m.requests and "r5" in h.m.requests


def test_request_id_too_long(h: Harness) -> None:
    rid = "r" * (MAX_REQUEST_ID_CHARS + 1)
    assert rejected(h.one(Tick(now_ms=h.now, request_id=rid)), Reason.INVALID)
    assert h.one(Tick(now_ms=h.now, request_id=rid[:-1])) == Ticked(h.now)


# -- the clock ------------------------------------------------------------------------------------


def test_clock_is_the_max_now_ms_seen(h: Harness) -> None:
    assert h.tick() == Ticked(T0)
    assert h.one(Tick(now_ms=T0 - 5 * SECOND)) == Ticked(T0)
    job_id = h.one(Enqueue(now_ms=T0 - 9 * SECOND, queue="q", jobs=(NewJob(payload=b""),)))
    assert isinstance(job_id, Enqueued)
    assert h.m.job_info(job_id.ids[0]).created_ms == T0  # type: ignore[union-attr]
    assert h.m.clock_ms == T0


def test_lease_expiry_is_decided_by_cluster_time_not_the_proposer(h: Harness) -> None:
    h.enqueue(lease_ms=SECOND)
    lease = h.claim_one()
    h.one(Tick(now_ms=T0 + 5 * SECOND))  # one proposer is ahead
    late = Ack(now_ms=T0, job_id=lease.id, token=lease.token)  # another is behind
    assert rejected(h.one(late), Reason.LEASE_EXPIRED)


@pytest.mark.parametrize("now_ms", [-1, MAX_TIME_MS + 1])
def test_now_ms_out_of_range(h: Harness, now_ms: int) -> None:
    assert rejected(h.one(Tick(now_ms=now_ms)), Reason.INVALID)
    assert h.m.clock_ms == 0


# -- stats, tick, digests -------------------------------------------------------------------------


def test_queue_stats(h: Harness) -> None:
    assert h.m.queue_stats("q") is None
    _make_dead(h, "q", 1)
    h.enqueue_many(
        "q",
        [NewJob(payload=b"", priority=p, key=f"k{i}") for i, p in enumerate((9, 9, 5, 0))]
        + [NewJob(payload=b"", delay_ms=SECOND)],
    )
    h.claim_one()
    stats = h.m.queue_stats("q")
    assert stats is not None
    assert stats.depth == {
        "queued": 3,
        "delayed": 1,
        "leased": 1,
        "succeeded": 0,
        "dead": 1,
        "cancelled": 0,
        "waiting": 0,
    }
    assert stats.by_priority == {str(p): {9: 1, 5: 1, 0: 1}.get(p, 0) for p in range(9, -1, -1)}
    assert list(stats.by_priority) == [str(p) for p in range(9, -1, -1)]
    assert (stats.in_flight, stats.keys, stats.paused) == (1, 4, False)
    h.advance(SECOND)
    h.tick()
    assert h.depth()["queued"] == 4 and h.depth()["delayed"] == 0


def test_apply_answers_encoded_results_and_keeps_a_rolling_digest(h: Harness) -> None:
    entry = encode_entry(
        [Tick(now_ms=T0), Enqueue(now_ms=T0, queue="q", jobs=(NewJob(payload=b""),))]
    )
    other = Machine()
    digests = {other.digest}
    assert decode_results(other.apply(entry)) == [Ticked(T0), Enqueued((1,), (False,))]
    digests.add(other.digest)
    other.apply(b"garbage")
    digests.add(other.digest)
    assert len(digests) == 3 and other.applied == 2
    twin = Machine()
    twin.apply(entry)
    twin.apply(b"garbage")
    assert twin.digest == other.digest


def test_admin_module_split_keeps_the_dispatch(h: Harness) -> None:
    """The refactor moved handlers; the machine still reaches each one."""
    assert callable(admin_ops.requeue_dead) and callable(ops.claim)
    assert h.one(Pause(now_ms=h.now, queue="q")) == Paused("q")
