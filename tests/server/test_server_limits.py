"""``PUT/GET /v1/queues/{queue}/limits``, ``group`` on enqueue and jobs, and limits in the queue
view; bad bodies get a 400 naming the field."""

from __future__ import annotations

import pytest

from tests.server.test_server_observability import scrape, value


async def test_limits_round_trip_and_are_applied_on_claim(start):
    async with start(followers=1) as h:
        r = await h.post("/v1/cluster/version", {"version": 3})
        assert r.status == 200, r.body
        body = {"concurrency": 2, "group_concurrency": 1, "rate": {"limit": 10, "period_ms": 1000}}
        r = await h.request("PUT", "/v1/queues/q/limits", body)
        assert r.status == 200, r.body
        assert r.body == {
            "queue": "q",
            "concurrency": 2,
            "rate": {"limit": 10, "period_ms": 1000},
            "group_concurrency": 1,
            "group_rate": None,
        }
        jobs = [{"payload": i, "group": g} for i, g in enumerate(["a", "a", "b", "c"])]
        r = await h.post("/v1/queues/q/jobs", {"jobs": jobs})
        assert r.status == 201, r.body
        r = await h.get(f"/v1/jobs/{r.body['ids'][0]}")
        assert r.body["group"] == "a"
        r = await h.post("/v1/queues/q/claim", {"worker": "w", "max": 10})
        assert [j["payload"] for j in r.body["jobs"]] == [0, 2]  # a's cap 1, the queue's 2
        r = await h.get("/v1/queues/q/limits")
        assert r.status == 200
        usage = r.body["usage"]
        assert usage["slots_used"] == 2 and usage["starts_in_window"] == 2
        # a waits for its group slot; c is ready but the queue is at its cap
        assert (usage["groups"], usage["groups_ready"], usage["groups_waiting"]) == (3, 1, 1)
        r = await h.get("/v1/queues/q")
        assert r.body["limits"]["concurrency"] == 2
        m = await scrape(h)
        assert value(m, "raftq_queue_limit", queue="q", limit="concurrency") == 2
        assert value(m, "raftq_queue_limit", queue="q", limit="rate_period_ms") == 1000
        assert ("raftq_queue_limit", (("limit", "group_rate"), ("queue", "q"))) not in m
        assert value(m, "raftq_queue_groups", queue="q", state="waiting") == 1
        # Through a follower too (it forwards the PUT); null and absent remove a limit.
        r = await h.request("PUT", "/v1/queues/q/limits", {"concurrency": None}, node="n2")
        assert r.status == 200, r.body
        assert r.body["concurrency"] is None and r.body["rate"] is None
        r = await h.get("/v1/queues/q/limits")
        assert r.body["usage"] is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"rate": {"limit": 5}}, "rate.period_ms"),
        ({"rate": 5}, "rate"),
        ({"group_rate": {"limit": 1, "period_ms": 1, "x": 1}}, "group_rate"),
        ({"speed": 1}, "speed"),
    ],
)
async def test_bad_limits_are_400_naming_the_field(start, body, words):
    async with start() as h:
        await h.post("/v1/cluster/version", {"version": 3})
        r = await h.request("PUT", "/v1/queues/q/limits", body)
        assert r.status == 400, r.body
        assert words in r.body["error"]["message"]


async def test_a_bad_group_is_400_and_an_unknown_queue_404(start):
    async with start() as h:
        await h.post("/v1/cluster/version", {"version": 3})
        r = await h.post("/v1/queues/q/jobs", {"payload": 1, "group": "a b"})
        assert r.status == 400 and "group" in r.body["error"]["message"]
        r = await h.get("/v1/queues/nope/limits")
        assert r.status == 404


async def test_a_long_poll_on_a_queue_at_its_cap_waits_without_spinning(start):
    """The queue has ready jobs but is at its concurrency: a long-poll claim must wait, not
    propose an empty round after every entry (each round is an entry that wakes it again)."""
    async with start() as h:
        await h.post("/v1/cluster/version", {"version": 3})
        await h.request("PUT", "/v1/queues/q/limits", {"concurrency": 1})
        await h.post("/v1/queues/q/jobs", {"jobs": [{"payload": 1}, {"payload": 2}]})
        r = await h.post("/v1/queues/q/claim", {"worker": "w"})
        assert len(r.body["jobs"]) == 1
        with h.node.read() as m:
            before = m.applied
        r = await h.post("/v1/queues/q/claim", {"worker": "w2", "wait_ms": 300})
        assert r.status == 200 and r.body["jobs"] == []
        with h.node.read() as m:
            assert m.applied - before <= 5, m.applied - before
