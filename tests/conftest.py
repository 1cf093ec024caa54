"""Shared test machinery.

``async def`` tests run on a fresh event loop each (``pytest_pyfunc_call`` below), under a
per-test deadline: the ``async_test_deadline_s`` fixture (60 s; a package's conftest overrides
it to give its tests longer).

``serve_local_nodes`` serves in-process ``LocalNode``s behind real API servers, for the
``start`` fixtures of the client and server tests.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from aiohttp import web

from raftq.server import ServerSettings, create_app
from tests.support.local_node import LocalNode, serve

DEADLINE_FIXTURE = "async_test_deadline_s"


@pytest.fixture(autouse=True)
def async_test_deadline_s() -> float:
    """How long an ``async def`` test may run, in seconds."""
    return 60


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a fresh event loop, under a deadline."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    deadline_s = pyfuncitem.funcargs[DEADLINE_FIXTURE]
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), deadline_s))
    return True


@asynccontextmanager
async def serve_local_nodes(
    *,
    followers: int,
    settings: ServerSettings | None = None,
    prepare: Callable[[str, web.Application], None] | None = None,
) -> AsyncIterator[tuple[dict[str, LocalNode], dict[str, str]]]:
    """A leader ``n1`` and ``followers`` followers ``n2``..., each behind its own server;
    yields ``(nodes, addresses)``. ``prepare(node_id, app)`` runs before each app is served."""
    leader = LocalNode("n1")
    nodes = {"n1": leader}
    for i in range(followers):
        nodes[f"n{i + 2}"] = leader.follower(f"n{i + 2}")
    async with AsyncExitStack() as stack:
        addresses: dict[str, str] = {}
        for nid, node in nodes.items():
            app = create_app(node, settings or ServerSettings())
            if prepare is not None:
                prepare(nid, app)
            addresses[nid] = await stack.enter_async_context(serve(app))
            leader.set_address(nid, addresses[nid])
        yield nodes, addresses
