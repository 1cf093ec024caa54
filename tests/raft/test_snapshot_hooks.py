"""raftq's snapshot file inside PySyncObj (raftq/raft/pysyncobj/snapshot_hooks.py), with a real
single-node PySyncObj in this process. The guards fail loudly if a PySyncObj upgrade changes
how it calls the serializer hooks."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import time
import warnings
from pathlib import Path

import pytest
from pysyncobj.config import SERIALIZER_STATE

from raftq.config import ClusterConfig
from raftq.core import Enqueue, Enqueued, Machine, NewJob, snapshot_bytes
from raftq.errors import DataError
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.pysyncobj.commit_rule import RaftqSyncObj
from raftq.raft.pysyncobj.election_hold import ElectionHold
from raftq.raft.pysyncobj.journal import DurabilitySeamError
from raftq.raft.pysyncobj.replica import Replica
from raftq.raft.pysyncobj.snapshot_hooks import SnapshotHooks, read_machine
from raftq.raft.snapshot_file import verify_file
from tests.embed.conftest import make_config

_COMPACT = "[raft]\nlog_compaction_min_entries = 5\nlog_compaction_min_time_s = 1"


async def _until(predicate: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _enqueue(node: RaftNode, n: int) -> None:
    for i in range(n):
        job = NewJob(payload=b"job-%d" % i)
        await node.submit(Enqueue(now_ms=node.now_ms(), queue="q", jobs=(job,)))


async def _started(config: ClusterConfig, node_id: str = "n1") -> RaftNode:
    """A node of ``config`` restarted and leading."""
    node = RaftNode(config, new_pysyncobj_engine(config, node_id))
    with warnings.catch_warnings():
        # PySyncObj's MetaStorer.getMeta reads the term/vote file without closing it, and its
        # TcpServer.bind leaks the socket of a failed attempt (the port can still be busy
        # right after the first node stopped; it retries). Both are collected here. The
        # constructor returns after the first bind attempt and the tick thread retries: the
        # leaked socket is dropped by a retry, so the filter lasts until the node leads
        # (bound). Seen twice in full runs on a busy machine: a retry after start() failed
        # the test with that ResourceWarning.
        warnings.simplefilter("ignore", ResourceWarning)
        await node.start()
        await _until(node.is_leader)
        gc.collect()
    return node


def test_version_pin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The hooks share the journal seam's pin (tests/raft/test_journal.py tests the check)."""
    monkeypatch.setattr("raftq.raft.pysyncobj.journal.PYSYNCOBJ_VERSION", "0.3.18")
    monkeypatch.setattr("raftq.raft.pysyncobj.journal.check_version.__defaults__", ("0.3.18",))
    with pytest.raises(DurabilitySeamError, match=r"pysyncobj 0\.3\.17 \(installed: 0\.3\.18\)"):
        SnapshotHooks(
            str(tmp_path / "raft.dump"),
            Replica(lambda: None, lambda e: None),
            ElectionHold(0.2),
            lambda e: None,
        )


async def test_guard_compaction_goes_through_our_hooks_and_restart_loads_it(
    tmp_path: Path,
) -> None:
    """If this fails after a PySyncObj upgrade, re-read its serializer.py and syncobj.py
    (__tryLogCompaction, __loadDumpFile) against raftq/raft/pysyncobj/snapshot_hooks.py."""
    config = make_config(tmp_path, 1, _COMPACT)
    dump = config.node_data_dir("n1") / "raft.dump"
    node = RaftNode(config, new_pysyncobj_engine(config, "n1"))
    await node.start()
    try:
        so = node.engine.syncobj
        serializer = so._SyncObj__serializer  # type: ignore[union-attr]
        # A custom serializer: PySyncObj must not fork (we do) nor write a pickle itself.
        assert serializer._Serializer__useFork is False
        assert serializer._Serializer__serializeChecker is not None
        # The transfer throttle wraps the method PySyncObj's sender calls, and the state it
        # resets after a compaction is where we expect it.
        assert serializer.getTransmissionData.__name__ == "get_transmission_data"
        assert isinstance(serializer._Serializer__transmissions, dict)
        await _until(node.is_leader)
        await _enqueue(node, 40)
        hooks = node.engine.snapshots
        assert hooks is not None
        await _until(lambda: hooks.writes >= 1 and dump.exists())
        info = verify_file(str(dump))  # our format, checksum fine
        assert not dump.with_name("raft.dump.tmp").exists()
        # The journal was truncated up to the snapshot (compaction completed).
        await _until(lambda: len(so._SyncObj__raftLog) < 40)  # type: ignore[union-attr]
        assert info.header.cluster == (config.node("n1").raft,)
        await node.barrier()
        with node.read() as m:
            before = (m.digest, len(m.jobs), m.applied)
    finally:
        await node.stop()

    # Restart: the dump is loaded by our deserializer (Replica._deserialize would raise).
    node = await _started(config)
    try:
        await _until(lambda: node.status().applied_index >= info.header.last[1])
        await _until(node.is_leader)
        # The journal entries after the snapshot are committed again by the new term's first
        # entry: wait for one of ours to be applied.
        await node.barrier()
        with node.read() as m:
            assert len(m.jobs) == before[1] == 40
            assert m.applied >= before[2]
    finally:
        await node.stop()


