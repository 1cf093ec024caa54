"""An in-process cluster of real ``RaftNode``s on PySyncObj over an in-memory transport.

The real Raft (PySyncObj with raftq's journal, commit rule and snapshot hooks, data dirs on
disk), the real group commit and waiters, but no raft sockets: the nodes talk through a
``MemoryNetwork``, which a test can partition. Use ``async with memory_cluster(tmp_path) as c``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftq.config import ClusterConfig
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.pysyncobj.memory_transport import MemoryNetwork
from tests.embed.conftest import make_config

__all__ = ["ON_BOTH", "MemoryCluster", "memory_cluster", "until"]

# For tests over the ``start`` fixtures of tests/server and tests/client: run the test on the
# ``LocalNode`` test double and on real ``RaftNode``s over this in-memory network (the real
# group commit, waiters, replication and leader election under the API).
ON_BOTH = pytest.mark.parametrize("engine", ["local", "raft"])


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@dataclass
class MemoryCluster:
    config: ClusterConfig
    network: MemoryNetwork
    nodes: dict[str, RaftNode]

    def leaders(self, among: list[str] | None = None) -> list[str]:
        ids = list(self.nodes) if among is None else among
        return [i for i in ids if self.nodes[i].is_leader()]

    async def leader(self, among: list[str] | None = None, timeout_s: float = 30.0) -> RaftNode:
        """The one leader among ``among`` (default all nodes), once there is exactly one and
        the others of ``among`` follow it."""
        ids = list(self.nodes) if among is None else among

        def settled() -> bool:
            leaders = self.leaders(ids)
            return len(leaders) == 1 and all(self.nodes[i].leader_id() == leaders[0] for i in ids)

        await until(settled, timeout_s)
        return self.nodes[self.leaders(ids)[0]]

    def partition(self, node_id: str) -> None:
        self.network.partition(self.config.node(node_id).raft)

    def heal(self, node_id: str) -> None:
        self.network.heal(self.config.node(node_id).raft)


@contextlib.asynccontextmanager
async def memory_cluster(root: Path, n: int = 3, extra: str = "") -> AsyncIterator[MemoryCluster]:
    """Start ``n`` nodes (data under ``root``) on one in-memory network; stop them after."""
    config = make_config(root, n, extra)
    network = MemoryNetwork()
    transport = network.transport_class()
    nodes = {
        spec.id: RaftNode(config, new_pysyncobj_engine(config, spec.id, transport_class=transport))
        for spec in config.nodes
    }
    started: list[RaftNode] = []
    try:
        for node in nodes.values():
            await node.start()
            started.append(node)
        yield MemoryCluster(config, network, nodes)
    finally:
        for node in started:
            await node.stop()
