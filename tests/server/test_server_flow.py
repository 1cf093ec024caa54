"""Dependencies and batches over HTTP: ``depends_on`` with ids and ``"@N"``, the claim's
``parents``, ``GET /v1/jobs/{id}`` showing dependencies and batch, ``POST/GET /v1/batches``,
and one clear 4xx per bad input."""

from __future__ import annotations

from typing import Any

from raftq.core import EnableVersion
from tests.server.conftest import Harness, error_of
from tests.server.test_server_observability import scrape, value


async def _v3(h: Harness) -> None:
    await h.node.submit(EnableVersion(now_ms=h.node.now_ms(), version=3))


async def _claim(h: Harness, queue: str = "q") -> list[dict[str, Any]]:
    r = await h.post(f"/v1/queues/{queue}/claim", {"worker": "w", "max": 10})
    assert r.status == 200, r.body
    return list(r.body["jobs"])


async def test_depends_on_releases_with_the_parents_results(start: Any) -> None:
    async with start() as h:
        await _v3(h)
        body = {
            "jobs": [
                {"payload": "a"},
                {"payload": "b"},
                {"payload": "c", "depends_on": ["@0", "@1"]},
            ]
        }
        r = await h.post("/v1/queues/q/jobs", body)
        assert r.status == 201, r.body
        a, b, c = r.body["ids"]
        r = await h.get(f"/v1/jobs/{c}")
        assert r.body["state"] == "waiting"
        m = await scrape(h)
        assert value(m, "raftq_queue_jobs", queue="q", state="waiting") == 1
        assert [d["state"] for d in r.body["dependencies"]] == ["pending", "pending"]
        jobs = await _claim(h)
        assert sorted(j["id"] for j in jobs) == [a, b]
        for j in jobs:
            r = await h.post(
                f"/v1/jobs/{j['id']}/ack", {"token": j["token"], "result": j["payload"]}
            )
            assert r.status == 200, r.body
        (released,) = await _claim(h)
        assert released["id"] == c
        assert released["parents"] == {str(a): "a", str(b): "b"}
        assert released["parent_states"] == {str(a): "succeeded", str(b): "succeeded"}
        # A single job may depend on ids too.
        r = await h.post("/v1/queues/q/jobs", {"payload": "d", "depends_on": [c]})
        assert r.status == 201 and set(r.body) == {"id", "existing"}


async def test_bad_dependencies_get_one_clear_4xx(start: Any) -> None:
    async with start() as h:
        await _v3(h)
        cases = [
            ({"jobs": [{"payload": 1, "depends_on": ["@x"]}]}, 400, "jobs[0].depends_on[0]"),
            ({"jobs": [{"payload": 1, "depends_on": ["@0"]}]}, 400, "does not name another"),
            ({"payload": 1, "on_dependency_failure": "maybe"}, 400, "on_dependency_failure"),
            ({"payload": 1, "depends_on": [424242]}, 404, "no job 424242"),
            (
                {
                    "jobs": [
                        {"payload": 1, "depends_on": ["@1"]},
                        {"payload": 2, "depends_on": ["@0"]},
                    ]
                },
                400,
                "cycle",
            ),
        ]
        for body, status, words in cases:
            r = await h.post("/v1/queues/q/jobs", body)
            assert r.status == status, (body, r.body)
            _, message = error_of(r)
            assert words in message and "\n" not in message


async def test_batch_counts_and_callback_with_every_result(start: Any) -> None:
    async with start() as h:
        await _v3(h)
        body = {
            "queue": "q",
            "jobs": [{"payload": 1}, {"payload": 2, "queue": "r"}],
            "on_success": {"queue": "done", "payload": "fan-in"},
        }
        r = await h.post("/v1/batches", body)
        assert r.status == 201, r.body
        batch, ids = r.body["batch"], r.body["ids"]
        r = await h.get(f"/v1/batches/{batch}")
        assert r.status == 200 and r.body["counts"]["queued"] == 2 and r.body["done"] is False
        m = await scrape(h)
        assert value(m, "raftq_batches_open") == 1
        for queue in ("q", "r"):
            (job,) = await _claim(h, queue)
            await h.post(
                f"/v1/jobs/{job['id']}/ack", {"token": job["token"], "result": job["payload"] * 10}
            )
        r = await h.get(f"/v1/batches/{batch}")
        assert r.body["counts"]["succeeded"] == 2 and r.body["fired"] == [
            "on_complete",
            "on_success",
        ]
        (callback,) = await _claim(h, "done")
        assert callback["payload"] == "fan-in"
        assert callback["parents"] == {str(ids[0]): 10, str(ids[1]): 20}
        r = await h.get(f"/v1/jobs/{ids[0]}")
        assert r.body["batch"] == batch
        assert value(await scrape(h), "raftq_batches_open") == 0
        r = await h.get("/v1/batches/999")
        assert r.status == 404
        r = await h.post("/v1/batches", {"jobs": [{"payload": 1}]})
        assert r.status == 400 and "jobs[0].queue" in error_of(r)[1]
