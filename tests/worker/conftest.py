"""Fixtures of the worker tests: one real 3-node cluster for the whole package, and worker
processes started with `raftq worker ...` (only those are ever signalled; all of them are
SIGKILLed at teardown)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def async_test_deadline_s() -> float:
    """Worker tests drive real processes: ``async def`` tests get 120 s (``tests/conftest.py``)."""
    return 120


@pytest.fixture(scope="session")
def worker_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running 3-node cluster shared by the worker tests (each test uses its own queues)."""
    c = Cluster.generate(tmp_path_factory.mktemp("worker-cluster"))
    with c:
        c.wait_ready()
        yield c


class Procs:
    """Processes a test started (workers, scripts); output in ``<dir>/<name>.log``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115  # owned by the process
        self.procs[name] = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        log.close()

    def worker(self, name: str, cluster: Cluster, *args: str) -> None:
        """``raftq worker ARGS... --nodes <all nodes> --name NAME``."""
        nodes = ",".join(cluster.api[n] for n in cluster.ids)
        argv = [sys.executable, "-m", "raftq", "worker", *args, "--nodes", nodes]
        self.start(name, [*argv, "--name", name])

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def wait(self, name: str, timeout: float = 30) -> int:
        return self.procs[name].wait(timeout)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.02) -> None:
    """Poll ``check`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "worker_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


async def until(check: Callable[[], object], timeout: float, what: str) -> None:
    """``wait_until`` for async tests (``check`` is a quick synchronous look)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def nodes_of(cluster: Cluster) -> str:
    return ",".join(cluster.api[n] for n in cluster.ids)
