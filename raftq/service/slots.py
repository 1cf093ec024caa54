"""When a schedule's slots are, and which of them the leader fires now (edge code: the state
machine only compares integers, see ``raftq.core.schedules``).

Slots:

- ``every_ms``: the multiples of ``every_ms`` since the Unix epoch (``k * every_ms``), so every
  node, and a schedule replaced with the same period, agrees on them without any stored anchor.
  A schedule of ``every_ms = 3_600_000`` fires on the hour (UTC).
- ``cron``: a 5-field cron expression (minute hour day-of-month month day-of-week, as crontab)
  in the IANA time zone ``tz`` (default UTC), computed with ``croniter`` on ``zoneinfo``. Across
  a DST change a slot follows local time: a time that does not exist that day (02:30 when clocks
  jump from 02:00 to 03:00) fires at the jump (03:00 local), and an hour that happens twice
  (clocks back) fires in both, as each is its own instant.

The firing rule (``due_slots``): at cluster time ``now``, the slots ``s`` with
``last_slot_ms < s <= now`` and ``s >= now - window`` fire, oldest first, where ``window`` is
``max(catchup_ms, ON_TIME_MS)``. A slot older than the window is skipped for good (the next
fire moves ``last_slot_ms`` past it). ``ON_TIME_MS`` is the lateness of a slot fired by a
healthy leader (its pass every ``PASS_MS``, then a commit), so ``catchup_ms = 0`` still fires
every slot while there is a leader, and nothing missed during an outage. At most
``MAX_FIRES_PER_PASS`` slots of one schedule fire per pass; the next pass goes on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

__all__ = [
    "MAX_FIRES_PER_PASS",
    "ON_TIME_MS",
    "PASS_MS",
    "SlotSpec",
    "check_cron",
    "check_tz",
    "due_slots",
    "next_fire",
    "next_slot",
]

PASS_MS = 50  # how often the leader looks for due slots
ON_TIME_MS = 1_000  # the least catch-up window: a slot fired this late is on time
MAX_FIRES_PER_PASS = 100  # per schedule; the next pass fires the rest


SlotSpec = tuple[int | None, str | None, str | None]  # (every_ms, cron, tz)


def check_cron(expr: str) -> str | None:
    """Why ``expr`` is not a 5-field cron expression (``None``: it is one)."""
    if len(expr.split()) != 5:
        return "must have 5 fields (minute hour day-of-month month day-of-week)"
    if not croniter.is_valid(expr):
        return f"not a valid cron expression: {expr!r}"
    try:
        croniter(expr, datetime.now(UTC)).get_next(float)
    except CroniterError:  # a date that never comes (Feb 30)
        return f"{expr!r} matches no date"
    return None


def check_tz(tz: str) -> str | None:
    """Why ``tz`` is not an IANA time zone name (``None``: it is one)."""
    try:
        _zone(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {tz!r} (an IANA name such as Europe/Berlin or UTC)"
    return None


@lru_cache(maxsize=256)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def next_slot(spec: SlotSpec, after_ms: int) -> int:
    """The first slot strictly after ``after_ms`` (``ValueError`` when a cron expression has
    none: ``check_cron`` refuses such an expression at PUT)."""
    every_ms, cron, tz = spec
    if every_ms is not None:
        return (after_ms // every_ms + 1) * every_ms
    assert cron is not None  # one of the two: the machine checks it
    zone = UTC if tz is None else _zone(tz)
    start = datetime.fromtimestamp(after_ms / 1000, zone)
    slot = int(croniter(cron, start).get_next(float)) * 1000
    # croniter works in whole seconds and cron slots are whole minutes: a start on a slot gives
    # the next one, but guard anyway.
    return slot if slot > after_ms else next_slot(spec, slot)


def due_slots(
    spec: SlotSpec, last_slot_ms: int, catchup_ms: int, now_ms: int, limit: int = MAX_FIRES_PER_PASS
) -> list[int]:
    """The slots to fire at ``now_ms``, oldest first (the module docstring's rule)."""
    window = max(catchup_ms, ON_TIME_MS)
    start = max(last_slot_ms, now_ms - window - 1)
    out: list[int] = []
    slot = next_slot(spec, start)
    while slot <= now_ms and len(out) < limit:
        out.append(slot)
        slot = next_slot(spec, slot)
    return out


def next_fire(spec: SlotSpec, last_slot_ms: int, catchup_ms: int, now_ms: int) -> int:
    """The slot that fires next as of ``now_ms`` (it may be due already: then it fires within
    a pass): the first slot after ``last_slot_ms`` that is not too old to fire."""
    window = max(catchup_ms, ON_TIME_MS)
    return next_slot(spec, max(last_slot_ms, now_ms - window - 1))
