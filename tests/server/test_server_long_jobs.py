"""Long jobs over HTTP: progress and checkpoint on ``POST /v1/jobs/{id}/heartbeat``, its
``cancel_requested`` answer, what ``GET /v1/jobs/{id}`` and the next claim show, and one clear
4xx per bad input."""

from __future__ import annotations

from typing import Any

from raftq.core import EnableVersion
from raftq.core.limits import MAX_PROGRESS_BYTES
from tests.server.conftest import Harness, error_of


async def _v3(h: Harness) -> None:
    await h.node.submit(EnableVersion(now_ms=h.node.now_ms(), version=3))


async def _leased(h: Harness, version_3: bool = True) -> dict[str, Any]:
    """One job enqueued and claimed (log version 3 enabled first unless told not to)."""
    if version_3:
        await _v3(h)
    await h.post("/v1/queues/q/jobs", {"payload": "p"})
    return await _claim(h)


async def _claim(h: Harness) -> dict[str, Any]:
    r = await h.post("/v1/queues/q/claim", {"worker": "w"})
    assert r.status == 200, r.body
    (job,) = r.body["jobs"]
    return dict(job)


async def test_progress_and_checkpoint_are_shown_and_handed_to_the_next_attempt(
    start: Any,
) -> None:
    async with start() as h:
        job = await _leased(h)
        assert job["checkpoint"] is None
        hb = f"/v1/jobs/{job['id']}/heartbeat"
        body = {"token": job["token"], "progress": {"done": 1}, "checkpoint": {"page": 7}}
        r = await h.post(hb, body)
        assert r.status == 200, r.body
        assert set(r.body) == {"id", "lease_expires_ms", "cancel_requested"}
        assert r.body["cancel_requested"] is False
        r = await h.post(hb, {"token": job["token"], "progress": {"done": 2}}, fmt="msgpack")
        assert r.status == 200 and r.body["cancel_requested"] is False, r.body
        r = await h.get(f"/v1/jobs/{job['id']}")
        assert r.body["progress"] == {"done": 2} and r.body["checkpoint"] == {"page": 7}
        assert r.body["cancel_requested"] is False
        r = await h.post(f"/v1/jobs/{job['id']}/nack", {"token": job["token"], "retry_in_ms": 0})
        assert r.status == 200, r.body
        again = await _claim(h)
        assert again["checkpoint"] == {"page": 7} and again["attempt"] == 2
        r = await h.get(f"/v1/jobs/{job['id']}")
        assert r.body["progress"] is None  # a new attempt reports its own


async def test_too_large_or_bad_values_get_one_clear_4xx(start: Any) -> None:
    async with start() as h:
        job = await _leased(h)
        hb = f"/v1/jobs/{job['id']}/heartbeat"
        big = "x" * MAX_PROGRESS_BYTES  # its msgpack encoding has a header: over the limit
        for field in ("progress", "checkpoint"):
            r = await h.post(hb, {"token": job["token"], field: big})
            assert r.status == 413, r.body
            code, message = error_of(r)
            assert code == "payload_too_large" and message.startswith(f"{field}: ")
            assert "\n" not in message
        r = await h.post(hb, {"token": job["token"], "progress": {"$bytes": "!"}})
        assert r.status == 400 and error_of(r)[0] == "invalid"
        r = await h.post(hb, {"token": job["token"], "progres": 1})
        assert r.status == 400 and "progres" in error_of(r)[1]
        r = await h.get(f"/v1/jobs/{job['id']}")
        assert r.body["progress"] is None and r.body["checkpoint"] is None


async def test_cancelling_a_leased_job_answers_its_heartbeat_with_cancel_requested(
    start: Any,
) -> None:
    async with start() as h:
        job = await _leased(h)
        r = await h.post(f"/v1/jobs/{job['id']}/cancel")
        assert r.status == 200, r.body
        r = await h.post(f"/v1/jobs/{job['id']}/heartbeat", {"token": job["token"]})
        assert r.status == 200, r.body
        assert r.body["cancel_requested"] is True
        r = await h.post(f"/v1/jobs/{job['id']}/ack", {"token": job["token"]})
        assert r.status == 409 and error_of(r)[0] == "finished"
        r = await h.get(f"/v1/jobs/{job['id']}")
        assert r.body["state"] == "cancelled" and r.body["cancel_requested"] is True


async def test_before_version_3_progress_is_refused_and_a_plain_heartbeat_works(
    start: Any,
) -> None:
    async with start() as h:
        job = await _leased(h, version_3=False)
        hb = f"/v1/jobs/{job['id']}/heartbeat"
        r = await h.post(hb, {"token": job["token"], "progress": 1})
        assert r.status == 409 and error_of(r)[0] == "version_not_enabled"
        r = await h.post(hb, {"token": job["token"]})
        assert r.status == 200 and r.body["cancel_requested"] is False, r.body
