"""Every election timeout the config accepts starts a node: PySyncObj also requires its
connection timeout to be at least the longest election timeout (``SyncObjConf.validate``),
which was fixed at 3.5 s, so ``election_max_ms`` above 3500 failed at start with a bare
``AssertionError`` from inside PySyncObj."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from tests.embed.conftest import make_config


@pytest.mark.parametrize(("low", "high"), [(400, 1_400), (2_000, 3_600)])
async def test_a_node_starts_with_any_accepted_election_timeouts(
    tmp_path: Path, low: int, high: int
) -> None:
    config = make_config(tmp_path, 1, f"[raft]\nelection_min_ms = {low}\nelection_max_ms = {high}")
    node = RaftNode(config, new_pysyncobj_engine(config, "n1"))
    await node.start()
    try:
        deadline = time.monotonic() + high / 1000 + 10
        while not node.is_leader():  # a single node elects itself after one timeout
            assert time.monotonic() < deadline, "no leader"
            await asyncio.sleep(0.02)
    finally:
        await node.stop()
