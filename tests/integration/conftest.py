from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A running 3-node cluster with a leader; every process SIGKILLed at teardown."""
    c = Cluster.generate(tmp_path)
    with c:
        c.wait_ready()
        yield c


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for a whole module of tests that do not disturb each other."""
    c = Cluster.generate(tmp_path_factory.mktemp("shared"))
    with c:
        c.wait_ready()
        yield c
