"""A request id reused for another operation (found by the schemathesis fuzz of issue 9)."""

from __future__ import annotations

from tests.server.conftest import StartFn, error_of


async def test_request_id_reused_for_another_operation_is_a_409(start: StartFn) -> None:
    """Bug fixed: the state machine answers a known request id with its first result, so an
    id reused for another kind of operation came back as that result: a 500 ``internal``
    ("unexpected result Enqueued"), or, for pause then resume, a 200 claiming the queue was
    resumed while the replayed pause had done nothing."""
    async with start() as h:
        first = await h.post("/v1/queues/q/jobs", {"payload": 1}, headers={"X-Request-Id": "x1"})
        assert first.status == 201
        again = await h.post("/v1/queues/q/pause", {}, headers={"X-Request-Id": "x1"})
        assert again.status == 409, again.body
        assert error_of(again)[0] == "request_id_reused"
        assert (await h.get("/v1/queues/q")).body["paused"] is False

        assert (await h.post("/v1/queues/q/pause", headers={"X-Request-Id": "p1"})).status == 200
        resumed = await h.post("/v1/queues/q/resume", headers={"X-Request-Id": "p1"})
        assert resumed.status == 409, resumed.body
        assert (await h.get("/v1/queues/q")).body["paused"] is True
        # the same operation retried with its id still answers as before
        retry = await h.post("/v1/queues/q/jobs", {"payload": 1}, headers={"X-Request-Id": "x1"})
        assert retry.status == 201 and retry.body["id"] == first.body["id"]
