"""``POST /v1/ack``: several acks in one request, each with its own outcome."""

from __future__ import annotations

import pytest

from raftq.core import Ack
from raftq.errors import OutcomeUnknown, Overloaded
from raftq.server import ServerSettings


async def _claimed(h, n: int) -> list[dict]:
    r = await h.post("/v1/queues/q/jobs", {"jobs": [{"payload": i} for i in range(n)]})
    assert r.status == 201, r.body
    r = await h.post("/v1/queues/q/claim", {"worker": "w", "max": n})
    assert r.status == 200 and len(r.body["jobs"]) == n
    return r.body["jobs"]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_each_ack_has_its_own_outcome(start, fmt):
    async with start() as h:
        jobs = await _claimed(h, 3)
        acks = [
            {"id": jobs[0]["id"], "token": jobs[0]["token"], "result": {"ok": 1}},
            {"id": jobs[1]["id"], "token": jobs[1]["token"] + 99},
            {"id": jobs[2]["id"], "token": jobs[2]["token"]},
        ]
        r = await h.post("/v1/ack", {"acks": acks}, fmt=fmt)
        assert r.status == 200, r.body
        first, stale, last = r.body["results"]
        assert first == {"id": jobs[0]["id"], "state": "succeeded"}
        assert last == {"id": jobs[2]["id"], "state": "succeeded"}
        assert stale["id"] == jobs[1]["id"]
        assert stale["error"]["code"] == "stale_token"
        assert stale["error"]["status"] == 409
        assert isinstance(stale["error"]["message"], str)
        r = await h.get(f"/v1/jobs/{jobs[0]['id']}", fmt=fmt)
        assert r.body["state"] == "succeeded" and r.body["result"] == {"ok": 1}
        r = await h.get(f"/v1/jobs/{jobs[1]['id']}")
        assert r.body["state"] == "leased"


async def test_a_retry_with_the_same_request_id_is_answered_from_memory(start):
    async with start() as h:
        jobs = await _claimed(h, 2)
        body = {"acks": [{"id": j["id"], "token": j["token"]} for j in jobs]}
        headers = {"X-Request-Id": "batch-1"}
        r1 = await h.post("/v1/ack", body, headers=headers)
        r2 = await h.post("/v1/ack", body, headers=headers)
        assert r1.status == r2.status == 200
        assert r1.body == r2.body
        assert all(x["state"] == "succeeded" for x in r2.body["results"])
        acks = [c for c in h.node.log if isinstance(c, Ack)]
        # The retry reached the log too; the machine answered it from its request-id memory.
        assert [a.request_id for a in acks] == ["batch-1.0", "batch-1.1"] * 2


async def test_forwarded_from_a_follower(start):
    async with start(followers=1) as h:
        jobs = await _claimed(h, 2)
        body = {"acks": [{"id": j["id"], "token": j["token"]} for j in jobs]}
        r = await h.post("/v1/ack", body, node="n2")
        assert r.status == 200, r.body
        assert [x["state"] for x in r.body["results"]] == ["succeeded", "succeeded"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "acks"),
        ({"acks": []}, "acks"),
        ({"acks": "x"}, "acks"),
        ({"acks": [1]}, "acks[0]"),
        ({"acks": [{"id": 1}]}, "acks[0].token"),
        ({"acks": [{"token": 1}]}, "acks[0].id"),
        ({"acks": [{"id": 0, "token": 1}]}, "acks[0].id"),
        ({"acks": [{"id": 1, "token": -1}]}, "acks[0].token"),
        ({"acks": [{"id": 1, "token": 1, "extra": 2}]}, "acks[0].extra"),
        ({"acks": [{"id": 1, "token": 1}], "more": 1}, "more"),
    ],
)
async def test_bad_input_is_refused_and_nothing_applied(start, err, body, field):
    async with start() as h:
        jobs = await _claimed(h, 1)
        # A valid first item does not apply when a later one is malformed.
        if isinstance(body.get("acks"), list) and body["acks"] and field != "more":
            body = {"acks": [{"id": jobs[0]["id"], "token": jobs[0]["token"]}, *body["acks"]]}
            field = field.replace("acks[0]", "acks[1]")
        r = await h.post("/v1/ack", body)
        assert r.status == 400, r.body
        code, message = err(r)
        assert code == "invalid"
        assert field in message
        assert not [c for c in h.node.log if isinstance(c, Ack)]


async def test_too_many_acks_are_refused(start, err):
    async with start(settings=ServerSettings(max_batch_jobs=2)) as h:
        body = {"acks": [{"id": i, "token": 1} for i in range(1, 4)]}
        r = await h.post("/v1/ack", body)
        assert r.status == 400
        code, message = err(r)
        assert code == "invalid" and "acks" in message


async def test_not_an_object_and_bad_content(start, err):
    async with start() as h:
        r = await h.post("/v1/ack", [1, 2])
        assert r.status == 400 and err(r)[0] == "invalid"
        r = await h.post("/v1/ack", raw=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status == 400 and err(r)[0] == "malformed"


async def test_a_cluster_failure_fails_the_whole_request_and_a_retry_answers_per_item(start, err):
    async with start() as h:
        jobs = await _claimed(h, 3)
        acks = [{"id": j["id"], "token": j["token"]} for j in jobs]
        acks[1]["token"] += 99  # stale: refused on its own
        body, headers = {"acks": acks}, {"X-Request-Id": "lost-1"}
        # The entry was applied but its answer lost (e.g. leadership moved after the commit).
        h.node.inject(OutcomeUnknown("leader changed"), after_apply=True)
        r = await h.post("/v1/ack", body, headers=headers)
        assert r.status == 503 and err(r)[0] == "outcome_unknown"
        r = await h.post("/v1/ack", body, headers=headers)
        assert r.status == 200, r.body
        states = [x.get("state") or x["error"]["code"] for x in r.body["results"]]
        assert states == ["succeeded", "stale_token", "succeeded"]
        rids = [c.request_id for c in h.node.log if isinstance(c, Ack)]
        assert rids == ["lost-1.0", "lost-1.1", "lost-1.2"] * 2


async def test_a_definite_failure_applies_no_item(start, err):
    async with start() as h:
        jobs = await _claimed(h, 2)
        h.node.inject(Overloaded("queue full"))
        r = await h.post("/v1/ack", {"acks": [{"id": j["id"], "token": j["token"]} for j in jobs]})
        assert r.status == 503 and err(r)[0] == "overloaded"
        assert not [c for c in h.node.log if isinstance(c, Ack)]
        for j in jobs:
            assert (await h.get(f"/v1/jobs/{j['id']}")).body["state"] == "leased"
