"""The README's first hour against a real node: its Python runs as written (only the addresses
changed to the test node's), and `raftq dead Q --requeue ID` names an unknown id (exit 1)
instead of printing "requeued 0 job(s)"."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster
from tests.test_guide import readme_blocks

_README_NODES = '["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster.generate(tmp_path_factory.mktemp("readme"), n=1) as cluster:
        cluster.wait_ready()
        yield cluster


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_the_readme_python_runs_against_a_node(node: Cluster) -> None:
    [code] = readme_blocks("python")
    assert _README_NODES in code
    code = code.replace(_README_NODES, repr([node.api["n1"]]))
    done = _run([sys.executable, "-c", code], node.root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["enqueued job 1", "sent: True"]


def test_requeue_of_an_unknown_dead_letter_names_it(node: Cluster) -> None:
    nodes = ["--nodes", node.api["n1"]]
    done = _run(
        [sys.executable, "-m", "raftq", "dead", "emails", "--requeue", "99999", *nodes], node.root
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "raftq: error: refused (not_found): no job 99999 in queue 'emails'"
    ]
