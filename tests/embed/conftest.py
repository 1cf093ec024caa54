"""Fixtures of the embedding tests: real raft nodes in this process, on free loopback ports."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

from raftq.config import ClusterConfig, parse_config
from tests.integration.cluster import free_ports

TEST_DEADLINE_S = 60


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a fresh event loop, under a deadline."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), TEST_DEADLINE_S))
    return True


def make_config(root: Path, n: int, extra: str = "") -> ClusterConfig:
    """A config of ``n`` nodes ``n1..`` on free loopback ports, data under ``root``."""
    ports = free_ports(2 * n)
    lines = ["[cluster]", 'name = "embed"', 'data_dir = "data"', "", extra, ""]
    for i in range(n):
        lines += [
            "[[nodes]]",
            f'id = "n{i + 1}"',
            f'raft = "127.0.0.1:{ports[i]}"',
            f'api = "127.0.0.1:{ports[n + i]}"',
            "",
        ]
    return parse_config("\n".join(lines), root)
