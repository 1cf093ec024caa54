"""The one retry policy (``raftq.retry``): the schedules its three users state, and the
deadline it keeps."""

from __future__ import annotations

import asyncio

from raftq.errors import NoLeader, NotLeader, OutcomeUnknown, Overloaded, Rejected
from raftq.retry import RetryPolicy


def test_the_embedded_schedule_doubles_from_50_ms_to_800_ms() -> None:
    policy = RetryPolicy(30_000, cap_s=0.8)
    assert [policy.step_s(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 0.8, 0.8]


def test_the_transport_schedule_doubles_to_1_s_with_jitter() -> None:
    policy = RetryPolicy(60_000, cap_s=1.0, jitter=0.5)
    assert [policy.step_s(n) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert policy.step_s(1000) == 1.0  # no overflow however many attempts

    async def delays() -> list[float]:
        attempts = policy.start()
        return [d for _ in range(200) if (d := attempts.next_delay()) is not None]

    got = asyncio.run(delays())
    assert len(got) == 200
    assert all(0.5 <= d <= 1.0 for d in got[10:]), got[10:]  # jitter: half to all of the step
    assert len(set(got[10:])) > 1


def test_only_failures_a_retry_may_cure_are_retried() -> None:
    policy = RetryPolicy(1000)
    for error in (NotLeader("n2"), NoLeader("x"), Overloaded("x"), OutcomeUnknown("x")):
        assert policy.retries(error)
    assert not policy.retries(Rejected("stale_token", "stale", 409))
    assert not policy.retries(ValueError("a bug"))


async def test_no_delay_runs_past_the_deadline() -> None:
    policy = RetryPolicy(120, base_s=0.05, cap_s=0.05)
    attempts = policy.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    waited = 0
    while True:
        now = loop.time()
        delay = attempts.next_delay()
        if delay is None:
            break
        assert 0 < delay <= 0.05
        assert now + delay <= attempts.deadline  # never sleeps past the deadline
        await asyncio.sleep(delay)
        waited += 1
    assert waited >= 2
    assert loop.time() - start >= 0.12 - 0.005  # gave up only once the budget was spent
    assert attempts.remaining_s() <= 0
