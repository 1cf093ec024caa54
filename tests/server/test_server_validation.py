"""Bad input (issue 3 section 5): every class of it is a 4xx JSON error naming the field, and
the node keeps serving others."""

from __future__ import annotations

import asyncio

import msgpack
import pytest

from raftq.server import ServerSettings

BAD_ENQUEUES = [
    # (body, field named in the message)
    ({}, "payload"),
    ({"payload": 1, "priority": True}, "priority"),
    ({"payload": 1, "priority": 1.0}, "priority"),
    ({"payload": 1, "priority": "3"}, "priority"),
    ({"payload": 1, "priority": 10}, "priority"),
    ({"payload": 1, "priority": -1}, "priority"),
    ({"payload": 1, "delay_ms": -5}, "delay_ms"),
    ({"payload": 1, "delay_ms": 10**30}, "delay_ms"),
    ({"payload": 1, "run_at_ms": -1}, "run_at_ms"),
    ({"payload": 1, "delay_ms": 1, "run_at_ms": 1}, "delay_ms"),
    ({"payload": 1, "max_attempts": 0}, "max_attempts"),
    ({"payload": 1, "max_attempts": False}, "max_attempts"),
    ({"payload": 1, "lease_ms": 0}, "lease_ms"),
    ({"payload": 1, "key": ""}, "key"),
    ({"payload": 1, "key": 5}, "key"),
    ({"payload": 1, "key": "k" * 257}, "key"),
    ({"payload": 1, "colour": "red"}, "colour"),
    ({"payload": 2**64}, "payload"),
    ({"payload": {"$bytes": "not base64!"}}, "payload"),
    ({"payload": {"$bytes": 5}}, "payload"),
    ({"jobs": []}, "jobs"),
    ({"jobs": "x"}, "jobs"),
    ({"jobs": [{"payload": 1}, {"payload": 2, "priority": 11}]}, "jobs[1].priority"),
    ({"jobs": [{"payload": 1}, 7]}, "jobs[1]"),
    ({"jobs": [{"payload": 1}], "payload": 3}, "payload"),
]


@pytest.mark.parametrize(("body", "field"), BAD_ENQUEUES)
async def test_bad_enqueue_fields(start, err, body, field):
    async with start() as h:
        r = await h.post("/v1/queues/q/jobs", body)
        assert r.status == 400, r.body
        code, message = err(r)
        assert code == "invalid"
        assert field in message
        assert h.node.log == []  # nothing reached the machine


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[1,", b'{"payload": NaN}', b'{"payload": 1}garbage', b"\xff\xfe", b"[" * 100_000],
)
async def test_malformed_json(start, err, raw):
    async with start() as h:
        r = await h.post("/v1/queues/q/jobs", raw=raw)
        assert r.status == 400
        assert err(r)[0] == "malformed"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1",  # never used
        b"\x92\x01",  # array of 2 with 1 element
        b"\x81\x01\x02",  # map with an int key
        msgpack.packb({"payload": 1}) + b"\x00",  # trailing data
        b"\x91" * 100_000,  # nested too deep
    ],
)
async def test_malformed_msgpack(start, err, raw):
    async with start() as h:
        r = await h.post("/v1/queues/q/jobs", raw=raw, fmt="msgpack")
        assert r.status == 400
        assert err(r)[0] == "malformed"


async def test_msgpack_ext_types_and_non_string_keys_refused(start, err):
    async with start() as h:
        body = {"payload": msgpack.ExtType(5, b"x")}
        r = await h.post("/v1/queues/q/jobs", raw=msgpack.packb(body), fmt="msgpack")
        assert r.status == 400
        body2 = {"payload": {b"k": 1}}
        r = await h.post("/v1/queues/q/jobs", raw=msgpack.packb(body2), fmt="msgpack")
        assert r.status == 400
        assert "payload" in err(r)[1]
        r = await h.post(
            "/v1/queues/q/jobs", raw=msgpack.packb({"payload": float("nan")}), fmt="msgpack"
        )
        assert r.status == 400


@pytest.mark.parametrize("body", [[1, 2], "text", 5, None, True])
async def test_non_object_bodies(start, err, body):
    async with start() as h:
        raw = b"null" if body is None else None
        r = await h.post("/v1/queues/q/jobs", body, raw=raw)
        assert r.status == 400
        code, message = err(r)
        assert code == "invalid"
        assert "body" in message


