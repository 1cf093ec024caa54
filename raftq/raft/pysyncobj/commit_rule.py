"""Raft's follower commit rule on top of PySyncObj, and a fail-stop when it was broken anyway.

Bug fixed (found reading PySyncObj 0.3.17 while explaining the jepsen-style partition-leader
finding of 2026-11-28; that finding itself was the checker's, see
``jepsen-style/evidence/2026-11-28-partition-leader/README.md``): PySyncObj's follower, on every
AppendEntries of the current term, sets its commit index to ``min(leader's commit index, its
own last log index)``, also on the messages that carry no ``prevLogIdx``: snapshot chunks, and
the "nothing to send now" message a leader sends while its snapshot is being written or its
transfer is throttled. Those messages never check that the follower's log matches the leader's.
A deposed leader that rejoins holding entries it appended while isolated (never committed,
absent from the new leader's log) therefore commits and *applies* them at once; PySyncObj
replaces them a moment later (its ``truncating already-applied log entries`` line), but the
state machine has already run them: a job leased on that node only, a state no other node has
(``tests/raft/test_commit_rule.py`` shows it on real PySyncObj nodes).

Raft's rule is ``commitIndex = min(leaderCommit, index of the last new entry)``: only entries
that matched the leader's log may be committed, and a message without ``prevLogIdx`` matched
nothing.
``RaftqSyncObj`` therefore hides the leader's commit index from such messages (the follower
keeps its own; ``leaderCommitIndex``, which only reports progress, still shows the leader's).
A completed snapshot install sets the applied index itself, and the next regular
AppendEntries, whose previous entry matched, advances the commit index as Raft allows.

The log end is not "the last new entry" either, since the journal keeps what Raft keeps
(``DurableFileJournal``, "Never forgetting an acknowledged entry"): a follower's log may go
on past what a message matched, with entries of an older term that the leader has not
verified yet. The commit index a message may set is therefore capped at the last entry it
carried (``prevLogIdx`` plus its entries), and a snapshot install is answered with the
snapshot's end, not the log's (PySyncObj answers with its log end, and the leader takes
the answer as the follower's match index).

An older snapshot (Bug fixed, finding 2 of the safety issue "an acknowledged job is never
lost"): a leader sends its snapshot to a follower whose next index is at or below its own
log start, and that index can be stale (a late "reset" answer moves it back). A follower
whose own compaction went past the leader's snapshot then installed it: its log replaced by
the snapshot's two entries, its machine and applied index rolled back, while the leader
went on counting it for the entries it no longer held. Raft (and etcd: a snapshot at or
below the committed index is ignored and answered with that index) never installs such a
snapshot. ``raftq_refuses_snapshot`` is asked by the snapshot hooks once the last chunk has
arrived and been verified, before the received file replaces the dump
(``raftq.raft.pysyncobj.snapshot_hooks``): a snapshot that ends at or below this node's commit index
(which is at least its applied index) is dropped, and the node answers "success, next index
= commit index + 1" with ``reset``, so the leader sets its next index there and takes the
commit index as a match index (committed entries are in every later leader's log).

Fail-stop: an AppendEntries that replaces an entry this node already applied with an entry of
another term means the state machine ran a command the cluster did not commit. Raft rules
that out; if it happens anyway the node stops (``on_diverged``) instead of serving and voting
with a state no other node has. Recovery is a wiped data dir (docs/operations.md).

The leader's own copy (a latency change, same rule): PySyncObj's leader appends an entry to
its journal (``DurableFileJournal``: on disk when the call returns) and only then sends it to
the followers, so every commit waited for two disk writes one after the other. Raft only
needs the leader's copy durable before the leader counts it towards a majority (etcd's
leader writes in parallel with replication too). ``RaftqSyncObj._checkCommandsToApply``
therefore lets the leader send first and write after: the appends made while it drains its
queue of new commands are written durably together when it is done
(``DurableFileJournal.deferred_sync``), still inside the same tick. PySyncObj counts the
leader's log towards the commit index only at the start of a tick (``_onTick``), so it never
counts an entry that is not on its disk; and a client hears of its command only once it is
committed and applied, a tick later (``tests/raft/test_fsync_order.py`` checks the order
with strace). A node that is a majority alone wakes that tick itself
(``raftq.raft.pysyncobj.tick_wake``).

The follower's copy, batched (the same rule): PySyncObj's follower adds the entries of an
AppendEntries one by one and then answers. The adds made while one message is handled are
held (``DurableFileJournal.deferred_sync``) and written in one durable write just before
the answer is sent (``_SyncObj__sendNextNodeIdx``), so the answer still comes after the
entries are on disk, at one write per message instead of one per entry.

Pinned with the journal seam (``raftq.raft.pysyncobj.journal.VERIFIED_VERSIONS``): it overrides
SyncObj's name-mangled message handler, which the constructor registers with the transport,
so it is in place before the first message arrives.

Relies on PySyncObj 0.3.17 private behaviour:
- overrides ``_SyncObj__onMessageReceived``, ``_SyncObj__loadDumpFile`` and
  ``_SyncObj__sendNextNodeIdx`` (name-mangled methods, with their arguments) and
  ``_checkCommandsToApply``: ``tests/raft/test_commit_rule.py`` (PySyncObj's behaviour and
  ours on real nodes), ``tests/raft/test_older_snapshot.py``,
  ``tests/raft/test_fsync_order.py``;
- reads/writes ``_SyncObj__leaderCommitIndex``, ``_SyncObj__raftCommitIndex``,
  ``_SyncObj__raftCurrentTerm``, ``_SyncObj__raftLastApplied``, ``_SyncObj__raftLog``, calls
  ``_SyncObj__getEntries``, ``_SyncObj__getCurrentLogIndex`` and sends through
  ``_SyncObj__transport`` (the ``next_node_idx`` answer, with ``raftq_digest``): the same
  tests, ``tests/raft/test_cluster_events.py``, ``tests/raft/test_digest_watch.py``, and
  ``tests/raft/test_pysyncobj_private.py`` (every name exists on a real SyncObj).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pysyncobj import SyncObj
from raftq.raft.pysyncobj.journal import DurableFileJournal, check_version
from raftq.raft.pysyncobj.tick_wake import wake_after_append

__all__ = ["Diverged", "RaftqSyncObj", "follower_view"]

logger = logging.getLogger(__name__)

# on_diverged(index, local_term, leader_term): an applied entry is being replaced.
Diverged = Callable[[int, int, int], None]


def follower_view(message: Any, own_commit: int) -> Any:
    """The message PySyncObj's follower may act on: an AppendEntries whose commit index is
    capped where Raft's rule puts it, at the last entry it carries (``prevLogIdx`` plus its
    entries), or at ``own_commit`` without ``prevLogIdx`` (it matched nothing). Anything else
    is returned as is."""
    if not isinstance(message, dict) or message.get("type") != "append_entries":
        return message
    commit = message.get("commit_index")
    if not isinstance(commit, int):
        return message
    cap = _last_new_entry(message) if "prevLogIdx" in message else own_commit
    if cap is None or commit <= cap:
        return message
    return {**message, "commit_index": cap}


def _last_new_entry(message: dict[str, Any]) -> int | None:
    """The index of the last entry an AppendEntries with ``prevLogIdx`` carries; ``None`` for
    a chunk of a large entry other than its last (PySyncObj returns before it looks at the
    commit index)."""
    prev = message["prevLogIdx"]
    transmission = message.get("transmission")
    if not isinstance(prev, int) or transmission not in (None, "finish"):
        return None
    return prev + (1 if transmission == "finish" else len(message.get("entries") or ()))


class RaftqSyncObj(SyncObj):  # type: ignore[misc]
    """SyncObj with Raft's follower commit rule (see the module docstring).

    Args:
        on_diverged: called on the tick thread when an applied entry would be replaced.
        *args, **kwargs: as for ``SyncObj``.
    """

    def __init__(
        self,
        *args: Any,
        on_diverged: Diverged,
        start_members: Sequence[str] | None = None,
        vote_hold: bool = False,
        digest: Callable[[], str] | None = None,
        on_peer_digest: Callable[[str, int, str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        check_version()
        # A follower adds [applied index, digest] to its answers; the leader hands what it
        # gets to on_peer_digest(raft address, index, digest) (raftq.raft.pysyncobj.digests).
        self._raftq_digest = digest
        self._raftq_on_peer_digest = on_peer_digest
        # The other voters from the data dir (raftq.raft.pysyncobj.membership): replace the
        # snapshot's cluster when the snapshot is loaded at start, since PySyncObj does not
        # replay the membership entries of the journal after it.
        self._raftq_start_members = None if start_members is None else list(start_members)
        self._raftq_loading_at_start = False
        # A node whose data dir is new (a new or wiped disk) grants no vote to a candidate
        # with history until it has caught up with a leader once (raftq_release_votes): its
        # empty log would let a candidate that lacks committed entries win (issue 19).
        self.raftq_vote_hold = vote_hold
        self.raftq_held_votes = 0  # vote requests refused meanwhile
        self._raftq_on_diverged = on_diverged
        # The answer to the message being handled, once it installed a snapshot: the index
        # after the snapshot's last entry (see _SyncObj__sendNextNodeIdx).
        self._raftq_installed_next: int | None = None
        # Set while a message is handled whose snapshot was refused as older than this
        # node's commit index (raftq_refuses_snapshot): the index to answer with.
        self._raftq_refused_next: int | None = None
        self.raftq_refused_snapshots = 0  # how many (for tests and the log)
        self.raftq_ignored_votes = 0  # vote requests from non-voters dropped
        self.raftq_match_resets = 0  # followers found to have lost acknowledged entries
        super().__init__(*args, **kwargs)

    # PySyncObj's own name for its transport callback: SyncObj.__init__ registers
    # ``self.__onMessageReceived``, which resolves to this override.
    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        handle = SyncObj._SyncObj__onMessageReceived
        if (
            isinstance(message, dict)
            and message.get("type") == "request_vote"
            and node not in self._SyncObj__otherNodes
        ):
            # A vote asked by a node that is not a voter here (removed, not yet added, or
            # started with a TOML listing nodes the cluster does not have): its term must not
            # depose our leader, and PySyncObj has no pre-vote to stop it (issue 19).
            self.raftq_ignored_votes += 1
            return
        if (
            self.raftq_vote_hold
            and isinstance(message, dict)
            and message.get("type") == "request_vote"
            and message.get("last_log_index", 0) > 1  # index 1: the empty log's no-op
        ):
            self.raftq_held_votes += 1
            return
        if isinstance(message, dict) and message.get("type") == "next_node_idx":
            handle(self, node, message)
            self._forget_lost_entries(node, message)
            self._peer_digest(node, message.get("raftq_digest"))
            return
        if not isinstance(message, dict) or message.get("type") != "append_entries":
            handle(self, node, message)
            return
        trimmed = message
        if "prevLogIdx" in message:
            self._check_applied(message)
            trimmed = self._skip_applied(message)
        self._raftq_installed_next = None
        self._raftq_refused_next = None
        guarded = follower_view(trimmed, self._SyncObj__raftCommitIndex)
        journal = self._SyncObj__raftLog
        if isinstance(journal, DurableFileJournal):
            # The message's entries are written in one durable write, before the answer
            # (_SyncObj__sendNextNodeIdx) or at the end of the block, whichever comes first.
            with journal.deferred_sync():
                handle(self, node, guarded)
        else:
            handle(self, node, guarded)
        refused, self._raftq_refused_next = self._raftq_refused_next, None
        if refused is not None:
            # PySyncObj sends nothing when a transfer is not installed: answer like etcd.
            self._SyncObj__sendNextNodeIdx(node, reset=True, nextNodeIdx=refused, success=True)
        reported: int | None = self._SyncObj__leaderCommitIndex  # type: ignore[has-type]
        if guarded is not trimmed and reported == guarded["commit_index"]:
            self._SyncObj__leaderCommitIndex = message["commit_index"]

    def _checkCommandsToApply(self) -> None:  # noqa: N802  # PySyncObj's name
        """Propose the queued commands; the leader's appends are made durable after they were
        sent (see the module docstring), then a single voter wakes its next tick to commit
        them."""
        journal = self._SyncObj__raftLog
        end = self._SyncObj__getCurrentLogIndex()
        if not isinstance(journal, DurableFileJournal):
            super()._checkCommandsToApply()
        else:
            with journal.deferred_sync():
                super()._checkCommandsToApply()
        # The appends are durable now; a single voter commits them on the next tick, which
        # nothing else would wake before the poll timeout (raftq.raft.pysyncobj.tick_wake).
        wake_after_append(self, end)

    # PySyncObj's name: SyncObj calls ``self.__loadDumpFile`` at start (``clearJournal`` false)
    # and once a snapshot from the leader was received (true), then answers the leader.
    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:  # noqa: N802, N803
        self._raftq_loading_at_start = not clearJournal
        try:
            SyncObj._SyncObj__loadDumpFile(self, clearJournal)
        finally:
            self._raftq_loading_at_start = False
        if clearJournal:
            self._raftq_installed_next = self._SyncObj__raftLastApplied + 1

    # PySyncObj's name: called by __loadDumpFile with the snapshot's cluster.
    def _SyncObj__updateClusterConfiguration(self, newNodes: list[Any]) -> None:  # noqa: N802, N803
        """Our snapshot header stores addresses, which PySyncObj compares with its own Node
        (never equal): drop this node from the list, or it would count itself twice. At start
        the data dir's membership (journal changes included) replaces the snapshot's."""
        nodes = newNodes
        if self._raftq_loading_at_start and self._raftq_start_members is not None:
            nodes = self._raftq_start_members
        own = self._SyncObj__selfNode.id
        others = [n for n in nodes if getattr(n, "id", n) != own]
        SyncObj._SyncObj__updateClusterConfiguration(self, others)

    def _SyncObj__sendNextNodeIdx(  # noqa: N802  # PySyncObj's name and arguments
        self,
        node: Any,
        reset: bool = False,
        nextNodeIdx: int | None = None,  # noqa: N803
        success: bool = False,
    ) -> None:
        """After an install, PySyncObj answers "success, next index = my log end + 1", and
        the leader takes log end as this follower's match index. The journal may have kept
        entries past the snapshot that the leader has not verified: answer with the
        snapshot's end instead (the leader then sends from there and the entries that
        follow are checked as usual)."""
        journal = self._SyncObj__raftLog
        if isinstance(journal, DurableFileJournal):
            journal.sync_held()  # a follower answers only for entries on its disk
        installed, self._raftq_installed_next = self._raftq_installed_next, None
        answer = installed if success and nextNodeIdx is None else nextNodeIdx
        if self._raftq_digest is None:
            SyncObj._SyncObj__sendNextNodeIdx(self, node, reset, answer, success)
            return
        # PySyncObj's message, plus this node's applied index and digest (an earlier raftq
        # leader ignores the extra key).
        self._SyncObj__transport.send(
            node,
            {
                "type": "next_node_idx",
                "next_node_idx": (
                    self._SyncObj__getCurrentLogIndex() + 1 if answer is None else answer
                ),
                "reset": reset,
                "success": success,
                "raftq_digest": [self._SyncObj__raftLastApplied, self._raftq_digest()],
            },
        )

    def _peer_digest(self, node: Any, report: Any) -> None:
        """Leader: a follower's ``[applied index, digest]``, if it sent a well-formed one."""
        if self._raftq_on_peer_digest is None or not self._isLeader():
            return
        if not (isinstance(report, list) and len(report) == 2):
            return
        index, digest = report
        if isinstance(index, int) and isinstance(digest, str):
            self._raftq_on_peer_digest(str(node.id), index, digest)

    def _forget_lost_entries(self, node: Any, message: dict[str, Any]) -> None:
        """Leader: a follower that answers "my log ends before ``next_node_idx``" below what it
        acknowledged lost its disk (wiped data dir): its match index goes back, so that the
        entries it no longer holds are not counted as stored on it (PySyncObj only ever
        raises a match index)."""
        if message.get("success") or not message.get("reset"):
            return
        match = self._SyncObj__raftMatchIndex
        held = match.get(node)
        next_idx = message.get("next_node_idx")
        if held is not None and isinstance(next_idx, int) and held >= next_idx:
            match[node] = next_idx - 1
            self.raftq_match_resets += 1

    def raftq_release_votes(self) -> None:
        """Grant votes normally from now on (called once this node has caught up)."""
        self.raftq_vote_hold = False

    def raftq_refuses_snapshot(self, last_idx: int) -> bool:
        """Tick thread, from the snapshot hooks, when a snapshot from the leader was received
        whole and verified, before it replaces anything: whether it must be dropped because it
        ends at or below what this node committed or applied (see the module docstring). The
        answer to the leader is sent once PySyncObj is done with the message."""
        position = max(self._SyncObj__raftCommitIndex, self._SyncObj__raftLastApplied)
        if last_idx > position:
            return False
        self._raftq_refused_next = position + 1
        self.raftq_refused_snapshots += 1
        logger.info(
            "snapshot from the leader up to entry %d ignored: this node has committed up to %d",
            last_idx,
            position,
        )
        return True

    def _skip_applied(self, message: dict[str, Any]) -> dict[str, Any]:
        """The AppendEntries without the part this node already holds and applied.

        PySyncObj's follower deletes every entry after ``prevLogIdx`` when its log goes on
        past it, even entries equal to the ones the message carries (Raft deletes only from
        a conflict on), and when one of them was applied it logs ``CRITICAL truncating
        already-applied log entries ... state machine may have diverged``. A leader resends
        from a stale next index routinely (a follower restarted, a late "reset" answer), so
        healthy followers logged that line (issue 20), and rewrote entries they had applied.
        An applied entry is committed, so every leader from then on holds it (Raft's leader
        completeness): the entries up to the applied index that this log holds with the
        same term are skipped, and ``prevLogIdx`` moves to the last of them, or to the
        applied index when the message carries nothing past it. Only a conflict (an entry
        of another term: ``_check_applied`` stops the node) or entries past the applied
        index are left for PySyncObj to compare and replace."""
        prev, term = message.get("prevLogIdx"), message.get("prevLogTerm")
        applied = self._SyncObj__raftLastApplied
        if (
            message.get("transmission") is not None
            or not isinstance(prev, int)
            or prev >= applied
            or message.get("term", -1) < self._SyncObj__raftCurrentTerm
        ):
            return message
        entries = list(message.get("entries") or ())
        skipped = 0
        for entry in entries:
            idx = entry[1]
            if idx != prev + skipped + 1 or idx > applied:
                break
            local = self._SyncObj__getEntries(idx, 1)
            if not local or local[0][2] != entry[2]:
                break
            term = entry[2]
            skipped += 1
        prev += skipped
        if skipped == len(entries) and prev < applied:
            local = self._SyncObj__getEntries(applied, 1)
            if local:  # else the applied entry is in the snapshot: nothing to compare with
                prev, term = applied, local[0][2]
        if prev == message["prevLogIdx"]:
            return message
        return {**message, "prevLogIdx": prev, "prevLogTerm": term, "entries": entries[skipped:]}

    def _check_applied(self, message: dict[str, Any]) -> None:
        if message.get("term", -1) < self._SyncObj__raftCurrentTerm:
            return  # PySyncObj ignores a stale leader's message
        applied = self._SyncObj__raftLastApplied
        for entry in message.get("entries") or ():
            idx, term = entry[1], entry[2]
            if idx > applied:
                return
            local = self._SyncObj__getEntries(idx, 1)
            if local and local[0][2] != term:
                self._raftq_on_diverged(idx, local[0][2], term)
                return
