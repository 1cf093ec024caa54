"""A follower never installs a snapshot older than what it committed (finding 2 of the safety
issue "an acknowledged job is never lost"; raftq/raft/pysyncobj/commit_rule.py, "An older
snapshot").

Three real PySyncObj nodes in this process. Compaction is driven by the test: the leader
compacts first, the follower later, so the follower's log starts past the leader's snapshot.
Then the leader receives a late "reset" answer from that follower (what a reply delayed in the
network does), which moves its next index for it below its own log start: it sends its
snapshot. Before the fix the follower installed it: its machine and applied index went back,
its log was cut to the snapshot's two entries and its dump replaced by the older one, while it
had acknowledged (and the leader counted) the entries after it.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from pathlib import Path
from typing import Any

from raftq.core import Enqueue, Machine, NewJob
from raftq.core.snapshot import snapshot_digest
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.snapshot_file import verify_file
from tests.embed.conftest import make_config

# No compaction unless the test forces one (forceLogCompaction, split off below); elections
# slow enough that a busy machine (the suite runs in two processes) does not move leadership
# under the test, whose late answer is delivered to the leader it found.
_MANUAL = (
    "[raft]\nlog_compaction_min_entries = 100000000\nlog_compaction_min_time_s = 604800\n"
    "election_min_ms = 2000\nelection_max_ms = 4000"
)


async def _until(predicate: Any, timeout_s: float = 30.0, state: Any = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in time; {state() if state else ''}")
        await asyncio.sleep(0.02)


async def _enqueue(node: RaftNode, n: int, tag: str) -> None:
    for i in range(n):
        job = NewJob(payload=f"{tag}-{i}".encode())
        await node.submit(Enqueue(now_ms=node.now_ms(), queue="q", jobs=(job,)))


def _so(node: RaftNode) -> Any:
    assert node.engine.syncobj is not None
    return node.engine.syncobj


def _log_start(node: RaftNode) -> int:
    return int(_so(node)._SyncObj__raftLog[0][1])


def _log_end(node: RaftNode) -> int:
    journal = _so(node)._SyncObj__raftLog
    return int(journal[-1][1])


def _applied(node: RaftNode) -> int:
    return int(_so(node)._SyncObj__raftLastApplied)


def _state(node: RaftNode) -> tuple[int, object, str]:
    with node.read() as m:
        return m.applied, m.digest, snapshot_digest(m)


async def _compact(node: RaftNode) -> int:
    """Force a compaction of ``node`` and wait until its journal was truncated to it; the
    snapshot's last index."""
    hooks = node.engine.snapshots
    assert hooks is not None
    writes = hooks.writes
    _so(node).forceLogCompaction()
    await _until(lambda: hooks.writes > writes)
    header = verify_file(hooks.dump_path).header
    await _until(lambda: _log_start(node) == header.prev[1])
    return header.last[1]


