"""The leader never proposes a command of a log version the cluster has not enabled
(``RaftNode._check_enabled``): its entry would stop every node still on an older raftq. Three
real raft nodes in this process over the in-memory transport."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftq.core import EnableVersion, Pause, Paused, VersionEnabled, codec
from raftq.errors import Rejected
from raftq.raft.pysyncobj import engine as pysyncobj_engine
from tests.support.memory_cluster import memory_cluster, until


async def test_a_command_of_a_version_not_enabled_is_not_proposed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A release whose Pause is new in log version 2 (the gate is the same for any command).
    monkeypatch.setitem(codec._COMMAND_VERSION, Pause, 2)
    # A cluster its previous release bootstrapped at log version 1 (a new cluster of this
    # release enables its own version as its first entry).
    monkeypatch.setattr(pysyncobj_engine, "LOG_VERSION", 1)
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        applied = leader.status().applied_index
        with pytest.raises(Rejected) as e:
            await leader.submit(Pause(now_ms=leader.now_ms(), queue="q"))
        assert e.value.status == 409 and e.value.reason == "version_not_enabled"
        assert leader.status().applied_index == applied  # nothing went into the log

        enabled = await leader.submit(EnableVersion(now_ms=leader.now_ms(), version=2))
        assert enabled == VersionEnabled(2)
        assert await leader.submit(Pause(now_ms=leader.now_ms(), queue="q")) == Paused("q")

        def everywhere() -> bool:
            for node in cluster.nodes.values():
                with node.read() as m:
                    q = m.queues.get("q")
                    if m.enabled_version != 2 or q is None or not q.paused:
                        return False
            return True

        await until(everywhere)
