"""Slot computation (``raftq.service.slots``) and the leader's firing pass
(``raftq.service.scheduler``) over a real machine: every_ms slots, cron in a time zone across
both DST changes, the catch-up rule, and a leader change that neither skips nor repeats."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from raftq.core import (
    Command,
    EnableVersion,
    Fired,
    Machine,
    PutSchedule,
    Result,
    SchedulePut,
    encode_entry,
)
from raftq.errors import OutcomeUnknown
from raftq.service.scheduler import Scheduler, fire_request_id
from raftq.service.slots import (
    MAX_FIRES_PER_PASS,
    ON_TIME_MS,
    check_cron,
    check_tz,
    due_slots,
    next_fire,
    next_slot,
)

BERLIN = ZoneInfo("Europe/Berlin")


def _ms(*args: int, tz: ZoneInfo = BERLIN) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[misc]


def test_every_ms_slots_are_multiples_since_the_epoch() -> None:
    spec = (1000, None, None)
    assert next_slot(spec, 0) == 1000
    assert next_slot(spec, 999) == 1000
    assert next_slot(spec, 1000) == 2000
    assert due_slots(spec, 1000, 5000, 3500) == [2000, 3000]
    assert due_slots(spec, 1000, 0, 3500) == [3000]  # 2000 is older than the on-time window
    assert due_slots(spec, 3000, 0, 3999) == []


def test_catch_up_fires_the_missed_slots_within_the_window_only() -> None:
    spec = (1000, None, None)
    # Last fired at 10 s; now 20.5 s. catch-up 5 s: slots 16..20 fire, 11..15 are skipped.
    assert due_slots(spec, 10_000, 5_000, 20_500) == [16_000, 17_000, 18_000, 19_000, 20_000]
    # catch-up 0: the on-time window still fires what a healthy leader fires a little late.
    assert ON_TIME_MS == 1000
    assert due_slots(spec, 10_000, 0, 20_500) == [20_000]
    # A slot exactly at now - window is still inside.
    assert due_slots(spec, 10_000, 4_500, 20_500) == [16_000, 17_000, 18_000, 19_000, 20_000]
    # At most MAX_FIRES_PER_PASS per pass, oldest first; the next pass goes on from there.
    many = due_slots((100, None, None), 0, 3_600_000, 3_600_000)
    assert len(many) == MAX_FIRES_PER_PASS and many[0] == 100 and many == sorted(set(many))
    # What the schedule shows as its next fire: the next slot not too old to fire.
    assert next_fire(spec, 10_000, 5_000, 20_500) == 16_000
    assert next_fire(spec, 20_000, 5_000, 20_500) == 21_000


def test_cron_in_a_time_zone_across_the_spring_dst_change() -> None:
    spec = (None, "30 2 * * *", "Europe/Berlin")
    # 2026-03-29: clocks jump 02:00 -> 03:00, 02:30 does not exist: that day fires at 03:00.
    after = _ms(2026, 3, 28, 12, 0)
    first = next_slot(spec, after)
    assert first == _ms(2026, 3, 29, 3, 0)
    second = next_slot(spec, first)
    assert second == _ms(2026, 3, 30, 2, 30)
    daily = (None, "0 9 * * *", "Europe/Berlin")
    a = next_slot(daily, _ms(2026, 3, 28, 12, 0))
    b = next_slot(daily, a)
    assert (a, b) == (_ms(2026, 3, 29, 9, 0), _ms(2026, 3, 30, 9, 0))
    assert b - a == 24 * 3_600_000  # both 09:00 local, CEST
    before = next_slot(daily, _ms(2026, 3, 27, 12, 0))
    assert a - before == 23 * 3_600_000  # the short day


def test_cron_in_a_time_zone_across_the_autumn_dst_change() -> None:
    # 2026-10-25: clocks go 03:00 -> 02:00; 02:00 local happens twice, each is its own slot.
    hourly = (None, "0 * * * *", "Europe/Berlin")
    now = _ms(2026, 10, 25, 5, 0)
    slots = due_slots(hourly, _ms(2026, 10, 25, 0, 30), 10 * 3_600_000, now)
    assert slots == sorted(set(slots))
    gaps = {b - a for a, b in pairwise(slots)}
    assert gaps == {3_600_000}  # every hour of real time, none twice, none left out
    assert len(slots) == 6  # 01, 02 CEST, 02 CET, 03, 04, 05


def test_cron_and_tz_are_checked() -> None:
    assert check_cron("*/5 * * * *") is None
    assert "5 fields" in (check_cron("* * * *") or "")
    assert "5 fields" in (check_cron("0 0 * * * *") or "")
    assert "not a valid cron" in (check_cron("61 * * * *") or "")
    assert "matches no date" in (check_cron("0 0 30 2 *") or "")  # February 30th
    assert check_cron("0 0 29 2 *") is None  # leap years only, but it comes
    assert check_tz("Europe/Berlin") is None and check_tz("UTC") is None
    assert "unknown time zone" in (check_tz("Mars/Olympus") or "")
    assert "unknown time zone" in (check_tz("../etc/passwd") or "")


class _Node:
    """A leader over a shared machine: what ``Scheduler`` needs of ``NodeAPI``."""

    def __init__(self, m: Machine, node_id: str) -> None:
        self.m, self.node_id, self.now = m, node_id, 0
        self.lost = False  # the next submit is lost after being applied (outcome unknown)

    def now_ms(self) -> int:
        return self.now

    def is_leader(self) -> bool:
        return True

    @contextlib.contextmanager
    def read(self) -> Iterator[Machine]:
        yield self.m

    async def submit_many(
        self, commands: Sequence[Command], timeout_ms: int | None = None
    ) -> list[Result]:
        results = self.m.apply_entry(encode_entry(list(commands)))
        self.m.check_invariants()
        if self.lost:
            self.lost = False
            raise OutcomeUnknown("leadership lost")
        return results


T = 1_700_000_000_000


def _cluster() -> tuple[Machine, _Node, _Node]:
    m = Machine()
    m.apply_entry(encode_entry([EnableVersion(now_ms=T, version=3)]))
    put = PutSchedule(
        now_ms=T, name="s", queue="q", every_ms=200, payload=b"\xc0", catchup_ms=10_000
    )
    assert m.apply_entry(encode_entry([put])) == [SchedulePut("s", True)]
    return m, _Node(m, "n1"), _Node(m, "n2")


def _fire_ms(m: Machine) -> list[int]:
    return sorted(fire_ms for _name, fire_ms in m.fired.values())


async def test_a_new_leader_resumes_from_the_replicated_last_slot() -> None:
    m, n1, n2 = _cluster()
    first, second = Scheduler(n1, 1000), Scheduler(n2, 1000)  # type: ignore[arg-type]
    n1.now = T + 1000
    assert await first.fire_due() == 5  # T+200 .. T+1000
    # n1's last pass: applied, but its leader never heard back (outcome unknown).
    n1.now, n1.lost = T + 1400, True
    with pytest.raises(OutcomeUnknown, match="leadership lost"):
        await first.fire_due()
    # No leader from T+1400 to T+4000; then n2 leads and catches up from the log.
    n2.now = T + 4000
    assert await second.fire_due() == 13  # T+1600 .. T+4000: nothing twice, nothing missed
    # n1's retry of its lost pass (same request ids) is answered from memory: no new job.
    n1.now = T + 4000
    assert await first.fire_due() == 0
    assert _fire_ms(m) == list(range(T + 200, T + 4001, 200))


async def test_a_slot_computed_by_two_leaders_fires_once() -> None:
    m, n1, n2 = _cluster()
    n1.now = n2.now = T + 600
    a, b = Scheduler(n1, 1000), Scheduler(n2, 1000)  # type: ignore[arg-type]
    stale = a.due(n1.now)
    assert await b.fire_due() == 3
    # The first "leader" proposes what it computed before the second fired: all refused.
    results = await n1.submit_many(stale)
    assert not any(isinstance(r, Fired) and r.job_id and r.fire_ms > T + 600 for r in results)
    assert _fire_ms(m) == [T + 200, T + 400, T + 600]
    assert stale[0].request_id == fire_request_id("s", T + 200)


async def test_the_positive_control_build_fires_slots_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``schedule-fires-twice`` (raftq.server.testfaults): progress in the leader's memory and
    no last-slot rule. The next leader (another process: empty memory) fires again what the
    first fired within its catch-up window: what checker.schedules must catch."""
    from raftq.core import schedules  # noqa: PLC0415
    from raftq.server import testfaults  # noqa: PLC0415

    monkeypatch.setattr(schedules, "fire", testfaults._fire_any_slot)
    monkeypatch.setattr(Scheduler, "due", testfaults._due_from_memory)
    monkeypatch.setattr(testfaults, "_MEMORY", {})
    m, n1, n2 = _cluster()
    n1.now = T + 1000
    await Scheduler(n1, 1000).fire_due()  # type: ignore[arg-type]
    testfaults._MEMORY.clear()  # the next leader is another process
    n2.now = T + 1400
    await Scheduler(n2, 1000).fire_due()  # type: ignore[arg-type]
    fired = _fire_ms(m)
    assert len(fired) > len(set(fired))
