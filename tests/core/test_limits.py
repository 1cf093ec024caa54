"""Queue limits and fair groups (``SetLimits``, ``NewJob.group``): examples of each rule in
docs/state-machine.md "Limits and groups" (the model test covers their combinations)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from raftq.core import (
    Ack,
    Cancel,
    Claim,
    Claimed,
    Command,
    EnableVersion,
    Enqueue,
    Enqueued,
    LimitsSet,
    Machine,
    Nack,
    NewJob,
    Purge,
    Reason,
    Refusal,
    Result,
    SetLimits,
    Tick,
    encode_entry,
    snapshot_bytes,
)
from tests.core.test_determinism import assert_replays_equal_under_other_hash_seeds

T = 1_700_000_000_000


def run(m: Machine, cmd: Command) -> Result:
    (result,) = m.apply_entry(encode_entry([cmd]))
    m.check_invariants()
    return result


def machine(**limits: int) -> Machine:
    m = Machine()
    run(m, EnableVersion(now_ms=T, version=3))
    assert isinstance(run(m, SetLimits(now_ms=T, queue="q", **limits)), LimitsSet)
    return m


def enqueue(m: Machine, *groups: str | None, at: int = T, queue: str = "q") -> list[int]:
    jobs = tuple(NewJob(payload=b"x", group=g, lease_ms=60_000) for g in groups)
    got = run(m, Enqueue(now_ms=at, queue=queue, jobs=jobs))
    assert isinstance(got, Enqueued)
    return list(got.ids)


def claim(
    m: Machine, at: int, n: int = 10, queues: tuple[str, ...] = ("q",), **kw: int
) -> list[int]:
    got = run(m, Claim(now_ms=at, queues=queues, worker="w", max=n, **kw))
    assert isinstance(got, Claimed)
    return [lease.id for lease in got.jobs]


def token(m: Machine, job_id: int) -> int:
    info = m.job_info(job_id)
    assert info is not None
    return info.token


def test_concurrency_caps_leased_jobs_and_ack_nack_cancel_free_a_slot() -> None:
    m = machine(concurrency=2)
    ids = enqueue(m, None, None, None, None, None)
    assert claim(m, T) == ids[:2]
    assert claim(m, T + 1) == []
    run(m, Ack(now_ms=T + 2, job_id=ids[0], token=token(m, ids[0])))
    assert claim(m, T + 3) == [ids[2]]
    run(m, Nack(now_ms=T + 4, job_id=ids[1], token=token(m, ids[1]), retry_in_ms=60_000))
    assert claim(m, T + 5) == [ids[3]]
    run(m, Cancel(now_ms=T + 6, job_id=ids[2]))
    assert claim(m, T + 7) == [ids[4]]
    assert m.queue_stats("q").depth["leased"] == 2  # type: ignore[union-attr]


def test_an_expired_lease_frees_its_slot_at_its_end() -> None:
    m = machine(concurrency=1)
    a, b = enqueue(m, None, None)
    assert claim(m, T, lease_ms=10) == [a]
    assert claim(m, T + 9) == []
    # The lease ended at T + 10: the slot is free from then; a is ready again from then, after
    # b (ready since T).
    assert claim(m, T + 10) == [b]


def test_groups_are_served_round_robin_and_a_saturated_group_is_skipped() -> None:
    m = machine(group_concurrency=2)
    a1, a2, a3, b1, c1, c2 = enqueue(m, "a", "a", "a", "b", "c", "c")
    # One from each group in the order they became ready, then again; a is at its cap after
    # two, so c gets its second before a's third waits.
    assert claim(m, T) == [a1, b1, c1, a2, c2]
    assert claim(m, T + 1) == []
    run(m, Ack(now_ms=T + 2, job_id=a1, token=token(m, a1)))
    assert claim(m, T + 3) == [a3]


def test_one_busy_group_does_not_block_the_others() -> None:
    m = machine(group_concurrency=1)
    big = enqueue(m, *["big"] * 50)
    small = enqueue(m, "small", at=T + 1)
    assert claim(m, T + 1, n=1) == [big[0]]
    assert claim(m, T + 2, n=5) == small  # big is at its cap: skipped, not waited on


def test_jobs_without_a_group_are_one_group() -> None:
    m = machine(group_concurrency=1)
    x, y, g = enqueue(m, None, None, "g")
    assert claim(m, T) == [x, g]
    run(m, Ack(now_ms=T + 1, job_id=x, token=token(m, x)))
    assert claim(m, T + 2) == [y]


def test_priority_orders_jobs_within_a_group() -> None:
    m = machine(concurrency=10)
    got = run(
        m,
        Enqueue(
            now_ms=T,
            queue="q",
            jobs=(NewJob(payload=b"1", group="a"), NewJob(payload=b"2", group="a", priority=5)),
        ),
    )
    assert isinstance(got, Enqueued)
    _low, high = got.ids
    assert claim(m, T, n=1) == [high]


def test_a_rate_allows_at_most_limit_starts_in_any_window() -> None:
    m = machine(rate_limit=2, rate_period_ms=100)
    ids = enqueue(m, *[None] * 6)
    assert claim(m, T) == ids[:2]
    assert claim(m, T + 99) == []  # the window (T - 1, T + 99] holds both starts
    assert claim(m, T + 100, n=1) == [ids[2]]
    assert claim(m, T + 150) == [ids[3]]  # (T + 50, T + 150] holds one start: one more
    assert claim(m, T + 199) == []
    assert claim(m, T + 200) == [ids[4]]


@pytest.mark.parametrize("groups", [False, True])
def test_a_raised_rate_holds_in_the_windows_across_the_change(groups: bool) -> None:
    """Bug fixed (found by tests/core/test_limits_model.py): a rate keeps only its last
    `limit` starts, so a limit raised from 1 to 2 per 20 ms knew one start where there were
    two, and handed out a third within 20 ms. A full log raised to a higher limit now counts
    the unknown earlier starts at its oldest start (the latest they can have been)."""
    kind = "group_rate" if groups else "rate"
    m = machine(**{f"{kind}_limit": 1, f"{kind}_period_ms": 5})
    ids = enqueue(m, *["g"] * 4)
    assert claim(m, T) == ids[:1]
    assert claim(m, T + 5) == ids[1:2]
    raised = SetLimits(now_ms=T + 5, queue="q", **{f"{kind}_limit": 2, f"{kind}_period_ms": 20})
    assert isinstance(run(m, raised), LimitsSet)
    assert claim(m, T + 5) == []  # T and T + 5 are in the window (T - 15, T + 5]
    assert claim(m, T + 24) == []  # so is T + 5 (as the unknown start before it)
    assert claim(m, T + 25, n=1) == ids[2:3]
    assert claim(m, T + 25) == ids[3:]  # the log held T + 5 twice, both out of the window


def test_a_group_rate_blocked_group_wakes_exactly_when_its_window_ends() -> None:
    m = machine(group_rate_limit=1, group_rate_period_ms=5)
    a1, a2, b1 = enqueue(m, "a", "a", "b")
    assert claim(m, T) == [a1, b1]
    assert claim(m, T + 4) == []
    run(m, Tick(now_ms=T + 4))
    assert claim(m, T + 5) == [a2]


def test_idle_groups_cost_nothing_once_their_rate_history_ended() -> None:
    m = machine(group_concurrency=5, group_rate_limit=10, group_rate_period_ms=1000)
    ids = enqueue(m, "a", "b", "c")
    assert claim(m, T) == ids
    for i in ids:
        run(m, Ack(now_ms=T + 1, job_id=i, token=token(m, i)))
    lim = m.queues["q"].lim
    assert lim is not None and sorted(lim.groups) == ["a", "b", "c"]  # history still counts
    run(m, Tick(now_ms=T + 1000))
    assert lim.groups == {} and not lim.ring and not lim.early and lim.wake == []


def test_without_a_rate_an_idle_group_is_dropped_at_once() -> None:
    m = machine(group_concurrency=5)
    (a,) = enqueue(m, "a")
    assert claim(m, T) == [a]
    run(m, Ack(now_ms=T + 1, job_id=a, token=token(m, a)))
    assert m.queues["q"].lim.groups == {}  # type: ignore[union-attr]


def test_limits_change_and_removal_keep_every_job_claimable() -> None:
    m = machine(group_concurrency=1)
    a1, a2, b1 = enqueue(m, "a", "a", "b")
    assert claim(m, T, n=1) == [a1]
    run(m, SetLimits(now_ms=T + 1, queue="q", concurrency=1))  # lowered below what is leased
    assert claim(m, T + 2) == []
    run(m, SetLimits(now_ms=T + 3, queue="q"))  # no limits: the plain order over all jobs
    assert m.queues["q"].lim is None
    assert claim(m, T + 4) == [a2, b1]


def test_a_queue_at_its_cap_does_not_stop_a_claim_on_other_queues() -> None:
    m = machine(concurrency=1)
    q1, _q2 = enqueue(m, "a", "b")
    (r1,) = enqueue(m, None, queue="r")
    assert claim(m, T + 1, queues=("q", "r")) == [q1, r1]


def test_purge_keeps_the_leased_jobs_counted() -> None:
    m = machine(concurrency=2, group_concurrency=1)
    a1, _a2, _b1 = enqueue(m, "a", "a", "b")
    assert claim(m, T, n=1) == [a1]
    run(m, Purge(now_ms=T + 1, queue="q"))
    (a3,) = enqueue(m, "a", at=T + 2)
    assert claim(m, T + 3) == []  # a is still at its cap: a1 holds the slot
    run(m, Ack(now_ms=T + 4, job_id=a1, token=token(m, a1)))
    assert claim(m, T + 5) == [a3]


def test_the_group_is_on_the_job_and_checked() -> None:
    m = machine(concurrency=1)
    (a,) = enqueue(m, "tenant-7")
    info = m.job_info(a)
    assert info is not None and info.group == "tenant-7"
    bad = run(m, Enqueue(now_ms=T, queue="q", jobs=(NewJob(payload=b"x", group="a b"),)))
    assert isinstance(bad, Refusal) and bad.reason is Reason.INVALID and "group" in bad.message


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        ({"concurrency": 0}, "concurrency must be"),
        ({"group_concurrency": 1_000_001}, "group_concurrency must be"),
        ({"rate_limit": 5}, "rate needs both"),
        ({"group_rate_period_ms": 5}, "group_rate needs both"),
        ({"rate_limit": 0, "rate_period_ms": 5}, "rate limit must be"),
        ({"rate_limit": 1, "rate_period_ms": 86_400_001}, "rate period_ms must be"),
    ],
)
def test_bad_limits_are_refused(limits: dict[str, int], words: str) -> None:
    m = machine()
    got = run(m, SetLimits(now_ms=T, queue="q", **limits))
    assert isinstance(got, Refusal) and got.reason is Reason.INVALID and words in got.message


def test_limits_and_groups_need_log_version_3() -> None:
    m = Machine()
    run(m, EnableVersion(now_ms=T, version=2))
    for cmd in (
        SetLimits(now_ms=T, queue="q", concurrency=1),
        Enqueue(now_ms=T, queue="q", jobs=(NewJob(payload=b"x", group="g"),)),
    ):
        got = run(m, cmd)
        assert isinstance(got, Refusal) and got.reason is Reason.VERSION_NOT_ENABLED
    assert snapshot_bytes(m)[16] == 5
    run(m, EnableVersion(now_ms=T, version=3))
    assert snapshot_bytes(m)[16] == 6


def test_snapshot_round_trip_keeps_turns_rates_and_groups() -> None:
    m = machine(concurrency=3, group_concurrency=1, group_rate_limit=1, group_rate_period_ms=50)
    enqueue(m, "a", "a", "b", "c", None, None)
    claim(m, T, n=2)
    twin = Machine.restore(snapshot_bytes(m))
    twin.check_invariants()
    assert snapshot_bytes(twin) == snapshot_bytes(m)
    for at in (T + 10, T + 50, T + 51, T + 200):
        assert claim(twin, at) == claim(m, at)
        assert twin.state_digest() == m.state_digest()


def _limits_log(seed: int, n: int = 600) -> list[bytes]:
    """A seeded random log over a limited queue: groups, claims, acks, nacks, cancels, ticks,
    limit changes; generated against a live machine so acks carry real tokens."""
    rng = random.Random(seed)
    m = Machine()
    now = T
    leased: list[tuple[int, int]] = []
    out = [encode_entry([EnableVersion(now_ms=now, version=3)])]
    m.apply_entry(out[0])
    for _ in range(n):
        now += rng.choice([0, 1, 5, 40])
        r = rng.random()
        cmd: Command
        if r < 0.05:
            cmd = SetLimits(
                now_ms=now,
                queue="q",
                concurrency=rng.choice([None, 2, 5]),
                rate_limit=rng.choice([None, 3]),
                rate_period_ms=50,
                group_concurrency=rng.choice([None, 1, 2]),
                group_rate_limit=2,
                group_rate_period_ms=rng.choice([20, 100]),
            )
            if cmd.rate_limit is None:
                cmd = dataclasses.replace(cmd, rate_period_ms=None)
        elif r < 0.35:
            groups = [rng.choice(["a", "b", "c", "d", None]) for _ in range(rng.randint(1, 3))]
            jobs = tuple(NewJob(payload=b"x", group=g, priority=rng.randint(0, 2)) for g in groups)
            cmd = Enqueue(now_ms=now, queue="q", jobs=jobs)
        elif r < 0.65:
            cmd = Claim(now_ms=now, queues=("q",), worker="w", max=rng.randint(1, 4), lease_ms=60)
        elif r < 0.9 and leased:
            job_id, tok = leased.pop(rng.randrange(len(leased)))
            kind = rng.random()
            if kind < 0.6:
                cmd = Ack(now_ms=now, job_id=job_id, token=tok)
            elif kind < 0.9:
                cmd = Nack(now_ms=now, job_id=job_id, token=tok, retry_in_ms=rng.choice([0, 30]))
            else:
                cmd = Cancel(now_ms=now, job_id=job_id)
        else:
            cmd = Tick(now_ms=now)
        raw = encode_entry([cmd])
        (res,) = m.apply_entry(raw)
        if isinstance(res, Claimed):
            leased += [(x.id, x.token) for x in res.jobs]
        out.append(raw)
    return out


def test_a_random_limits_log_replays_equal_with_a_restore_midway() -> None:
    log = _limits_log(7)
    straight = Machine()
    answers = [straight.apply(raw) for raw in log]
    straight.check_invariants()
    assert straight.queues["q"].tally.totals[1] > 50  # claimed: the log is not idle
    half = Machine()
    first = [half.apply(raw) for raw in log[:300]]
    restored = Machine.restore(snapshot_bytes(half))
    rest = [restored.apply(raw) for raw in log[300:]]
    assert first + rest == answers
    assert restored.state_digest() == straight.state_digest()


@pytest.mark.integration
def test_a_random_limits_log_replays_equal_under_other_hash_seeds(tmp_path: Path) -> None:
    assert_replays_equal_under_other_hash_seeds(_limits_log(11), tmp_path, ("0", "4242"))
