"""Happy paths of every route, in JSON and msgpack."""

from __future__ import annotations

import pytest

from raftq.core import Claim, Enqueue

FORMATS = ["json", "msgpack"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_enqueue_claim_ack_roundtrip(start, fmt):
    async with start() as h:
        payload = {"to": "a@example.com", "n": [1, 2.5, None, True], "s": "é"}
        r = await h.post("/v1/queues/emails/jobs", {"payload": payload, "priority": 7}, fmt=fmt)
        assert r.status == 201, r.body
        assert r.body == {"id": 1, "existing": False}
        assert r.headers["Content-Type"].startswith(
            "application/msgpack" if fmt == "msgpack" else "application/json"
        )
        r = await h.post("/v1/queues/emails/claim", {"worker": "w1"}, fmt=fmt)
        assert r.status == 200, r.body
        (job,) = r.body["jobs"]
        assert job["id"] == 1
        assert job["queue"] == "emails"
        assert job["payload"] == payload
        assert job["priority"] == 7
        assert job["attempt"] == 1
        assert job["token"] >= 1
        assert job["lease_expires_ms"] > 0
        r = await h.post("/v1/jobs/1/ack", {"token": job["token"], "result": {"ok": 1}}, fmt=fmt)
        assert r.status == 200, r.body
        assert r.body == {"id": 1, "state": "succeeded"}
        r = await h.get("/v1/jobs/1", fmt=fmt)
        assert r.status == 200
        for key in (
            "id",
            "queue",
            "state",
            "priority",
            "attempts",
            "max_attempts",
            "payload",
            "result",
            "error",
            "run_at_ms",
            "created_ms",
        ):
            assert key in r.body
        assert r.body["state"] == "succeeded"
        assert r.body["result"] == {"ok": 1}
        assert r.body["payload"] == payload


async def test_bytes_payload_json_and_msgpack(start):
    async with start() as h:
        blob = bytes(range(256))
        r = await h.post("/v1/queues/q/jobs", {"payload": blob}, fmt="msgpack")
        assert r.status == 201
        # The same bytes through JSON, tagged.
        r = await h.post("/v1/queues/q/jobs", {"payload": {"nested": {"$bytes": "AAEC"}}})
        assert r.status == 201
        r = await h.get("/v1/jobs/1")
        assert r.body["payload"]["$bytes"]
        r = await h.get("/v1/jobs/1", fmt="msgpack")
        assert r.body["payload"] == blob
        r = await h.get("/v1/jobs/2", fmt="msgpack")
        assert r.body["payload"] == {"nested": b"\x00\x01\x02"}
        r = await h.get("/v1/jobs/2")
        assert r.body["payload"] == {"nested": {"$bytes": "AAEC"}}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_enqueue_many_and_options(start, fmt):
    async with start() as h:
        jobs = [
            {"payload": 1},
            {"payload": 2, "priority": 9, "key": "k", "max_attempts": 2, "lease_ms": 500},
            {"payload": 3, "delay_ms": 60_000},
            {"payload": 4, "run_at_ms": h.node.now_ms() + 60_000},
        ]
        r = await h.post("/v1/queues/q/jobs", {"jobs": jobs}, fmt=fmt)
        assert r.status == 201, r.body
        assert r.body == {"ids": [1, 2, 3, 4], "existing": [False] * 4}
        # Same key while live: the existing job, nothing created.
        r = await h.post("/v1/queues/q/jobs", {"payload": 5, "key": "k"}, fmt=fmt)
        assert r.body == {"id": 2, "existing": True}
        r = await h.get("/v1/queues/q", fmt=fmt)
        assert r.body["depth"]["queued"] == 2
        assert r.body["depth"]["delayed"] == 2
        assert r.body["by_priority"]["9"] == 1
        r = await h.post("/v1/queues/q/claim", {"worker": "w", "max": 10}, fmt=fmt)
        assert [j["id"] for j in r.body["jobs"]] == [2, 1]  # priority 9 first
        assert r.body["jobs"][0]["lease_expires_ms"] - h.node.machine.clock_ms <= 500


async def test_claim_over_several_queues(start):
    async with start() as h:
        await h.post("/v1/queues/a/jobs", {"payload": "a", "priority": 1})
        await h.post("/v1/queues/b/jobs", {"payload": "b", "priority": 5})
        r = await h.post("/v1/claim", {"queues": ["a", "b"], "worker": "w", "max": 1})
        assert r.status == 200
        assert [j["payload"] for j in r.body["jobs"]] == ["b"]
        r = await h.post(
            "/v1/claim", {"queues": ["a", "b"], "worker": "w", "max": 5, "lease_ms": 1000}
        )
        assert [j["payload"] for j in r.body["jobs"]] == ["a"]


async def test_heartbeat_nack_cancel(start):
    async with start() as h:
        await h.post("/v1/queues/q/jobs", {"payload": 1, "max_attempts": 2})
        job = (await h.post("/v1/queues/q/claim", {"worker": "w"})).body["jobs"][0]
        r = await h.post("/v1/jobs/1/heartbeat", {"token": job["token"], "lease_ms": 90_000})
        assert r.status == 200, r.body
        assert r.body["id"] == 1
        assert r.body["lease_expires_ms"] >= job["lease_expires_ms"]
        r = await h.post(
            "/v1/jobs/1/nack", {"token": job["token"], "error": "boom", "retry_in_ms": 0}
        )
        assert r.status == 200, r.body
        assert r.body["id"] == 1
        assert r.body["state"] == "queued"
        assert isinstance(r.body["run_at_ms"], int)
        job = (await h.post("/v1/queues/q/claim", {"worker": "w"})).body["jobs"][0]
        assert job["attempt"] == 2
        r = await h.post("/v1/jobs/1/nack", {"token": job["token"], "error": "again"})
        assert r.body == {"id": 1, "state": "dead", "run_at_ms": None}
        await h.post("/v1/queues/q/jobs", {"payload": 2})
        r = await h.post("/v1/jobs/2/cancel")
        assert r.status == 200
        assert r.body == {"id": 2, "state": "cancelled"}
        r = await h.get("/v1/jobs/1")
        assert r.body["state"] == "dead"
        assert r.body["error"] == "again"


async def test_queue_admin_and_dead_letters(start):
    async with start() as h:
        for i in range(3):
            await h.post("/v1/queues/q/jobs", {"payload": i, "max_attempts": 1})
        jobs = (await h.post("/v1/queues/q/claim", {"worker": "w", "max": 3})).body["jobs"]
        for j in jobs:
            await h.post(f"/v1/jobs/{j['id']}/nack", {"token": j["token"], "error": "x"})
        r = await h.get("/v1/queues/q/dead")
        assert r.status == 200
        assert [j["id"] for j in r.body["jobs"]] == [1, 2, 3]
        assert r.body["next_after"] is None
        r = await h.get("/v1/queues/q/dead?limit=2")
        assert [j["id"] for j in r.body["jobs"]] == [1, 2]
        assert r.body["next_after"] == 2
        r = await h.get("/v1/queues/q/dead?limit=2&after=2")
        assert [j["id"] for j in r.body["jobs"]] == [3]
        # An id that names no job of the queue refuses the whole request, naming it (issue
        # 20: `raftq dead q --requeue 99999` printed "requeued 0 job(s)" and exited 0).
        r = await h.post("/v1/queues/q/dead/requeue", {"ids": [1, 99]})
        assert r.status == 404
        assert r.body["error"] == {"code": "not_found", "message": "no job 99 in queue 'q'"}
        r = await h.post("/v1/queues/other/dead/requeue", {"ids": [1]})
        assert (r.status, r.body["error"]["message"]) == (404, "no job 1 in queue 'other'")
        r = await h.post("/v1/queues/q/dead/requeue", {"ids": [1, 1]})
        assert r.body == {"queue": "q", "requeued": 1}
        r = await h.post("/v1/queues/q/dead/requeue", {"ids": [1]})  # no longer dead: skipped
        assert r.body == {"queue": "q", "requeued": 0}
        r = await h.post("/v1/queues/q/dead/requeue")
        assert r.body == {"queue": "q", "requeued": 2}
        r = await h.post("/v1/queues/q/pause")
        assert r.body == {"queue": "q", "paused": True}
        assert (await h.get("/v1/queues/q")).body["paused"] is True
        r = await h.post("/v1/queues/q/claim", {"worker": "w"})
        assert r.body == {"jobs": []}
        r = await h.post("/v1/queues/q/resume", {})
        assert r.body == {"queue": "q", "paused": False}
        r = await h.post("/v1/queues/q/purge")
        assert r.body == {"queue": "q", "purged": 3}
        r = await h.get("/v1/queues")
        assert r.status == 200
        assert [q["queue"] for q in r.body["queues"]] == ["q"]
        q = r.body["queues"][0]
        assert set(q["depth"]) >= {"queued", "delayed", "leased", "dead"}
        assert q["depth"]["queued"] == 0


async def test_cluster_health_ready_and_index(start):
    async with start(followers=1) as h:
        r = await h.get("/v1/cluster")
        assert r.status == 200
        assert set(r.body["self"]) >= {
            "id",
            "role",
            "term",
            "commit_index",
            "applied_index",
            "digest",
        }
        assert r.body["self"]["role"] == "leader"
        assert r.body["leader"] == "n1"
        assert r.body["leader_api"] == h.addresses["n1"]
        assert [n["id"] for n in r.body["nodes"]] == ["n1", "n2"]
        assert set(r.body["nodes"][0]) == {"id", "api", "raft", "reachable"}
        r = await h.get("/v1/cluster", node="n2")
        assert r.body["self"]["id"] == "n2"
        assert r.body["self"]["role"] == "follower"
        assert (await h.get("/healthz")).status == 200
        assert (await h.get("/readyz")).status == 200
        h.nodes["n2"].ready = False
        r = await h.get("/readyz", node="n2")
        assert r.status == 503
        assert r.body["error"]["code"] == "not_ready"
        assert r.headers["Retry-After"] == "1"
        r = await h.get("/")
        assert r.status == 200
        assert r.body["service"] == "raftq"
        assert "POST /v1/queues/{queue}/jobs" in r.body["routes"]


async def test_headers_and_command_stamping(start):
    async with start() as h:
        r = await h.post(
            "/v1/queues/q/jobs", {"payload": 1}, headers={"X-Request-Id": "req-1.a:b_c"}
        )
        assert r.headers["X-Raftq-Leader"] == h.addresses["n1"]
        assert r.headers["X-Raftq-Node"] == "n1"
        cmd = h.node.log[-1]
        assert isinstance(cmd, Enqueue)
        assert cmd.request_id == "req-1.a:b_c"
        assert abs(cmd.now_ms - h.node.now_ms()) < 5_000
        # The same request id again: the first answer, nothing applied twice.
        again = await h.post(
            "/v1/queues/q/jobs", {"payload": 1}, headers={"X-Request-Id": "req-1.a:b_c"}
        )
        assert again.body == r.body
        assert h.node.machine.queue_stats("q").depth["queued"] == 1
        await h.post("/v1/queues/q/claim", {"worker": "w"})
        assert isinstance(h.node.log[-1], Claim)
        assert h.node.log[-1].request_id is None


async def test_accept_header_chooses_response_format(start):
    async with start() as h:
        r = await h.post(
            "/v1/queues/q/jobs",
            {"payload": 1},
            headers={"Accept": "application/msgpack"},
        )
        assert r.headers["Content-Type"].startswith("application/msgpack")
        assert r.body == {"id": 1, "existing": False}
        # msgpack body, JSON answer asked for.
        r = await h.post(
            "/v1/queues/q/jobs",
            {"payload": 2},
            fmt="msgpack",
            headers={"Accept": "application/json"},
        )
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.body == {"id": 2, "existing": False}
        # msgpack body and no preference: msgpack answer.
        r = await h.post(
            "/v1/queues/q/jobs", {"payload": 3}, fmt="msgpack", headers={"Accept": "*/*"}
        )
        assert r.headers["Content-Type"].startswith("application/msgpack")
        assert r.body == {"id": 3, "existing": False}
