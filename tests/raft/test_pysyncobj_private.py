"""Guard of the PySyncObj 0.3.17 private names raftq relies on (raftq/raft/pysyncobj/).

Every module under raftq/raft/pysyncobj/ lists the private names it uses in its docstring
("Relies on PySyncObj 0.3.17 private behaviour:"). The behaviour behind most of them is guarded
by the tests named there; this test guards that each name still exists on a real SyncObj,
FileJournal, Serializer and transport of the installed PySyncObj, so an upgrade that renames
one fails here, by name, instead of deep inside a node.
"""

from __future__ import annotations

from pathlib import Path

import pysyncobj.syncobj as syncobj_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.journal import FileJournal
from pysyncobj.version import VERSION

from raftq.raft.pysyncobj.journal import VERIFIED_VERSIONS
from tests.integration.cluster import free_ports

# Attributes a SyncObj has once built (read or written by raftq).
_SYNCOBJ_ATTRIBUTES = (
    "_SyncObj__raftState",  # engine.py, election_hold.py
    "_SyncObj__leaderCommitIndex",  # engine.py, commit_rule.py
    "_SyncObj__raftLog",  # engine.py, commit_rule.py, journal.py
    "_SyncObj__raftCommitIndex",  # commit_rule.py
    "_SyncObj__raftCurrentTerm",  # commit_rule.py
    "_SyncObj__raftLastApplied",  # commit_rule.py
    "_SyncObj__raftElectionDeadline",  # election_hold.py
    "_SyncObj__raftLeader",  # election_hold.py
    "_SyncObj__transferInProgress",  # election_hold.py
    "_SyncObj__noopIDx",  # engine.py
    "_SyncObj__serializer",  # snapshot_hooks.py
    "_SyncObj__transport",  # snapshot_hooks.py
    "_SyncObj__otherNodes",  # commit_rule.py, tick_wake.py
)
# Methods raftq calls or overrides (commit_rule.py overrides the last three).
_SYNCOBJ_METHODS = (
    "_isLeader",  # engine.py
    "_getLeader",  # engine.py
    "_checkCommandsToApply",  # commit_rule.py overrides it
    "_SyncObj__generateRaftTimeout",  # election_hold.py
    "_SyncObj__getEntries",  # commit_rule.py, backup_writer.py
    "_SyncObj__onMessageReceived",  # commit_rule.py
    "_SyncObj__loadDumpFile",  # commit_rule.py
    "_SyncObj__sendNextNodeIdx",  # commit_rule.py
    "_SyncObj__getCurrentLogIndex",  # commit_rule.py, tick_wake.py
)
_FILE_JOURNAL_ATTRIBUTES = (  # journal.py
    "_FileJournal__meta",
    "_FileJournal__metaSaved",
    "_FileJournal__metaStorer",
)
_SERIALIZER_ATTRIBUTES = (  # snapshot_hooks.py
    "_Serializer__incomingTransmissionFile",
    "_Serializer__transmissions",
    "getTransmissionData",
    "setTransmissionData",
)
_TRANSPORT_ATTRIBUTES = (  # snapshot_hooks.py
    "_onNodeDisconnectedCallback",
    "setOnNodeDisconnectedCallback",
    # identity.py (TCPTransport's handshake)
    "_sendSelfAddress",
    "_onIncomingMessageReceived",
    "_onMessageReceived",
    "_onDisconnected",
    "_onNodeConnected",
    "_onTick",
    "_connections",
    "_unknownConnections",
    "_nodeAddrToNode",
    "_connToNode",
)


class _Consumer(SyncObjConsumer):  # type: ignore[misc]
    @replicated  # type: ignore[untyped-decorator]
    def apply(self, raw: bytes) -> None:
        pass


def _missing(obj: object, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not hasattr(obj, name)]


def test_guard_the_installed_pysyncobj_is_a_verified_version() -> None:
    assert VERSION in VERIFIED_VERSIONS


def test_guard_the_private_names_raftq_uses_exist_on_a_real_syncobj(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    conf = SyncObjConf(
        autoTick=False,
        journalFile=str(tmp_path / "raft.journal"),
        fullDumpFile=str(tmp_path / "raft.dump"),
        bindAddress=f"127.0.0.1:{port}",
    )
    consumer = _Consumer()
    so = SyncObj(f"127.0.0.1:{port}", [], conf=conf, consumers=[consumer])
    try:
        assert _missing(so, _SYNCOBJ_ATTRIBUTES) == []
        assert _missing(so, _SYNCOBJ_METHODS) == []
        journal = so._SyncObj__raftLog
        assert isinstance(journal, FileJournal)
        assert _missing(journal, _FILE_JOURNAL_ATTRIBUTES) == []
        assert _missing(so._SyncObj__serializer, _SERIALIZER_ATTRIBUTES) == []
        assert _missing(so._SyncObj__transport, _TRANSPORT_ATTRIBUTES) == []
        # replica.py reaches its SyncObj through the consumer attribute PySyncObj sets.
        assert consumer._syncObj is so
        # The journal seam swaps this module attribute around the constructor.
        assert callable(syncobj_module.createJournal)
        # engine.py maps these outcomes; PySyncObj's numbering must not have moved.
        reasons = {
            name: getattr(FAIL_REASON, name)
            for name in (
                "SUCCESS",
                "QUEUE_FULL",
                "MISSING_LEADER",
                "DISCARDED",
                "NOT_LEADER",
                "LEADER_CHANGED",
                "REQUEST_DENIED",
            )
        }
        assert len(set(reasons.values())) == len(reasons)
    finally:
        so.destroy()


def test_guard_the_notify_pipe_tick_wake_uses_exists_with_raftq_settings(tmp_path: Path) -> None:
    """tick_wake.py writes to PySyncObj's notify pipe, which PySyncObj makes (and writes to for
    every queued command) only with ``appendEntriesUseBatch`` off, raftq's setting."""
    (port,) = free_ports(1)
    conf = SyncObjConf(
        autoTick=False,
        appendEntriesUseBatch=False,
        journalFile=str(tmp_path / "raft.journal"),
        fullDumpFile=str(tmp_path / "raft.dump"),
        bindAddress=f"127.0.0.1:{port}",
    )
    so = SyncObj(f"127.0.0.1:{port}", [], conf=conf, consumers=[_Consumer()])
    try:
        assert syncobj_module.PIPE_NOTIFIER_ENABLED
        assert callable(so._SyncObj__pipeNotifier.notify)
    finally:
        so.destroy()
