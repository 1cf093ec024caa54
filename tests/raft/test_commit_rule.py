"""Bug fixed: a deposed leader applied entries the cluster never committed
(raftq/raft/pysyncobj/commit_rule.py; found reading PySyncObj's follower code).

Real PySyncObj nodes in this process, ticked by the test (``autoTick=False``), over real TCP on
loopback. Three nodes elect a leader and commit a command; the two followers then go away, so
the leader appends commands it can never commit (an isolated leader). A new leader of a higher
term then reaches it with the message PySyncObj's leader sends while its snapshot is being
written or its transfer is throttled: an AppendEntries with no ``prevLogIdx``, no data and the
new leader's commit index. PySyncObj 0.3.17 then set the commit index to the end of the old
leader's log and applied the uncommitted commands; ``RaftqSyncObj`` applies nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated

from raftq.raft.pysyncobj.commit_rule import RaftqSyncObj, follower_view
from raftq.raft.pysyncobj.journal import durable_journal
from tests.integration.cluster import free_ports


class Counter(SyncObjConsumer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.applied: list[int] = []

    @replicated  # type: ignore[misc]
    def add(self, n: int) -> None:
        self.applied.append(n)


class Cluster:
    def __init__(self, make: Callable[..., SyncObj], tmp: Path) -> None:
        ports = free_ports(3)
        self.addrs = [f"127.0.0.1:{p}" for p in ports]
        self.counters = [Counter() for _ in ports]
        self.diverged: list[tuple[int, int, int]] = []
        self.nodes: list[SyncObj | None] = []
        for i, addr in enumerate(self.addrs):
            conf = SyncObjConf(
                autoTick=False,
                journalFile=str(tmp / f"n{i}.journal"),
                appendEntriesPeriod=0.05,
                raftMinTimeout=0.3,
                raftMaxTimeout=0.6,
                leaderFallbackTimeout=30.0,  # the isolated leader stays leader in this test
            )
            others = [a for a in self.addrs if a != addr]
            self.nodes.append(make(addr, others, conf, [self.counters[i]], self._diverged))

    def _diverged(self, index: int, local_term: int, leader_term: int) -> None:
        self.diverged.append((index, local_term, leader_term))

    def live(self) -> Iterator[SyncObj]:
        return (n for n in self.nodes if n is not None)

    def tick_until(self, done: Callable[[], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, "condition not reached"
            for n in self.live():
                n.doTick(0.005)

    def leader(self) -> int | None:
        for i, n in enumerate(self.nodes):
            if n is not None and n._isLeader():
                return i
        return None

    def stop(self, i: int) -> None:
        node = self.nodes[i]
        assert node is not None
        node.destroy()
        self.nodes[i] = None

    def close(self) -> None:
        for i, n in enumerate(self.nodes):
            if n is not None:
                self.stop(i)


def _raftq(addr: str, others: list[str], conf: SyncObjConf, consumers: list[Any], div: Any) -> Any:
    return RaftqSyncObj(addr, others, conf=conf, consumers=consumers, on_diverged=div)


def _pysyncobj(
    addr: str, others: list[str], conf: SyncObjConf, consumers: list[Any], _: Any
) -> SyncObj:
    return SyncObj(addr, others, conf=conf, consumers=consumers)


def _raftq_durable(
    addr: str, others: list[str], conf: SyncObjConf, consumers: list[Any], div: Any
) -> Any:
    """raftq's journal too (no fsync): it keeps a follower's entries past what a message
    matched, which PySyncObj's FileJournal drops."""
    with durable_journal(sync=False):
        return _raftq(addr, others, conf, consumers, div)


def _isolated_leader(make: Callable[..., SyncObj], tmp: Path) -> tuple[Cluster, int]:
    """A cluster whose leader committed add(1) and then, alone, appended add(2) and add(3)."""
    c = Cluster(make, tmp)
    c.tick_until(lambda: c.leader() is not None)
    lead = c.leader()
    assert lead is not None
    c.counters[lead].add(1)
    c.tick_until(lambda: all(x.applied == [1] for x in c.counters))
    for i in range(3):
        if i != lead:
            c.stop(i)
    c.counters[lead].add(2)
    c.counters[lead].add(3)
    node = c.nodes[lead]
    assert node is not None
    end = node.raftLastApplied + 3  # the no-op of its term was applied with add(1)
    c.tick_until(lambda: node._SyncObj__getCurrentLogIndex() >= end - 1)
    for _ in range(20):
        node.doTick(0.005)
    assert c.counters[lead].applied == [1], "an isolated leader cannot commit"
    return c, lead


def _nothing_to_send(node: SyncObj, commit_index: int) -> None:
    """What a new leader sends while it has no snapshot chunk ready for this follower."""
    new_leader = next(iter(node.otherNodes))
    message = {
        "type": "append_entries",
        "term": node.raftCurrentTerm + 1,
        "commit_index": commit_index,
        "serialized": None,
    }
    node._SyncObj__transport._onMessageReceived(new_leader, message)
    for _ in range(10):
        node.doTick(0.005)


def test_a_deposed_leader_applies_nothing_it_did_not_commit(tmp_path: Path) -> None:
    c, lead = _isolated_leader(_raftq, tmp_path)
    try:
        node = c.nodes[lead]
        assert node is not None
        commit = node.raftCommitIndex
        _nothing_to_send(node, commit_index=node.raftLastApplied + 100)
        assert c.counters[lead].applied == [1]
        assert node.raftCommitIndex == commit
        assert not node._isLeader()  # it did follow the new leader's term
        # Progress is still reported as the leader's, for readiness.
        assert node._SyncObj__leaderCommitIndex == node.raftLastApplied + 100
        assert c.diverged == []
    finally:
        c.close()