def _write_dump(tmp_path: Path, last_idx: int = 8) -> tuple[Path, Machine]:
    m = Machine()
    from raftq.core import encode_entry  # noqa: PLC0415

    m.apply_entry(encode_entry([Enqueue(now_ms=5, queue="q", jobs=(NewJob(payload=b"x"),))]))
    from raftq.core import write_snapshot  # noqa: PLC0415
    from raftq.raft.snapshot_file import RaftHeader, write_file  # noqa: PLC0415

    path = tmp_path / "raft.dump"
    header = RaftHeader(
        last=(b"\x01a", last_idx, 2), prev=(b"\x01b", last_idx - 1, 2), cluster=("h:1",)
    )
    write_file(str(path), header, lambda w: write_snapshot(m, w))
    return path, m


def test_deserializer_installs_the_machine_and_holds_the_election(tmp_path: Path) -> None:
    path, m = _write_dump(tmp_path)
    fatal: list[BaseException] = []
    replica = Replica(lambda: None, fatal.append)
    hold = ElectionHold(stall_s=0.2)
    hooks = SnapshotHooks(str(path), replica, hold, fatal.append)
    last, prev, cluster = hooks.deserialize(str(path))
    # Tuples with bytes: PySyncObj compares them with its journal's entries.
    assert last == (b"\x01a", 8, 2) and prev == (b"\x01b", 7, 2) and cluster == ["h:1"]
    assert snapshot_bytes(replica.machine) == snapshot_bytes(m)
    assert not fatal


def test_a_damaged_received_snapshot_is_fatal(tmp_path: Path) -> None:
    """PySyncObj would log the error and continue with an empty state: we stop instead."""
    path, _ = _write_dump(tmp_path)
    with path.open("r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xee")
    fatal: list[BaseException] = []
    replica = Replica(lambda: None, fatal.append)
    hooks = SnapshotHooks(str(path), replica, ElectionHold(stall_s=0.2), fatal.append)
    with pytest.raises(DataError, match="checksum mismatch"):
        hooks.deserialize(str(path))
    assert len(fatal) == 1 and isinstance(fatal[0], DataError)
    assert len(replica.machine.jobs) == 0


def test_load_machine_reports_a_body_that_does_not_decode(tmp_path: Path) -> None:
    from raftq.raft.snapshot_file import RaftHeader, write_file  # noqa: PLC0415

    path = tmp_path / "raft.dump"
    header = RaftHeader(last=(b"a", 2, 1), prev=(b"b", 1, 1), cluster=())
    # A well-checksummed file whose body is not a core snapshot (same 32-byte trailer rule).
    import hashlib  # noqa: PLC0415

    body = b"\x93\x01\x02\x03"
    write_file(str(path), header, lambda w: (w(body), w(hashlib.sha256(body).digest())))
    with pytest.raises(DataError, match=r"snapshot file .*not a raftq snapshot"):
        read_machine(str(path))


