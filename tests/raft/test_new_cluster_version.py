"""A new cluster starts at its release's log version; a cluster that ever committed an entry
keeps the one it had (``PySyncObjEngine._enable_version_of_new_cluster``). Three real raft
nodes in this process over the in-memory transport."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from raftq.core import Enqueue, Enqueued, NewJob, PutSchedule, SchedulePut
from raftq.core.codec import LOG_VERSION
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import engine as pysyncobj_engine
from tests.support.memory_cluster import MemoryCluster, memory_cluster, until


def _enabled(cluster: MemoryCluster) -> set[int]:
    versions = set()
    for node in cluster.nodes.values():
        with node.read() as m:
            versions.add(m.enabled_version)
    return versions


async def _enqueue(node: RaftNode) -> None:
    job = NewJob(payload=b"x")
    result = await node.submit(Enqueue(now_ms=node.now_ms(), queue="q", jobs=(job,)))
    assert isinstance(result, Enqueued)


async def test_a_new_cluster_enables_its_log_version_on_every_node(tmp_path: Path) -> None:
    assert LOG_VERSION >= 2  # else there is nothing to enable
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        await _enqueue(leader)
        await until(lambda: _enabled(cluster) == {LOG_VERSION})


async def test_a_cluster_at_version_1_stays_there_under_a_new_leader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster bootstrapped by the previous release (log version 1, nothing enabled) and led
    by this one after an upgrade: its history has entries, so only `raftq upgrade enable`
    (which asks every node first) raises its version."""
    monkeypatch.setattr(pysyncobj_engine, "LOG_VERSION", 1)  # the previous release's leader
    async with memory_cluster(tmp_path) as cluster:
        old = await cluster.leader()
        await _enqueue(old)
        monkeypatch.undo()  # from here on every node runs this release
        target = next(i for i in cluster.nodes if i != old.node_id)
        assert await old.transfer_leadership(target) == target
        new = cluster.nodes[target]
        await _enqueue(new)  # applied after the new leader's no-op: its check has run
        await until(lambda: all(n.status().applied_index >= 3 for n in cluster.nodes.values()))
        assert _enabled(cluster) == {1}


async def test_a_command_sent_before_the_first_entry_of_a_new_cluster_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug fixed (CI: an embedded node's first ``set_schedule``, right after
    ``wait_for_leader``, was refused with "run `raftq upgrade enable`"). A new cluster's
    leader proposes ``EnableVersion`` at its first tick as leader; a command of this release's
    log version that came in before that tick was refused. It now waits for the entry. Here
    the leader's engine thread is held at that tick until the command has waited half a
    second (held there, it applies nothing: the history the check reads stays the same, and it
    sends no heartbeat: elections of 2-4 s, so that the followers wait for it on a busy
    machine; with the default 400-1400 ms one of them took over under CI's load)."""
    gate = threading.Event()
    check = pysyncobj_engine.PySyncObjEngine._enable_version_of_new_cluster

    def held_back(self: pysyncobj_engine.PySyncObjEngine) -> None:
        if self.is_leader():
            gate.wait(10)
        check(self)

    monkeypatch.setattr(
        pysyncobj_engine.PySyncObjEngine, "_enable_version_of_new_cluster", held_back
    )
    slow = "[raft]\nelection_min_ms = 2000\nelection_max_ms = 4000"
    async with memory_cluster(tmp_path, extra=slow) as cluster:
        await until(lambda: any(n.is_leader() for n in cluster.nodes.values()))
        [leader] = [n for n in cluster.nodes.values() if n.is_leader()]
        put = PutSchedule(now_ms=leader.now_ms(), name="s", queue="q", every_ms=1000, payload=b"")
        submitted = asyncio.ensure_future(leader.submit(put))
        await asyncio.sleep(0.5)
        assert not submitted.done()  # before the fix: refused at once
        gate.set()
        assert isinstance(await submitted, SchedulePut)
        with leader.read() as m:
            assert m.enabled_version == LOG_VERSION
