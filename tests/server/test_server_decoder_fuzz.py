"""Hypothesis fuzz of the msgpack request decoder: random and truncated bytes are refused with
a 4xx (never a crash, never a 5xx) and never reach the state machine.

(The replicated entry codec has its own fuzz in tests/core/test_codec.py.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftq.server import create_app
from raftq.server.errors import ApiError
from raftq.server.wire import decode_body
from tests.support.local_node import LocalNode, serve

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip

# Bodies the routes would accept, to truncate: the shapes of DESIGN.md section 4.
_valid_bodies = st.sampled_from(
    [
        {"payload": {"to": "a@b.c", "n": 1}, "priority": 3},
        {"jobs": [{"payload": b"\x00\x01"}, {"payload": [1, 2, 3], "delay_ms": 5}]},
        {"worker": "w1", "max": 5, "wait_ms": 0},
        {"token": 12, "result": {"ok": True}},
        {"token": 3, "error": "boom", "retry_in_ms": 10},
    ]
)


@st.composite
def _hostile(draw: st.DrawFn) -> bytes:
    """Random bytes, or a valid body's encoding cut short (or with junk appended)."""
    kind = draw(st.sampled_from(["random", "truncated", "trailing", "value"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=200))
    if kind == "value":
        return msgpack.packb(draw(_values), use_bin_type=True)
    raw = msgpack.packb(draw(_valid_bodies), use_bin_type=True)
    if kind == "truncated":
        return raw[: draw(st.integers(1, len(raw) - 1))]
    return raw + draw(st.binary(min_size=1, max_size=8))


@given(_hostile())
@settings(max_examples=300, deadline=None)
def test_decoder_refuses_with_400_or_decodes(raw: bytes) -> None:
    try:
        decode_body(raw, "msgpack")
    except ApiError as e:
        assert e.status == 400 and e.code == "malformed", (e.status, e.code)


_ROUTES = [
    "/v1/queues/fz/jobs",
    "/v1/queues/fz/claim",
    "/v1/claim",
    "/v1/jobs/1/heartbeat",
    "/v1/jobs/1/ack",
    "/v1/jobs/1/nack",
    "/v1/jobs/1/cancel",
    "/v1/queues/fz/pause",
    "/v1/queues/fz/dead/requeue",
]


async def _post_all(bodies: list[tuple[str, bytes]]) -> list[tuple[str, int, Any, int]]:
    """POST each body to a fresh in-process node: (route, status, error code, new log entries)."""
    node = LocalNode("n1")
    out = []
    async with serve(create_app(node)) as address, aiohttp.ClientSession() as session:
        for route, raw in bodies:
            before = len(node.log)
            async with session.post(
                f"http://{address}{route}",
                data=raw,
                headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"},
            ) as resp:
                body = msgpack.unpackb(await resp.read(), raw=False)
                code = body.get("error", {}).get("code") if isinstance(body, dict) else None
                out.append((route, resp.status, code, len(node.log) - before))
    return out


@given(st.lists(st.tuples(st.sampled_from(_ROUTES), _hostile()), min_size=1, max_size=20))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_bodies_never_5xx_and_never_reach_the_state_machine(
    bodies: list[tuple[str, bytes]],
) -> None:
    for route, status, code, appended in asyncio.run(_post_all(bodies)):
        assert status < 500, (route, status, code)
        if status >= 400 and code in ("malformed", "invalid", "body_too_large",
                                      "payload_too_large"):  # fmt: skip
            assert appended == 0, (route, status, code)
