"""raftq.testing as a user meets it: `pytest -p raftq.testing examples/test_typed_tasks.py` run
as its docstring says, and an async test with `LocalNode` and `running`, enqueueing through
the embedded node (`raftq.App(client=node.node)`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import raftq
from raftq.testing import LocalNode, running
from tests.worker.conftest import REPO


@pytest.mark.integration  # pytest in a process of its own
def test_the_testing_example_passes_under_pytest() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "raftq.testing", "-p", "no:cacheprovider", "-q",
         "examples/test_typed_tasks.py"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


async def test_an_app_on_an_embedded_local_node() -> None:
    async with LocalNode() as local:
        app = raftq.App(client=local.node)

        @app.task(queue="local")
        def double(n: int) -> int:
            return 2 * n

        handles = [await double.enqueue(n) for n in range(5)]
        assert (await local.node.queue("local"))["depth"]["queued"] == 5
        async with running(app.worker(concurrency=2, wait_ms=100)):
            assert [await h.wait(5_000) for h in handles] == [0, 2, 4, 6, 8]
