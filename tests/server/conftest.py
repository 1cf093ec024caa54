"""Fixtures of the HTTP API tests: real aiohttp servers on 127.0.0.1 over in-process nodes.

The node under the API is ``tests.support.local_node.LocalNode``: a real ``raftq.core.Machine``
fed through ``encode_entry``/``apply_entry`` (no raft). ``leader.follower("n2")`` shares its
state and answers writes with ``NotLeader``, so forwarding runs between two real servers.

``async def`` tests run under ``tests/conftest.py``'s hook. Fixtures return async
context-manager factories:
``async with start() as h: ...``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from raftq.server import ServerSettings
from tests.conftest import serve_local_nodes, serve_raft_nodes
from tests.support.local_node import LocalNode


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes


@dataclass
class Harness:
    """One or more nodes, each behind a real HTTP server, and one client session."""

    nodes: dict[str, LocalNode]
    addresses: dict[str, str]
    session: aiohttp.ClientSession
    default: str = "n1"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def node(self) -> LocalNode:
        return self.nodes[self.default]

    async def caught_up(self, timeout_s: float = 10.0) -> None:
        """Until every node has applied what the leader ``n1`` has (at once for LocalNodes,
        which share one state)."""

        def applied(node: Any) -> int:
            with node.read() as m:
                return int(m.applied)

        deadline = asyncio.get_running_loop().time() + timeout_s
        target = applied(self.node)
        while any(applied(n) < target for n in self.nodes.values()):
            assert asyncio.get_running_loop().time() < deadline, "followers did not catch up"
            await asyncio.sleep(0.01)

    def url(self, path: str, node: str | None = None) -> str:
        return f"http://{self.addresses[node or self.default]}{path}"

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        fmt: str = "json",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        node: str | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        data = raw
        if data is None and body is not None:
            if fmt == "msgpack":
                data = msgpack.packb(body, use_bin_type=True)
            else:
                data = json.dumps(body).encode()
        if data is not None:
            hdrs.setdefault(
                "Content-Type", "application/msgpack" if fmt == "msgpack" else "application/json"
            )
        if fmt == "msgpack":
            hdrs.setdefault("Accept", "application/msgpack")
        async with self.session.request(
            method, self.url(path, node), data=data, headers=hdrs
        ) as resp:
            payload = await resp.read()
            ct = resp.headers.get("Content-Type", "")
            if "msgpack" in ct:
                decoded = msgpack.unpackb(payload, raw=False)
            elif "json" in ct:
                decoded = json.loads(payload)
            else:
                decoded = payload
            return Reply(resp.status, dict(resp.headers), decoded, payload)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, body, **kw)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)


StartFn = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def engine() -> str:
    """What the servers run on: ``"local"`` (``LocalNode``s, the default) or ``"raft"`` (real
    ``RaftNode``s over the in-memory transport). A module whose tests hold on both overrides
    this fixture with ``params=["local", "raft"]``."""
    return "local"


@pytest.fixture
def start(engine: str, tmp_path: Path) -> StartFn:
    """``async with start(followers=1, settings=...) as h``: a leader ``n1`` and followers
    ``n2``... each behind its own server, over the nodes ``engine`` names."""

    @asynccontextmanager
    async def _start(
        *, followers: int = 0, settings: ServerSettings | None = None
    ) -> AsyncIterator[Harness]:
        serving = (
            serve_raft_nodes(tmp_path, followers=followers, settings=settings)
            if engine == "raft"
            else serve_local_nodes(followers=followers, settings=settings)
        )
        async with serving as (nodes, addresses), aiohttp.ClientSession() as session:
            yield Harness(nodes=nodes, addresses=addresses, session=session)  # type: ignore[arg-type]

    return _start


def error_of(reply: Reply) -> tuple[str, str]:
    """``(code, message)`` of an error reply, checking the error shape on the way."""
    assert isinstance(reply.body, dict), reply.body
    assert set(reply.body) == {"error"}, reply.body
    err = reply.body["error"]
    assert set(err) == {"code", "message"}, err
    assert isinstance(err["code"], str) and isinstance(err["message"], str)
    return err["code"], err["message"]


@pytest.fixture
def err() -> Callable[[Reply], tuple[str, str]]:
    """The ``error_of`` helper, as a fixture (test modules cannot import conftest)."""
    return error_of