@pytest.mark.parametrize(
    "queue", ["a%2Fb", "a b", "%C3%A9t%C3%A9", "x" * 129, "a*", "..%2F..", "a%00b"]
)
async def test_odd_queue_names(start, err, queue):
    async with start() as h:
        r = await h.post(f"/v1/queues/{queue}/jobs", {"payload": 1})
        assert r.status == 400, r.body
        code, message = err(r)
        assert code == "invalid"
        assert message.startswith("queue:")
        r = await h.get(f"/v1/queues/{queue}")
        assert r.status == 400
        assert err(r)[0] == "invalid"
        r = await h.post("/v1/claim", {"queues": ["ok", "bad name"], "worker": "w"})
        assert r.status == 400
        assert "queues[1]" in err(r)[1]


async def test_unknown_and_bad_job_ids(start, err):
    async with start() as h:
        for path in ("/v1/jobs/999", "/v1/jobs/123456789012345678"):
            r = await h.get(path)
            assert r.status == 404
            assert err(r)[0] == "not_found"
        r = await h.post("/v1/jobs/999/ack", {"token": 1})
        assert r.status == 404
        assert err(r)[0] == "not_found"
        r = await h.post("/v1/jobs/999/cancel")
        assert r.status == 404
        for bad in ("-1", "abc", "1.5", "0", "99999999999999999999", "0x10"):
            r = await h.get(f"/v1/jobs/{bad}")
            assert r.status == 400, bad
            code, message = err(r)
            assert code == "invalid"
            assert message.startswith("id:")
        r = await h.get("/v1/queues/nope")
        assert r.status == 404
        r = await h.get("/v1/queues/nope/dead")
        assert r.status == 404


async def test_negative_numbers_and_wrong_types(start, err):
    async with start() as h:
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        cases = [
            ("/v1/queues/q/claim", {"worker": "w", "max": -1}, "max"),
            ("/v1/queues/q/claim", {"worker": "w", "max": 0}, "max"),
            ("/v1/queues/q/claim", {"worker": "w", "max": 1001}, "max"),
            ("/v1/queues/q/claim", {"worker": "w", "wait_ms": -1}, "wait_ms"),
            ("/v1/queues/q/claim", {"worker": "w", "lease_ms": -1}, "lease_ms"),
            ("/v1/queues/q/claim", {"worker": ""}, "worker"),
            ("/v1/queues/q/claim", {"worker": 3}, "worker"),
            ("/v1/queues/q/claim", {}, "worker"),
            ("/v1/claim", {"worker": "w"}, "queues"),
            ("/v1/claim", {"worker": "w", "queues": []}, "queues"),
            ("/v1/claim", {"worker": "w", "queues": "q"}, "queues"),
            ("/v1/jobs/1/ack", {"token": -1}, "token"),
            ("/v1/jobs/1/ack", {"token": "1"}, "token"),
            ("/v1/jobs/1/ack", {"token": True}, "token"),
            ("/v1/jobs/1/ack", {}, "token"),
            ("/v1/jobs/1/ack", {"token": 2**64}, "token"),
            ("/v1/jobs/1/heartbeat", {"token": 1, "lease_ms": -1}, "lease_ms"),
            ("/v1/jobs/1/nack", {"token": 1, "retry_in_ms": -1}, "retry_in_ms"),
            ("/v1/jobs/1/nack", {"token": 1, "error": 5}, "error"),
            ("/v1/jobs/1/cancel", {"force": True}, "force"),
            ("/v1/queues/q/pause", {"x": 1}, "x"),
            ("/v1/queues/q/dead/requeue", {"ids": [1, -2]}, "ids[1]"),
            ("/v1/queues/q/dead/requeue", {"ids": "all"}, "ids"),
        ]
        for path, body, field in cases:
            r = await h.post(path, body)
            assert r.status == 400, (path, body, r.body)
            code, message = err(r)
            assert code == "invalid", (path, body)
            assert field in message, (path, body, message)
        for query, field in [
            ("limit=-1", "limit"),
            ("limit=0", "limit"),
            ("limit=x", "limit"),
            ("after=-3", "after"),
            ("sort=asc", "sort"),
        ]:
            r = await h.get(f"/v1/queues/q/dead?{query}")
            assert r.status == 400, query
            assert field in err(r)[1]
        r = await h.get("/v1/jobs/1?consistency=eventual")
        assert r.status == 400
        assert "consistency" in err(r)[1]


