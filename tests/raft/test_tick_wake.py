"""The tick thread is woken by the events of a write, not by its poll timeout
(``raftq.raft.pysyncobj.tick_wake``).

Every node runs with a poll timeout of 1 s (``autoTickPeriod``, 10 ms in real use) and the
leader's clock ticks turned off (``tick_interval_ms`` 60 s), so a step of a write that waited
for a timer would take about a second: a write done in well under half a second proves that
each step was woken by the event before it. Speed itself is measured in ``raftq bench``, not
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from raftq.config import ClusterConfig
from raftq.core.commands import Enqueue, NewJob
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from tests.embed.conftest import make_config
from tests.support.memory_cluster import until

_POLL_TIMEOUT_S = 1.0
_WELL_BEFORE_S = 0.5
# No periodic proposals of the leader's clock; with three nodes, elections slow enough that
# heartbeats sent once per 1 s tick keep the leader.
_QUIET = "[raft]\ntick_interval_ms = 60000\n"
_SLOW_ELECTIONS = "election_min_ms = 3000\nelection_max_ms = 3500\n"


@contextlib.asynccontextmanager
async def _nodes(config: ClusterConfig) -> AsyncIterator[dict[str, RaftNode]]:
    nodes = {
        spec.id: RaftNode(config, new_pysyncobj_engine(config, spec.id)) for spec in config.nodes
    }
    started: list[RaftNode] = []
    try:
        for node in nodes.values():
            await node.start()
            started.append(node)
        yield nodes
    finally:
        for node in started:
            await node.stop()


async def _leader_on_long_polls(nodes: dict[str, RaftNode]) -> RaftNode:
    """The leader, elected with the usual 10 ms poll timeout, then every node's timeout set to
    1 s (read by the tick thread before every poll; the first write waits out the old ones)."""
    await until(lambda: any(n.is_leader() for n in nodes.values()), timeout_s=30)
    leader = next(n for n in nodes.values() if n.is_leader())
    for node in nodes.values():
        node.engine.syncobj.conf.autoTickPeriod = _POLL_TIMEOUT_S  # type: ignore[attr-defined]
    await _timed_write(leader)
    return leader


async def _timed_write(node: RaftNode) -> float:
    started = time.monotonic()
    await node.submit(Enqueue(now_ms=node.now_ms(), queue="q", jobs=(NewJob(payload=b"x"),)))
    return time.monotonic() - started


def _applied(node: RaftNode) -> int:
    replica = node.engine.replica  # type: ignore[attr-defined]
    return int(replica.applied_index)


async def test_a_single_voter_commits_its_write_without_waiting_for_the_poll_timeout(
    tmp_path: Path,
) -> None:
    """Picked up at once (PySyncObj's notify pipe), then committed on the next tick, which
    nothing but the timeout woke before: 11-12 ms per write with the 10 ms timeout of real use."""
    async with _nodes(make_config(tmp_path, 1, _QUIET)) as nodes:
        leader = await _leader_on_long_polls(nodes)
        for _ in range(3):
            assert await _timed_write(leader) < _WELL_BEFORE_S


async def test_three_nodes_commit_and_apply_a_write_without_waiting_for_the_poll_timeout(
    tmp_path: Path,
) -> None:
    """The leader picks the entry up at once (PySyncObj's notify pipe: guards that raftq's
    settings keep it on), each follower handles the AppendEntries on the tick its socket woke
    and answers, the leader commits on the tick the answer woke, and the followers apply on
    the tick the next AppendEntries woke: all well before one poll timeout."""
    async with _nodes(make_config(tmp_path, 3, _QUIET + _SLOW_ELECTIONS)) as nodes:
        leader = await _leader_on_long_polls(nodes)
        followers = [n for n in nodes.values() if n is not leader]
        for _ in range(3):
            assert await _timed_write(leader) < _WELL_BEFORE_S
            started = time.monotonic()
            target = _applied(leader)
            while any(_applied(f) < target for f in followers):
                assert time.monotonic() - started < _WELL_BEFORE_S, "a follower applied late"
                await asyncio.sleep(0.005)
