"""Shared test machinery.

``async def`` tests run on a fresh event loop each (``pytest_pyfunc_call`` below), under a
per-test deadline: the ``async_test_deadline_s`` fixture (60 s; a package's conftest overrides
it to give its tests longer).

``serve_local_nodes`` serves in-process ``LocalNode``s behind real API servers, for the
``start`` fixtures of the client and server tests; ``serve_raft_nodes`` serves real
``RaftNode``s instead (PySyncObj, journal, group commit, waiters) talking Raft over the
in-memory transport, for the tests that run on both.

Test tiers (``make check`` runs the fast one): a test that starts processes (raftq nodes,
workers, helper interpreters, ``mount``) is marked ``integration``, a fault-injection run
``chaos``, a long one ``slow``. Every test under ``tests/integration/`` and
``tests/chaos/test_chaos.py`` is marked here, every user of the ``worker_cluster`` fixture in
``tests/worker/conftest.py``; elsewhere the module or the test says so. With
``RAFTQ_FAST_TIER=1`` (what ``make check`` sets), an unmarked test that starts a process fails,
naming itself: the fast tier cannot silently grow a process-starting test.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from raftq.raft.node import RaftNode
from raftq.server import ServerSettings, create_app
from tests.support.local_node import LocalNode, serve
from tests.support.memory_cluster import memory_cluster

DEADLINE_FIXTURE = "async_test_deadline_s"
TESTS = Path(__file__).parent
FAST_TIER_ENV = "RAFTQ_FAST_TIER"
HEAVY_MARKERS = ("integration", "chaos", "slow")
# Paths (relative to tests/) whose every test carries the marker.
MARKED_PATHS = {"integration/": "integration", "chaos/test_chaos.py": "chaos"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        rel = item.path.relative_to(TESTS).as_posix()
        for prefix, marker in MARKED_PATHS.items():
            if rel.startswith(prefix):
                item.add_marker(marker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """In the fast tier, refuse to start a process from a test not marked as heavy."""
    if os.environ.get(FAST_TIER_ENV) != "1" or any(
        item.get_closest_marker(m) for m in HEAVY_MARKERS
    ):
        yield
        return
    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
        raise AssertionError(
            f"{item.nodeid} starts a process ({str(args)[:80]}) but is not marked "
            "integration, chaos or slow: mark it, so that the fast tier stays in-process"
        )

    subprocess.Popen._execute_child = refuse  # type: ignore[attr-defined]
    try:
        yield
    finally:
        subprocess.Popen._execute_child = original  # type: ignore[attr-defined]


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were before the test (``raftq.cli.main``
    installs a stderr handler on it)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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


@asynccontextmanager
async def serve_raft_nodes(
    root: Path,
    *,
    followers: int,
    settings: ServerSettings | None = None,
    prepare: Callable[[str, web.Application], None] | None = None,
) -> AsyncIterator[tuple[dict[str, RaftNode], dict[str, str]]]:
    """Like ``serve_local_nodes``, with ``1 + followers`` real ``RaftNode``s on one in-memory
    network (no raft sockets), each behind its own API server on its configured port (so a
    follower forwards to the leader's). Yields once a leader is elected, labelled ``"n1"``
    (the others ``"n2"``...) whatever its node id, as the tests expect of their leader."""
    async with memory_cluster(root, n=1 + followers) as cluster:
        leader = await cluster.leader()
        order = [leader, *(n for n in cluster.nodes.values() if n is not leader)]
        async with AsyncExitStack() as stack:
            nodes: dict[str, RaftNode] = {}
            addresses: dict[str, str] = {}
            for i, node in enumerate(order, 1):
                app = create_app(node, settings or ServerSettings())
                if prepare is not None:
                    prepare(f"n{i}", app)
                port = cluster.config.node(node.node_id).api_port
                nodes[f"n{i}"] = node
                addresses[f"n{i}"] = await stack.enter_async_context(serve(app, port=port))
            yield nodes, addresses
