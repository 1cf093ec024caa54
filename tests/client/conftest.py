"""Fixtures of the client tests: real API servers over in-process ``LocalNode``s, with faults.

``async def`` tests run on a fresh event loop each (``pytest_pyfunc_call`` below), under a
per-test deadline. ``start(...)`` is an async context-manager factory.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from raftq.server import ServerSettings, create_app
from tests.support.local_node import LocalNode, serve

TEST_DEADLINE_S = 60

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), TEST_DEADLINE_S))
    return True


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


@asynccontextmanager
async def _start(
    *, followers: int = 2, settings: ServerSettings | None = None
) -> AsyncIterator[Cluster]:
    leader = LocalNode("n1")
    nodes = {"n1": leader}
    for i in range(followers):
        nodes[f"n{i + 2}"] = leader.follower(f"n{i + 2}")
    faults = {nid: Faults() for nid in nodes}
    async with AsyncExitStack() as stack:
        addresses: dict[str, str] = {}
        for nid, node in nodes.items():
            app = create_app(node, settings or ServerSettings())
            app.middlewares.append(faults[nid].middleware())
            addresses[nid] = await stack.enter_async_context(serve(app))
            leader.set_address(nid, addresses[nid])
        yield Cluster(nodes=nodes, addresses=addresses, faults=faults)


StartFn = Callable[..., AbstractAsyncContextManager[Cluster]]


@pytest.fixture
def start() -> StartFn:
    """``async with start(followers=2) as c``: a leader n1 and followers, each served."""
    return _start