def test_serializer_forks_a_writer_and_reports_through_the_checker(tmp_path: Path) -> None:
    from pysyncobj.config import SERIALIZER_STATE  # noqa: PLC0415

    from raftq.core import encode_entry  # noqa: PLC0415

    dump = tmp_path / "raft.dump"
    replica = Replica(lambda: None, lambda e: None)
    replica.machine.apply_entry(
        encode_entry([Enqueue(now_ms=5, queue="q", jobs=(NewJob(payload=b"x"),))])
    )
    hooks = SnapshotHooks(str(dump), replica, ElectionHold(stall_s=0.2), lambda e: None)
    assert hooks.check() == SERIALIZER_STATE.NOT_SERIALIZING
    stale = tmp_path / "raft.dump.tmp"
    stale.write_bytes(b"a file PySyncObj would rename over the dump")
    hooks.serialize(str(stale), ((b"\x01l", 3, 1), (b"\x01p", 2, 1), ["127.0.0.1:9"]))
    assert not stale.exists()  # PySyncObj's own rename after we return finds nothing
    states = []
    deadline = time.monotonic() + 30
    while not states or states[-1] == SERIALIZER_STATE.SERIALIZING:
        assert time.monotonic() < deadline
        states.append(hooks.check())
        time.sleep(0.01)
    assert states[-1] == SERIALIZER_STATE.SUCCESS
    assert hooks.check() == SERIALIZER_STATE.NOT_SERIALIZING
    info = verify_file(str(dump))
    assert info.header.last == (b"\x01l", 3, 1) and info.header.cluster == ("127.0.0.1:9",)
    assert snapshot_bytes(read_machine(str(dump))) == snapshot_bytes(replica.machine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raft.dump"]


def test_a_writer_that_cannot_start_is_reported_failed_once(tmp_path: Path) -> None:
    """Else PySyncObj would wait for SUCCESS/FAILED forever and never compact again."""
    from pysyncobj.config import SERIALIZER_STATE  # noqa: PLC0415

    replica = Replica(lambda: None, lambda e: None)
    hooks = SnapshotHooks(
        str(tmp_path / "raft.dump"), replica, ElectionHold(stall_s=0.2), lambda e: None
    )
    hooks.serialize(str(tmp_path / "raft.dump.tmp"), (None, None, []))  # not log entries
    assert hooks.check() == SERIALIZER_STATE.FAILED
    assert hooks.check() == SERIALIZER_STATE.NOT_SERIALIZING


class _FakeSyncObj:
    """Only what ``SnapshotHooks.install`` touches: PySyncObj's real Serializer object."""

    def __init__(self, serializer: object) -> None:
        from pysyncobj.transport import Transport  # noqa: PLC0415

        self._SyncObj__serializer = serializer
        self._SyncObj__transport = Transport(None, None, [])
        self.disconnected: list[object] = []
        self._SyncObj__transport.setOnNodeDisconnectedCallback(self.disconnected.append)

    def _getConf(self) -> object:  # noqa: N802  # PySyncObj's name
        from pysyncobj import SyncObjConf  # noqa: PLC0415

        return SyncObjConf()


def test_a_snapshot_received_with_a_chunk_missing_is_dropped_not_installed(
    tmp_path: Path,
) -> None:
    """Bug fixed: PySyncObj resumes a transfer after a reconnection with the chunks of the
    dropped connection missing, and renamed the short file over the good dump (seen at 1M
    jobs: the follower then stopped on the damaged file)."""
    from pysyncobj.serializer import Serializer  # noqa: PLC0415

    (tmp_path / "leader").mkdir()
    sent, _ = _write_dump(tmp_path / "leader", last_idx=20)
    chunks = [sent.read_bytes()[i : i + 64] for i in range(0, sent.stat().st_size, 64)]
    follower = tmp_path / "follower"
    follower.mkdir()
    dump, _ = _write_dump(follower, last_idx=8)
    good = dump.read_bytes()
    assert good != sent.read_bytes()
    replica = Replica(lambda: None, lambda e: None)
    hooks = SnapshotHooks(str(dump), replica, ElectionHold(stall_s=0.2), lambda e: None)
    serializer = Serializer(str(dump), 64, True, hooks.serialize, hooks.deserialize, hooks.check)
    hooks.install(_FakeSyncObj(serializer), send_budget_s=0.1)

    def transfer(parts: list[bytes]) -> bool:
        results = [serializer.setTransmissionData((c, i == 0, False)) for i, c in enumerate(parts)]
        assert not any(results)
        return bool(serializer.setTransmissionData((b"", False, True)))

    assert transfer(chunks[:3] + chunks[4:]) is False  # one chunk lost
    assert dump.read_bytes() == good  # the good dump was not replaced
    assert not (follower / "raft.dump.1.tmp").exists()
    assert transfer(chunks) is True  # sent again, whole
    assert dump.read_bytes() == sent.read_bytes()


class _Follower:
    """The private PySyncObj state ``ElectionHold`` reads and writes."""

    def __init__(self) -> None:
        self._SyncObj__raftState = 0  # follower
        self._SyncObj__raftElectionDeadline = 0.0

    def _SyncObj__generateRaftTimeout(self) -> float:  # noqa: N802
        return 1.0


def test_election_hold_restarts_the_timer_after_stalls_and_while_receiving() -> None:
    from pysyncobj.monotonic import monotonic  # noqa: PLC0415

    so = _Follower()
    hold = ElectionHold(stall_s=2.0)
    hold.syncobj = so
    hold.on_tick()  # the first tick after start holds
    assert so._SyncObj__raftElectionDeadline > monotonic() + 0.9
    so._SyncObj__raftElectionDeadline = 0.0
    hold.on_tick()  # a quick tick does not
    assert so._SyncObj__raftElectionDeadline == 0.0
    hold._tick_end -= 3.0  # as if this tick had been running for 3 s
    hold.on_apply(so)  # an apply running past the stall threshold does
    assert so._SyncObj__raftElectionDeadline > 0.0
    so._SyncObj__raftElectionDeadline = 0.0
    hold.on_tick()  # and so does the end of that long tick
    assert so._SyncObj__raftElectionDeadline > 0.0
    hold.receiving(10.0)
    so._SyncObj__raftElectionDeadline = 0.0
    hold.on_tick()  # while a snapshot is arriving: held every tick
    assert so._SyncObj__raftElectionDeadline > 0.0
    hold.receiving(0.0)  # the last chunk
    so._SyncObj__raftElectionDeadline = 0.0
    hold.on_tick()
    assert so._SyncObj__raftElectionDeadline == 0.0
    so._SyncObj__raftState = 2  # a leader has no election timer to restart
    hold.hold()
    assert so._SyncObj__raftElectionDeadline == 0.0


def test_a_disconnection_restarts_the_transfer_to_that_follower(tmp_path: Path) -> None:
    """Bug fixed: after a disconnection PySyncObj resumed the transfer mid-file."""
    from pysyncobj.serializer import Serializer  # noqa: PLC0415

    dump, _ = _write_dump(tmp_path)
    replica = Replica(lambda: None, lambda e: None)
    hooks = SnapshotHooks(str(dump), replica, ElectionHold(stall_s=0.2), lambda e: None)
    serializer = Serializer(str(dump), 64, True, hooks.serialize, hooks.deserialize, hooks.check)
    so = _FakeSyncObj(serializer)
    hooks.install(so, send_budget_s=10.0)
    data, first, last = serializer.getTransmissionData("n2")
    assert first and not last
    assert not serializer.getTransmissionData("n2")[1]  # the second chunk
    so._SyncObj__transport._onNodeDisconnected("n2")
    assert so.disconnected == ["n2"]  # PySyncObj's own callback still runs
    again, first, _ = serializer.getTransmissionData("n2")
    assert first and again == data  # from the beginning
    hooks._cancel_transfer("n2")  # closes the file the transfer holds open


async def _jobs(node: RaftNode) -> list[int]:
    await node.barrier()  # everything in this node's log before the new term is applied
    with node.read() as m:
        return sorted(m.jobs)


async def test_a_crash_between_the_snapshot_and_the_journal_truncation_loses_nothing(
    tmp_path: Path,
) -> None:
    """Bug fixed (found by tests/integration/test_durability.py in CI: a job id handed out
    twice after kill -9 of every node). The snapshot writer renames the new dump into place,
    and the journal is truncated up to it a few ticks later: a crash in between leaves a
    journal that starts before the snapshot. At the next start PySyncObj then "clears" the
    journal down to the snapshot's last two entries; raftq kept the entries after them only
    if they all had the current term. After a term change they did not: the node came back
    with only the snapshot's state, and its log lost entries it had acknowledged.

    Here the crash window is held open: the checker never reports the written snapshot, so
    PySyncObj never truncates (what kill -9 at that moment leaves on disk); two restarts
    later (the first one moves the term on) every job must still be there."""
    config = make_config(tmp_path, 1, _COMPACT)  # a snapshot about every second
    dump = config.node_data_dir("n1") / "raft.dump"
    node = await _started(config)
    try:
        await _enqueue(node, 12)  # the next snapshot starts after a few entries
        enqueued = node.status().applied_index
        hooks = node.engine.snapshots
        assert hooks is not None
        real_check = hooks.check
        written: list[bool] = []

        def truncation_never_comes() -> int:
            state = real_check()
            # A snapshot started before the enqueues (the node's first one, at its start) is
            # let through: the window held open is that of a snapshot holding the jobs.
            if state == int(SERIALIZER_STATE.SUCCESS) and not any(written):
                written.append(verify_file(str(dump)).header.last[1] >= enqueued)
            return int(SERIALIZER_STATE.SERIALIZING) if any(written) else state

        serializer = node.engine.syncobj._SyncObj__serializer  # type: ignore[union-attr]
        serializer._Serializer__serializeChecker = truncation_never_comes
        await _until(lambda: any(written))
        snapshot_prev = verify_file(str(dump)).header.prev[1]
        await _enqueue(node, 20)  # after the snapshot, in this term
        before = await _jobs(node)
        journal = node.engine.syncobj._SyncObj__raftLog  # type: ignore[union-attr]
        assert journal[0][1] < snapshot_prev  # the journal was not truncated
    finally:
        await node.stop()
    assert len(before) == 32

    # The same node without compaction from now on: the dump stays the one above.
    plain = dataclasses.replace(
        config,
        raft=dataclasses.replace(
            config.raft, log_compaction_min_entries=10**8, log_compaction_min_time_s=7 * 86_400
        ),
    )
    for _ in range(2):  # the first start moves the term on, the second finds older terms
        node = await _started(plain)
        try:
            assert await _jobs(node) == before
            [job_id] = (await _enqueue_one(node)).ids
            assert job_id > before[-1]  # never an id handed out before
            before.append(job_id)
        finally:
            await node.stop()


async def _enqueue_one(node: RaftNode) -> Enqueued:
    result = await node.submit(
        Enqueue(now_ms=node.now_ms(), queue="q", jobs=(NewJob(payload=b"after"),))
    )
    assert isinstance(result, Enqueued), result
    return result


async def test_a_follower_answers_an_install_with_the_snapshot_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PySyncObj's own install path, on real nodes, goes through ``RaftqSyncObj``'s overrides
    (raftq/raft/pysyncobj/commit_rule.py): the follower that receives the leader's snapshot answers
    with the index after the snapshot's last entry. A follower stopped while the leader
    compacts past its log gets the snapshot when it comes back."""
    # Each answer PySyncObj gives right after an install: (what it passes, snapshot end + 1).
    answers: list[tuple[dict[str, object], int]] = []
    original = RaftqSyncObj._SyncObj__sendNextNodeIdx

    def recording(self: RaftqSyncObj, node: object, **kwargs: object) -> None:
        if self._raftq_installed_next is not None:
            answers.append((kwargs, self._SyncObj__raftLastApplied + 1))
            assert self._raftq_installed_next == answers[-1][1]
        original(self, node, **kwargs)

    monkeypatch.setattr(RaftqSyncObj, "_SyncObj__sendNextNodeIdx", recording)
    config = make_config(tmp_path, 3, _COMPACT)
    nodes = {
        spec.id: RaftNode(config, new_pysyncobj_engine(config, spec.id)) for spec in config.nodes
    }
    try:
        for node in nodes.values():
            await node.start()
        await _until(lambda: any(n.is_leader() for n in nodes.values()))
        leader = next(n for n in nodes.values() if n.is_leader())
        follower_id = next(i for i, n in nodes.items() if n is not leader)
        await nodes[follower_id].stop()
        await _enqueue(leader, 30)
        hooks = leader.engine.snapshots
        assert hooks is not None
        writes = hooks.writes
        await _until(lambda: hooks.writes >= writes + 2)  # compacted past the follower's log
        nodes[follower_id] = RaftNode(config, new_pysyncobj_engine(config, follower_id))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            await nodes[follower_id].start()
        await _until(lambda: bool(answers))
    finally:
        for node in nodes.values():
            await node.stop()
    # PySyncObj's "success, my log end + 1", which the override answers with snapshot end + 1
    # (tests/raft/test_commit_rule.py checks what it then sends).
    assert answers[0][0] == {"success": True}
