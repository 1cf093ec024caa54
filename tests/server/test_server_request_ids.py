"""A request id reused for another operation (found by the schemathesis fuzz of issue 9)."""

from __future__ import annotations

import hashlib

from raftq.config import Role, TokenConfig
from raftq.core.limits import MAX_REQUEST_ID_CHARS
from raftq.service.request_ids import principal_of_token, scoped
from tests.server.conftest import StartFn, error_of
from tests.support.memory_cluster import ON_BOTH


@ON_BOTH
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


def test_request_ids_are_scoped_by_principal() -> None:
    """The edge keys a request id by who sent it (issue 17, finding 5); the scoped id of the
    longest header, with a long-poll round's or a batch item's suffix, fits the machine's
    limit."""
    assert scoped("x", None) == "x"  # auth off: one caller
    a, b = scoped("x", "worker-a"), scoped("x", "worker-b")
    assert a != b
    assert a == scoped("x", "worker-a") and a.endswith(":x")
    longest = scoped("r" * 100, "worker-a")
    assert len(f"{longest}.999999999") <= MAX_REQUEST_ID_CHARS
    token = TokenConfig(
        name="worker-a", sha256=hashlib.sha256(b"secret-token").hexdigest(), role=Role.WORKER
    )
    assert principal_of_token((token,), "secret-token") == "worker-a"
    assert principal_of_token((token,), "other") is None
    assert principal_of_token((), "secret-token") is None
