"""Unit tests of the server's pieces: error mapping, settings, value encoding, mounting."""

from __future__ import annotations

import aiohttp
import msgpack
import pytest
from aiohttp import web

from raftq.core import Reason
from raftq.errors import ConfigError, Rejected
from raftq.server import ServerSettings, add_routes
from raftq.server.errors import REASON_STATUS, ApiError
from raftq.server.wire import MAX_DEPTH, decode_body, pack_value, unpack_value
from raftq.service.fields import INT64_MAX, Fields
from raftq.service.operations import plain_ack as _plain_ack
from tests.support.local_node import LocalNode, serve


def test_every_core_reason_has_a_status():
    assert set(REASON_STATUS) == set(Reason)
    assert REASON_STATUS[Reason.NOT_FOUND] == 404
    assert REASON_STATUS[Reason.STALE_TOKEN] == 409
    assert all(REASON_STATUS[r] == 400 for r in (Reason.MALFORMED, Reason.INVALID))


def test_settings_defaults_and_validation():
    s = ServerSettings()
    assert s.max_body_bytes == 16 * 1024 * 1024
    assert s.max_payload_bytes == 1024 * 1024
    assert s.max_batch_jobs == 1000
    assert s.max_wait_ms == 60_000
    assert s.submit_timeout_ms == 10_000
    assert s.forward_timeout_ms == 15_000
    with pytest.raises(ConfigError) as e:
        ServerSettings(max_wait_ms=-1, max_batch_jobs=True, max_payload_bytes=10**12)
    assert len(e.value.problems) == 3
    assert "server.max_wait_ms" in str(e.value)


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**63), 2**64 - 1, 1.5, "é", b"\x00\xff", [1, [2, {"a": b"x"}]], {"k": {}}],
)
def test_values_roundtrip(value):
    raw = pack_value(value, "msgpack", "payload", 1 << 20)
    assert unpack_value(raw) == value


def test_json_bytes_tag_and_limits():
    raw = pack_value({"a": {"$bytes": "AP8="}}, "json", "payload", 100)
    assert unpack_value(raw) == {"a": b"\x00\xff"}
    # In msgpack the tag means nothing: an ordinary map.
    raw = pack_value({"$bytes": "AP8="}, "msgpack", "payload", 100)
    assert unpack_value(raw) == {"$bytes": "AP8="}
    with pytest.raises(Rejected) as e:
        pack_value("x" * 200, "json", "payload", 100)
    assert e.value.status == 413
    deep: object = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(Rejected) as e:
        pack_value(deep, "json", "payload", 1 << 20)
    assert e.value.status == 400
    assert "nested" in e.value.message


def test_unpack_value_hands_back_foreign_bytes():
    assert unpack_value(b"\xc1") == b"\xc1"  # not msgpack
    assert unpack_value(msgpack.packb(1) + b"\x01") == msgpack.packb(1) + b"\x01"
    assert unpack_value(None) is None


def test_decode_body():
    assert decode_body(b"", "json") == {}
    assert decode_body(b"  ", "msgpack") == {}
    assert decode_body(b'{"a": 1}', "json") == {"a": 1}
    with pytest.raises(ApiError) as e:
        decode_body(b'{"a": Infinity}', "json")
    assert e.value.code == "malformed"
    with pytest.raises(ApiError):
        decode_body(b"1" * 5000, "json")  # beyond int's digit limit


async def test_add_routes_mounts_under_a_prefix_on_a_users_app():
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="user route")

    app = web.Application()
    app.router.add_get("/hello", hello)
    node = LocalNode()
    add_routes(app, node, ServerSettings(), prefix="/raftq")
    async with serve(app) as address, aiohttp.ClientSession() as s:
        node.set_address("n1", address)
        async with s.post(f"http://{address}/raftq/v1/queues/q/jobs", json={"payload": 1}) as r:
            assert r.status == 201
            assert r.headers["X-Raftq-Leader"] == address
        async with s.get(f"http://{address}/raftq/v1/jobs/1") as r:
            assert (await r.json())["payload"] == 1
        async with s.get(f"http://{address}/raftq") as r:
            assert "POST /raftq/v1/queues/{queue}/jobs" in (await r.json())["routes"]
        async with s.get(f"http://{address}/hello") as r:
            assert await r.text() == "user route"
        # The user's own 404s are left alone (no middleware was added to their app).
        async with s.get(f"http://{address}/nothing") as r:
            assert r.status == 404
            assert not r.headers["Content-Type"].startswith("application/json")


def test_add_routes_refuses_a_bad_prefix():
    for prefix in ("raftq", "/raftq/"):
        with pytest.raises(ValueError):
            add_routes(web.Application(), LocalNode(), ServerSettings(), prefix=prefix)


def _ack_by_fields(item):
    g = Fields(item, "acks[0]")
    job_id, token, value = g.req_int("id", 1), g.req_int("token"), g.raw("result")
    g.done()
    return job_id, token, value


@pytest.mark.parametrize(
    "item",
    [
        {"id": 1, "token": 0},
        {"id": INT64_MAX, "token": INT64_MAX, "result": {"ok": [1]}},
        {"token": 5, "id": 7, "result": None},
        {"id": 7, "token": 5, "result": b"\x00"},
        {"id": 0, "token": 5},
        {"id": INT64_MAX + 1, "token": 5},
        {"id": 7, "token": -1},
        {"id": True, "token": 5},
        {"id": 7, "token": 5.0},
        {"id": "7", "token": 5},
        {"id": 7},
        {"token": 5},
        {"id": 7, "token": 5, "extra": 1},
        {"id": 7, "token": 5, "result": 1, "extra": 1},
        {"id": 7, "token": 5, 3: 1},
        {"id": 7, "token": None},
        {},
        [7, 5],
        None,
    ],
)
def test_the_plain_ack_shortcut_agrees_with_fields(item):
    """``_plain_ack`` (the batched ack's shortcut) accepts only what ``Fields`` accepts, with
    the same values; anything else goes to ``Fields`` for its error."""
    try:
        expected = _ack_by_fields(item)
    except Rejected:
        expected = None
    got = _plain_ack(item)
    assert got == expected
    if expected is not None:
        assert got is not None and got[2] is expected[2]  # the result itself, not a copy
