"""The schedule checker (``raftq_jepsen.checker.schedules``) on synthetic runs: each violation
kind is flagged, and the legal histories (slots skipped while no leader could fire them, slots
caught up late) pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raftq_jepsen.checker import judge
from raftq_jepsen.checker.history import Op
from raftq_jepsen.checker.schedules import GRACE_MS, check_schedules, leader_intervals

from tests.chaos.hist import History

WALL_MS = 1_700_000_000_000  # cluster time at the run's origin
EVERY, CATCHUP = 500, 10_000


def _writes(*spans: tuple[int, int]) -> list[Op]:
    """ok enqueues every 100 ms over each ``(from_ms, to_ms)`` (run time): a leader was up."""
    ops = []
    for lo, hi in spans:
        for t in range(lo, hi + 1, 100):
            ns = t * 1_000_000
            ops.append(Op(len(ops), 0, "enqueue", {}, ns - 1, "ok", ns, {}, None, "n1", ns))
    return ops


def _record(fire_offsets: list[int], *, end: int = 20_000, ids: list[int] | None = None) -> Any:
    """schedules.json of a schedule made at run time 0, paused at ``end``, that fired at the
    given run times (slots: multiples of EVERY)."""
    ids = ids or list(range(1, len(fire_offsets) + 1))
    return {
        "name": "tick",
        "every_ms": EVERY,
        "catchup_ms": CATCHUP,
        "collected": True,
        "wall_start_ms": WALL_MS,
        "created_ms": WALL_MS,
        "end_ms": WALL_MS + end,
        "fires": [
            {"id": i, "fire_ms": WALL_MS + t} for i, t in zip(ids, fire_offsets, strict=True)
        ],
    }


def _bad(result: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in result["violations"].items() if v}


ALL = list(range(500, 20_001, 500))


def test_every_slot_once_with_a_leader_throughout_is_valid() -> None:
    r = check_schedules(_record(ALL), _writes((0, 20_000)))
    assert r["valid"], r
    # Owed: the slots with GRACE_MS of leader after them before the pause (500 .. 17 000).
    assert r["counts"]["slots_owed"] == (20_000 - GRACE_MS) // EVERY
    assert r["counts"]["fires"] == len(ALL)


def test_a_slot_fired_twice_is_flagged() -> None:
    r = check_schedules(_record([*ALL[:10], ALL[9], *ALL[10:]]), _writes((0, 20_000)))
    assert _bad(r) == {"fired_twice": 1, "out_of_order": 1}
    assert r["examples"]["fired_twice"][0] == {"fire_ms": WALL_MS + 5000, "jobs": 2}


def test_fires_that_are_no_slot_or_out_of_order_are_flagged() -> None:
    fires = [*ALL[:3], 1_750, *ALL[3:]]  # not a multiple of every_ms
    r = check_schedules(_record(fires), _writes((0, 20_000)))
    assert _bad(r) == {"not_a_slot": 1}
    late = check_schedules(_record([*ALL, 20_500]), _writes((0, 20_000)))
    assert _bad(late) == {"not_a_slot": 1}  # fired after the pause
    swapped = _record(ALL, ids=[2, 1, *range(3, len(ALL) + 1)])
    assert _bad(check_schedules(swapped, _writes((0, 20_000)))) == {"out_of_order": 1}


def test_a_collected_job_without_a_slot_is_flagged_and_judged_apart() -> None:
    """The probe found a job in the schedule's queue whose record has no ``fire_ms`` (a
    replica that diverged answered with another job): flagged, and the rest still judged."""
    record = _record(ALL)
    record["fires"].insert(3, {"id": 99, "fire_ms": None})
    r = check_schedules(record, _writes((0, 20_000)))
    assert _bad(r) == {"not_fired": 1}
    assert r["examples"]["not_fired"][0] == {"id": 99}
    assert r["counts"]["fires"] == len(ALL)


def test_a_slot_missed_while_a_leader_was_up_is_flagged() -> None:
    r = check_schedules(_record([s for s in ALL if s != 6_000]), _writes((0, 20_000)))
    assert _bad(r) == {"missed_with_leader": 1}
    assert r["examples"]["missed_with_leader"][0] == {"slot": WALL_MS + 6_000}


def test_an_outage_within_catch_up_must_be_caught_up_after_recovery() -> None:
    # No leader from 5 s to 9 s; the leader after it must fire the slots of the outage late.
    writes = _writes((0, 5_000), (9_000, 20_000))
    assert len(leader_intervals(op.done_ns / 1e6 for op in writes if op.done_ns)) == 2
    assert check_schedules(_record(ALL), writes)["valid"]
    outage = [s for s in ALL if not 5_000 < s < 9_000]
    r = check_schedules(_record(outage), writes)
    assert _bad(r) == {"missed_after_recovery": 7}


def test_slots_no_leader_could_fire_may_be_skipped() -> None:
    # No leader from 3 s to 16 s: slots up to 16 s - catch-up (6 s) have no leader within
    # their catch-up window for GRACE_MS and may be skipped; later ones must be caught up.
    writes = _writes((0, 3_000), (16_000, 20_000))
    skipped_ok = [s for s in ALL if not 3_000 - GRACE_MS < s <= 6_000 + 1_000]
    r = check_schedules(_record(skipped_ok), writes)
    assert r["valid"], _bad(r)
    assert r["counts"]["missed_excused"] > 0
    too_many = [s for s in skipped_ok if s != 12_000]
    assert _bad(check_schedules(_record(too_many), writes)) == {"missed_after_recovery": 1}


def test_no_schedule_or_not_collected_is_not_judged() -> None:
    assert check_schedules(None, [])["valid"]
    r = check_schedules({"collected": False}, [])
    assert r["valid"] and r["counts"] == {"collected": False}


def test_the_run_checker_reads_schedules_json(tmp_path: Path) -> None:
    h = History()
    h.enqueue(1, "a")
    run_dir = h.write(tmp_path / "run")
    assert judge(run_dir)["checks"]["schedules"]["valid"]  # no schedule in this run
    twice = _record([500, 500], end=1_000)
    (run_dir / "schedules.json").write_text(json.dumps(twice))
    results = judge(run_dir)
    assert not results["valid"]
    assert results["checks"]["schedules"]["violations"]["fired_twice"] == 1
