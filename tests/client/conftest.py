"""Fixtures of the client tests: real API servers over in-process ``LocalNode``s, with faults.

``async def`` tests run under ``tests/conftest.py``'s hook. ``start(...)`` is an async
context-manager factory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from raftq.server import ServerSettings
from tests.conftest import serve_local_nodes, serve_raft_nodes
from tests.support.local_node import LocalNode

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Faults:
    """Faults a node's server injects, per request path suffix (``"/jobs"``...)."""

    drop_after_handling: dict[str, int] = field(default_factory=dict)  # path -> times
    delay_after_handling: dict[str, tuple[int, float]] = field(default_factory=dict)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, rid

    def _take(self, table: dict[str, int], path: str) -> bool:
        for suffix, times in table.items():
            if path.endswith(suffix) and times > 0:
                table[suffix] = times - 1
                return True
        return False

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.seen.append((request.method, request.path, request.headers.get("X-Request-Id")))
            resp = await handler(request)
            if self._take(self.drop_after_handling, request.path):
                # Applied, but the answer is lost: the connection dies before the response.
                assert request.transport is not None
                request.transport.close()
            for suffix, (times, seconds) in self.delay_after_handling.items():
                if request.path.endswith(suffix) and times > 0:
                    self.delay_after_handling[suffix] = (times - 1, seconds)
                    await asyncio.sleep(seconds)
            return resp

        return faults


@dataclass
class Cluster:
    nodes: dict[str, LocalNode]
    addresses: dict[str, str]
    faults: dict[str, Faults]

    @property
    def leader(self) -> LocalNode:
        return self.nodes["n1"]

    def csv(self, *ids: str) -> str:
        return ",".join(self.addresses[i] for i in (ids or tuple(self.addresses)))


StartFn = Callable[..., AbstractAsyncContextManager[Cluster]]


@pytest.fixture
def engine() -> str:
    """What the servers run on: ``"local"`` (``LocalNode``s, the default) or ``"raft"`` (real
    ``RaftNode``s over the in-memory transport); a test parametrizes it to run on both."""
    return "local"


@pytest.fixture
def start(engine: str, tmp_path: Path) -> StartFn:
    """``async with start(followers=2) as c``: a leader n1 and followers, each served."""

    @asynccontextmanager
    async def _start(
        *, followers: int = 2, settings: ServerSettings | None = None
    ) -> AsyncIterator[Cluster]:
        faults: dict[str, Faults] = {}

        def add_faults(nid: str, app: web.Application) -> None:
            faults[nid] = Faults()
            app.middlewares.append(faults[nid].middleware())

        serving = (
            serve_raft_nodes(tmp_path, followers=followers, settings=settings, prepare=add_faults)
            if engine == "raft"
            else serve_local_nodes(followers=followers, settings=settings, prepare=add_faults)
        )
        async with serving as (nodes, addresses):
            yield Cluster(nodes=nodes, addresses=addresses, faults=faults)  # type: ignore[arg-type]

    return _start
