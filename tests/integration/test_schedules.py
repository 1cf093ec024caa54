"""A schedule on a real 3-node cluster across kill -9 of the leader: the new leader resumes
from the replicated last slot. Over the run every slot's job exists at most once, and, with a
catch-up window longer than the election, no slot between the first and the last fire is
missing (docs/guide.md, "Schedules": the catch-up rule)."""

from __future__ import annotations

import time

from tests.integration.cluster import Cluster, http_json

EVERY_MS = 200


def _schedule(c: Cluster, nid: str) -> dict[str, object]:
    status, body = http_json(c.url(nid, "/v1/schedules/tick"))
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def _wait_fires(c: Cluster, nid: str, at_least: int, timeout_s: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fires = int(_schedule(c, nid)["fires"])  # type: ignore[call-overload]
        except (OSError, AssertionError):
            fires = -1
        if fires >= at_least:
            return fires
        assert time.monotonic() < deadline, f"{fires} fires, wanted {at_least}:\n{c.log_tail(nid)}"
        time.sleep(0.05)


def test_a_schedule_survives_kill_9_of_the_leader_without_gap_or_duplicate(
    cluster: Cluster,
) -> None:
    first_leader = cluster.leader()
    entry = next(n for n in cluster.ids if n != first_leader)
    body = {"queue": "ticks", "every_ms": EVERY_MS, "payload": "tick", "catchup_ms": 10_000}
    status, put = http_json(cluster.url(entry, "/v1/schedules/tick"), body, method="PUT")
    assert status == 200, put
    created_ms = int(put["created_ms"])
    fires_before = _wait_fires(cluster, entry, 5)

    cluster.kill(first_leader)  # SIGKILL: whatever it was firing is cut short
    survivors = [n for n in cluster.ids if n != first_leader]
    new_leader = cluster.leader(among=survivors)
    assert new_leader != first_leader
    _wait_fires(cluster, new_leader, fires_before + 8)

    status, paused = http_json(cluster.url(new_leader, "/v1/schedules/tick/pause"), {})
    assert status == 200, paused
    shown = _schedule(cluster, new_leader)
    last_job = int(shown["last_job_id"])  # type: ignore[call-overload]
    slots = []
    for job_id in range(1, last_job + 1):
        status, job = http_json(cluster.url(new_leader, f"/v1/jobs/{job_id}"))
        if status == 200 and job["schedule"] == "tick":
            assert job["queue"] == "ticks" and job["payload"] == "tick"
            slots.append(int(job["fire_ms"]))
    assert len(slots) == len(set(slots)), "a slot fired twice"
    assert all(s % EVERY_MS == 0 and s > created_ms for s in slots)
    assert slots == sorted(slots)  # fired in slot order, job ids in log order
    # Every slot from the first fire to the last one fired: the slots of the election were
    # within catchup_ms, so the new leader fired them late, once.
    expected = list(range(slots[0], slots[-1] + 1, EVERY_MS))
    missing = sorted(set(expected) - set(slots))
    assert missing == [], f"slots missing: {missing}"
    assert shown["last_fire_ms"] == slots[-1]
    assert slots[0] - created_ms <= EVERY_MS  # the first slot after creation fired