async def test_a_follower_that_compacted_past_the_leaders_snapshot_keeps_its_state(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, 3, _MANUAL)
    nodes = {
        spec.id: RaftNode(config, new_pysyncobj_engine(config, spec.id)) for spec in config.nodes
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            for node in nodes.values():
                await node.start()
        await _until(lambda: any(n.is_leader() for n in nodes.values()))
        leader = next(n for n in nodes.values() if n.is_leader())
        follower = next(n for n in nodes.values() if n is not leader)
        for node in nodes.values():
            _so(node)._getConf().logCompactionSplit = False  # forced compactions start at once

        await _enqueue(leader, 10, "a")
        leader_snapshot = await _compact(leader)
        await _enqueue(leader, 10, "b")
        await _until(lambda: _applied(follower) >= _applied(leader) > leader_snapshot + 5)
        follower_snapshot = await _compact(follower)
        # The follower's log starts past the leader's snapshot: it cannot hold its entries.
        assert _log_start(follower) > leader_snapshot
        own_log_start = _log_start(follower)

        # What the follower does from now on: machines installed (applied before, after) and
        # answers sent (acknowledged index, its log end at that moment).
        fso = _so(follower)
        replica = follower.engine.replica
        assert replica is not None
        installs: list[tuple[int, int]] = []
        real_install = replica.install

        def install(machine: Machine) -> None:
            installs.append((replica.machine.applied, machine.applied))
            real_install(machine)

        replica.install = install  # type: ignore[method-assign]
        answers: list[tuple[int, int]] = []  # (index acknowledged, its log end then)
        transport = fso._SyncObj__transport
        real_send = transport.send

        def send(to: Any, message: Any) -> Any:  # tick thread: every message it sends
            if message.get("type") == "next_node_idx" and message["success"]:
                answers.append((message["next_node_idx"] - 1, _log_end(follower)))
            return real_send(to, message)

        transport.send = send
        acknowledged = _applied(follower)  # it acknowledged at least what it applied

        # A late "reset" answer from the follower reaches the leader (on its tick thread).
        # Delivered again at each tick until the follower has been sent the snapshot: an
        # answer to an entry still in flight (cluster time's ticks keep appending) can move
        # the leader's next index for it back up before the snapshot goes out.
        lso = _so(leader)
        address = config.node(follower.node_id).raft
        target = next(n for n in lso._SyncObj__otherNodes if n.id == address)
        stale = {"type": "next_node_idx", "reset": True, "success": False}
        stale["next_node_idx"] = _log_start(leader)  # what it answered when it was behind
        delivered: list[bool] = []

        def sent() -> bool:
            return bool(installs) or getattr(fso, "raftq_refused_snapshots", 0) > 0

        def deliver() -> None:
            if not sent():
                delivered.append(True)
                lso._SyncObj__onMessageReceived(target, stale)

        def state() -> str:
            return (
                f"delivered {len(delivered)} times, "
                f"leaders {[n.is_leader() for n in nodes.values()]}, "
                f"terms {[_so(n)._SyncObj__raftCurrentTerm for n in nodes.values()]}, "
                f"leader's next index for it {lso._SyncObj__raftNextIndex.get(target)}, "
                f"log starts {[_log_start(n) for n in nodes.values()]}, "
                f"applied {[_applied(n) for n in nodes.values()]}"
            )

        lso.addOnTickCallback(deliver)
        await _until(sent, 30.0, state)
        await _enqueue(leader, 5, "c")
        await _until(lambda: _applied(follower) >= _applied(leader))
        await leader.barrier()
        await _until(lambda: _applied(follower) >= _applied(leader))

        # The follower's machine was never replaced, least of all by an older one.
        assert installs == [], f"machine replaced (applied before, after): {installs}"
        assert fso.raftq_refused_snapshots >= 1
        # Its dump and its log are still its own.
        assert follower.engine.snapshots is not None
        assert verify_file(follower.engine.snapshots.dump_path).header.last[1] == follower_snapshot
        assert _log_start(follower) == own_log_start
        # It never answered with less than it holds, nor forgot what it had acknowledged.
        assert answers, "no answer recorded"
        for acked, log_end in answers:
            assert acked <= log_end
            acknowledged = max(acknowledged, acked)
            assert log_end >= acknowledged, f"acknowledged {acknowledged}, log ends at {log_end}"
        # The refusal's answer is "reset, success, next = commit index + 1": the leader's view.
        match = lso._SyncObj__raftMatchIndex[target]
        next_index = lso._SyncObj__raftNextIndex[target]
        assert match <= _log_end(follower)
        assert next_index > _log_start(leader)  # not sending the snapshot again and again
        # Same state: at the same applied entry, the same rolling digest and the same snapshot.
        await _until(lambda: _state(leader) == _state(follower))
        with follower.read() as m:
            assert len(m.jobs) == 25
    finally:
        for node in nodes.values():
            await node.stop()


def test_the_replica_never_takes_an_older_machine() -> None:
    """The last guard (raftq/raft/pysyncobj/replica.py): a machine that applied fewer entries
    than the one in place would undo committed commands; the node stops instead."""
    from raftq.core import encode_entry  # noqa: PLC0415
    from raftq.raft.pysyncobj.replica import Replica  # noqa: PLC0415

    fatal: list[BaseException] = []
    replica = Replica(lambda: None, fatal.append)
    older = Machine()
    for m in (replica.machine, replica.machine, older):
        m.apply_entry(encode_entry([Enqueue(now_ms=5, queue="q", jobs=(NewJob(payload=b"x"),))]))
    current = replica.machine
    try:
        replica.install(older)
    except Exception as e:
        assert fatal == [e]
    assert replica.machine is current
    assert len(fatal) == 1 and "older snapshot" in str(fatal[0])