async def test_stale_token_lease_expired_and_finished_are_409(start, err):
    async with start() as h:
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        job = (await h.post("/v1/queues/q/claim", {"worker": "w", "lease_ms": 1000})).body["jobs"][
            0
        ]
        r = await h.post("/v1/jobs/1/ack", {"token": job["token"] + 1})
        assert r.status == 409
        assert err(r)[0] == "stale_token"
        h.node.advance(2000)
        r = await h.post("/v1/jobs/1/heartbeat", {"token": job["token"]})
        assert r.status == 409
        assert err(r)[0] == "lease_expired"
        await h.post("/v1/queues/q/jobs", {"payload": 2})
        await h.post("/v1/jobs/2/cancel")
        r = await h.post("/v1/jobs/2/cancel")
        assert r.status == 409
        assert err(r)[0] == "finished"


async def test_too_large_body_and_payload(start, err):
    settings = ServerSettings(max_body_bytes=64 * 1024, max_payload_bytes=1024)
    async with start(settings=settings) as h:
        r = await h.post("/v1/queues/q/jobs", {"payload": "x" * 2000})
        assert r.status == 413
        code, message = err(r)
        assert code == "payload_too_large"
        assert "payload" in message
        r = await h.post("/v1/queues/q/jobs", {"payload": "x" * 100_000})
        assert r.status == 413
        assert err(r)[0] == "body_too_large"
        await h.post("/v1/queues/q/jobs", {"payload": 1})
        job = (await h.post("/v1/queues/q/claim", {"worker": "w"})).body["jobs"][0]
        r = await h.post(
            "/v1/jobs/1/ack", {"token": job["token"], "result": b"x" * 2000}, fmt="msgpack"
        )
        assert r.status == 413
        assert "result" in err(r)[1]
        r = await h.post("/v1/queues/q/jobs", {"jobs": [{"payload": i} for i in range(1001)]})
        assert r.status == 400
        assert "jobs" in err(r)[1]
        # Still serving.
        r = await h.post("/v1/queues/q/jobs", {"payload": "fine"})
        assert r.status == 201


async def test_huge_body_without_content_length(start, err):
    settings = ServerSettings(max_body_bytes=64 * 1024)
    async with start(settings=settings) as h:

        async def chunks():
            for _ in range(100):
                yield b"x" * 4096

        async with h.session.post(
            h.url("/v1/queues/q/jobs"),
            data=chunks(),
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 413
            body = await resp.json()
            assert body["error"]["code"] == "body_too_large"
        r = await h.post("/v1/queues/q/jobs", {"payload": 1})
        assert r.status == 201


async def test_bad_request_ids_and_content_types(start, err):
    async with start() as h:
        for rid in ("", "a" * 101, "has space", "ünï"):
            r = await h.post(
                "/v1/queues/q/jobs",
                {"payload": 1},
                headers={"X-Request-Id": rid.encode().decode("latin-1")},
            )
            assert r.status == 400, rid
            assert "X-Request-Id" in err(r)[1]
        r = await h.post(
            "/v1/queues/q/jobs", raw=b"payload=1", headers={"Content-Type": "text/xml"}
        )
        assert r.status == 415
        assert err(r)[0] == "unsupported_media_type"


async def test_framework_errors_have_the_error_shape(start, err):
    async with start() as h:
        r = await h.get("/v2/nothing")
        assert r.status == 404
        assert err(r)[0] == "no_route"
        r = await h.request("DELETE", "/v1/jobs/1")
        assert r.status == 405
        assert err(r)[0] == "method_not_allowed"
        assert "GET" in r.headers["Allow"]
        r = await h.get("/v2/nothing", fmt="msgpack")
        assert r.status == 404
        assert r.body["error"]["code"] == "no_route"


async def test_internal_errors_are_contained(start, err):
    async with start() as h:
        h.node.inject(RuntimeError("bug in the node"))
        r = await h.post("/v1/queues/q/jobs", {"payload": 1})
        assert r.status == 500
        assert err(r) == ("internal", "internal error")
        r = await h.post("/v1/queues/q/jobs", {"payload": 1})
        assert r.status == 201


async def test_bad_input_flood_leaves_others_served(start, err):
    async with start() as h:
        bad = [b"{", b"[]", b"\x00" * 1000, b'{"payload": 1, "priority": "x"}'] * 25
        good = [h.post("/v1/queues/q/jobs", {"payload": i}) for i in range(20)]
        replies = await asyncio.gather(*(h.post("/v1/queues/q/jobs", raw=b) for b in bad), *good)
        assert all(r.status == 400 for r in replies[: len(bad)])
        assert all(r.status == 201 for r in replies[len(bad) :])
        assert h.node.machine.queue_stats("q").depth["queued"] == 20
