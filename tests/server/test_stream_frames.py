"""The worker stream's frame validation (``raftq.server.stream``): every bad frame is refused
with reason ``invalid`` and a message naming the cause; good frames pass as maps."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from aiohttp import WSMsgType

from raftq.server.stream import StreamError, decode_frame, parse_credit

BINARY = WSMsgType.BINARY


def _refused(msg_type: WSMsgType, data: Any) -> StreamError:
    with pytest.raises(StreamError) as refused:
        decode_frame(msg_type, data)
    assert refused.value.reason == "invalid"
    frame = refused.value.frame()
    assert frame == {"op": "error", "error": {"reason": "invalid", "message": str(refused.value)}}
    return refused.value


@pytest.mark.parametrize(
    ("msg_type", "data", "cause"),
    [
        (WSMsgType.TEXT, '{"op": "credit", "n": 1}', "msgpack maps in binary"),
        (BINARY, b"\xc1", "not valid msgpack"),
        (BINARY, b"\x92\x01\x02", "expected a map"),
        (BINARY, msgpack.packb({"n": 1}), "frame.op"),
        (BINARY, msgpack.packb({"op": "jobs"}), "frame.op"),  # a server frame
        (BINARY, msgpack.packb({"op": 1}), "frame.op"),
        (BINARY, msgpack.packb({1: "credit"}), "not valid msgpack"),  # keys must be str
        (BINARY, msgpack.packb({"op": "ack", "x": msgpack.ExtType(1, b"")}), "ext type"),
    ],
)
def test_bad_frames_are_refused_naming_the_cause(
    msg_type: WSMsgType, data: Any, cause: str
) -> None:
    assert cause in _refused(msg_type, data).message


def test_deep_nesting_is_refused() -> None:
    deep = b"\x81\xa2op" + b"\x91" * 200_000 + b"\x01"  # {"op": [[[...1...]]]}
    assert "not valid msgpack" in _refused(BINARY, deep).message


@pytest.mark.parametrize("op", ["subscribe", "credit", "ack", "nack", "heartbeat"])
def test_each_client_op_decodes(op: str) -> None:
    assert decode_frame(BINARY, msgpack.packb({"op": op, "seq": 1})) == {"op": op, "seq": 1}


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, True), (5, True), (1_000_000, True), (-1, False), (1_000_001, False), ("5", False),
     (True, False), (1.0, False), (None, False)],
)  # fmt: skip
def test_credit_is_an_integer_in_range(value: Any, ok: bool) -> None:
    if ok:
        assert parse_credit({"n": value}, "n") == value
    else:
        with pytest.raises(StreamError, match=r"frame\.n") as refused:
            parse_credit({"n": value}, "n")
        assert refused.value.reason == "invalid"