def test_a_kept_tail_is_committed_only_once_a_message_carried_it(tmp_path: Path) -> None:
    """The journal keeps the deposed leader's add(2) and add(3) when a new leader's
    AppendEntries matches the entry before them and carries nothing (PySyncObj's journal
    drops them). PySyncObj would then commit up to its log end, applying them; Raft's rule,
    the last entry the message carried, commits nothing new."""
    c, lead = _isolated_leader(_raftq_durable, tmp_path)
    try:
        node = c.nodes[lead]
        assert node is not None
        end = node._SyncObj__getCurrentLogIndex()
        matched = node._SyncObj__getEntries(end - 2, 1)[0]  # the entry before add(2)
        message = {
            "type": "append_entries",
            "term": node.raftCurrentTerm + 1,
            "commit_index": end + 100,
            "prevLogIdx": matched[1],
            "prevLogTerm": matched[2],
            "entries": [],
        }
        node._SyncObj__transport._onMessageReceived(next(iter(node.otherNodes)), message)
        for _ in range(10):
            node.doTick(0.005)
        assert node._SyncObj__getCurrentLogIndex() == end  # kept
        assert node.raftCommitIndex == matched[1]
        assert c.counters[lead].applied == [1]
    finally:
        c.close()


def test_an_install_is_answered_with_the_snapshot_end(tmp_path: Path) -> None:
    """PySyncObj answers an install with its log end + 1, which the leader takes as the
    follower's match index; raftq answers with the snapshot's end + 1 (the log may go on with
    entries the leader has not verified)."""
    c, lead = _isolated_leader(_raftq, tmp_path)
    try:
        node = c.nodes[lead]
        assert node is not None
        sent: list[dict[str, Any]] = []
        node._SyncObj__transport.send = lambda _node, message: sent.append(message)
        peer = next(iter(node.otherNodes))
        node._raftq_installed_next = 3  # what _SyncObj__loadDumpFile(clearJournal=True) sets
        node._SyncObj__sendNextNodeIdx(peer, success=True)
        node._SyncObj__sendNextNodeIdx(peer, success=True)  # once only
        assert [m["next_node_idx"] for m in sent] == [3, node._SyncObj__getCurrentLogIndex() + 1]
    finally:
        c.close()


def test_pysyncobj_alone_applies_them_the_old_behaviour(tmp_path: Path) -> None:
    """The same steps on PySyncObj's own class: the uncommitted add(2) and add(3) run.
    If this ever fails, PySyncObj fixed the rule and commit_rule.py can go."""
    c, lead = _isolated_leader(_pysyncobj, tmp_path)
    try:
        node = c.nodes[lead]
        assert node is not None
        _nothing_to_send(node, commit_index=node.raftLastApplied + 100)
        assert c.counters[lead].applied == [1, 2, 3]
    finally:
        c.close()


def test_replacing_an_applied_entry_stops_the_node(tmp_path: Path) -> None:
    """The fail-stop: were an uncommitted entry applied anyway, the leader's entry of another
    term at that index reports the divergence instead of being silently taken."""
    c, lead = _isolated_leader(_raftq, tmp_path)
    try:
        node = c.nodes[lead]
        assert node is not None
        stale = node._SyncObj__getCurrentLogIndex()
        node._SyncObj__raftCommitIndex = stale  # as the old rule did
        node.doTick(0.005)
        assert c.counters[lead].applied == [1, 2, 3]
        first_stale = stale - 1
        prev = node._SyncObj__getEntries(first_stale - 1, 1)[0]
        term = node.raftCurrentTerm + 1
        message = {
            "type": "append_entries",
            "term": term,
            "commit_index": first_stale,
            "prevLogIdx": prev[1],
            "prevLogTerm": prev[2],
            "entries": [(b"\x00", first_stale, term)],
        }
        node._SyncObj__transport._onMessageReceived(next(iter(node.otherNodes)), message)
        assert c.diverged == [(first_stale, term - 1, term)]
    finally:
        c.close()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "append_entries", "term": 2, "commit_index": 9, "serialized": None}, 4),
        ({"type": "append_entries", "term": 2, "commit_index": 3, "serialized": None}, 3),
        # With prevLogIdx: capped at the last entry the message carries.
        ({"type": "append_entries", "term": 2, "commit_index": 9, "prevLogIdx": 8}, 8),
        ({"type": "append_entries", "commit_index": 9, "prevLogIdx": 5, "entries": [1, 2]}, 7),
        ({"type": "append_entries", "commit_index": 6, "prevLogIdx": 5, "entries": [1, 2]}, 6),
        ({"type": "append_entries", "commit_index": 9, "prevLogIdx": 5, "entries": []}, 5),
        # A chunk of a large entry: the last one carries the entry, the others nothing.
        (
            {
                "type": "append_entries",
                "commit_index": 9,
                "prevLogIdx": 5,
                "transmission": "finish",
            },
            6,
        ),
        (
            {"type": "append_entries", "commit_index": 9, "prevLogIdx": 5, "transmission": "start"},
            9,
        ),
        ({"type": "request_vote", "term": 2, "commit_index": 9}, 9),
    ],
)
def test_follower_view(message: dict[str, Any], expected: int) -> None:
    assert follower_view(message, 4)["commit_index"] == expected
