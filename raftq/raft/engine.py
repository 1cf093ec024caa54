"""The engine seam: what ``RaftNode`` needs of a Raft implementation (``LogEngine``).

Like hashicorp raft's ``NewRaft(conf, fsm, logs, stable, snaps, trans)``, a node assembly
builds the engine first (``raftq.raft.pysyncobj.new_pysyncobj_engine``: PySyncObj with our
journal, snapshot file and commit rule) and hands it to ``RaftNode(config, engine)``, which
owns everything engine-neutral: group commit, the long-poll waiters, cluster time, stats.
The engine owns the log, the term/vote record, the snapshot file and the peer transport, and
drives the state machine (``raftq.core.Machine``) by applying committed entries to it.

Threads and order (the contract an engine keeps; etcd raft's ``Ready`` documentation is the
model):

- The loop thread (the asyncio loop ``RaftNode`` runs on) calls ``start`` once, then any of
  ``propose``, ``read``, the queries and ``sample``, then ``stop`` once. None of them blocks
  for longer than a lock held by the engine thread for one apply.
- ``start(callbacks)`` (a coroutine, awaited on the loop) checks the data dir, loads the
  snapshot and the log, and binds the peer transport; it returns without waiting for a
  leader. A damaged data dir raises ``raftq.errors.DataError`` and nothing is started.
- ``propose(raw, callback)`` appends ``raw`` (one group-commit entry) to the log if this node
  is the leader; the caller checks ``is_leader`` first, and a proposal that cannot be handed
  in raises ``NotLeader``/``NoLeader``. ``callback(results, error)`` is called exactly once,
  on the engine thread: with the entry's results once it is committed AND applied, or with
  a definite ``NoLeader``/``Overloaded`` (not applied, never will be) or ``OutcomeUnknown``
  (may or may not be applied). It must not block; ``RaftNode`` hops to the loop with
  ``call_soon_threadsafe``.
- Applying: committed entries are applied to the machine one at a time, in log order, on the
  engine thread, under the machine's lock (the same lock ``read`` takes), each exactly once
  per machine; a snapshot install replaces the machine wholesale, also under that lock and
  never with one that applied fewer entries. After each applied entry and each installed
  snapshot the engine calls ``callbacks.on_applied()`` (engine thread, must not block).
  Callbacks of proposals are called after their entry was applied.
- A state the engine cannot go on from (the machine raised, a damaged snapshot arrived, an
  applied entry is being replaced) is reported once through ``callbacks.on_fatal(error)``
  (engine thread) and nothing more is applied: the process ends after it returns.
- Snapshots are the engine's: it writes the machine to its snapshot file when its log is
  long enough, without stalling the engine thread, and loads it at start and when a leader
  sends one. ``sample`` (loop thread, every tick interval) reports the snapshots written since
  the last sample to ``callbacks.stats``.
- ``stop()`` (a coroutine, awaited on the loop after every ``RaftNode`` task stopped) ends
  the engine thread and closes its files and sockets; proposals still waiting get their
  callback or none (``RaftNode`` has already failed them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from raftq.core import Machine, Result
from raftq.errors import ClusterError, Rejected
from raftq.raft.snapshot_file import SnapshotInfo
from raftq.raft.stats import RaftStats

__all__ = ["Applied", "EngineCallbacks", "EngineStatus", "LogEngine"]

# callback(results, error): exactly one of the two is None (see the module docstring).
Applied = Callable[[list[Result] | None, ClusterError | None], None]


@dataclass(frozen=True, slots=True)
class EngineCallbacks:
    """What the engine calls back (engine thread, never blocking)."""

    on_applied: Callable[[], None]  # after each applied entry and each installed snapshot
    on_fatal: Callable[[BaseException], None]  # the state is broken: the process ends after it
    stats: RaftStats  # fsync and snapshot instrumentation


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """The engine's view of the log, read together (for ``RaftNode.status``)."""

    role: str  # "follower", "candidate", "leader" (or "unknown")
    leader: str | None  # the leader's raft address, if known
    term: int
    commit_index: int
    applied_index: int
    leader_commit_index: int | None  # the leader's commit index as last heard, if any
    log_entries: int  # entries in the log (after the last snapshot)


class LogEngine(Protocol):
    """A Raft implementation behind ``RaftNode`` (see the module docstring for the threads)."""

    @property
    def node_id(self) -> str:
        """The id (``config.nodes[].id``) of the node this engine runs."""
        ...

    async def start(self, callbacks: EngineCallbacks) -> None: ...

    async def stop(self) -> None: ...

    def propose(self, raw: bytes, callback: Applied) -> None: ...

    async def transfer_leadership(self, to: str | None, timeout_s: float) -> str:
        """Leader only: hand leadership to the node at raft address ``to`` (``None``: the
        engine's choice of a caught-up follower) and return the new leader's raft address once
        this node has stepped down and knows it. ``NotLeader`` if this node is not the leader,
        ``TransferRefused`` if the target is unknown or not caught up, or nobody took over by
        the deadline (then this node may still be the leader)."""
        ...

    def read(self) -> contextlib.AbstractContextManager[Machine]:
        """The current machine under its lock (``NoLeader`` before ``start``)."""
        ...

    def is_leader(self) -> bool: ...

    def leader(self) -> str | None:
        """The raft address of the leader this node knows of, if any."""
        ...

    def status(self) -> EngineStatus: ...

    def members(self) -> tuple[str, ...]:
        """The voters' raft addresses as this node knows them (itself included)."""
        ...

    def membership_mismatch(self) -> str | None:
        """How the config's nodes differ from the persisted membership the node started
        with, if they do (the node keeps the persisted one)."""
        ...

    def cluster_id(self) -> str:
        """The id of the cluster this node's data dir belongs to (fixed at bootstrap)."""
        ...

    def voter_ready(self, raft: str) -> bool:
        """Leader: whether the node at raft address ``raft`` is connected and holds the log up
        to the commit index, give or take the entries in flight (itself: always)."""
        ...

    def change_in_flight(self) -> bool:
        """Leader: whether a membership change is proposed but not yet applied."""
        ...

    def leader_settled(self) -> bool:
        """Leader: whether its view of the followers is current, i.e. its election's first
        entry is committed and every connected voter has answered it since (until then
        ``voter_ready`` is false for followers that are in fact caught up)."""
        ...

    def version_pending(self) -> bool:
        """Leader: whether this term's first entry may still enable a newer log version (a
        new cluster starts at its release's version: the engine proposes ``EnableVersion`` once
        it leads, before any command proposed after this answers false)."""
        ...

    def change_member(
        self,
        kind: str,
        raft: str,
        callback: Callable[[ClusterError | Rejected | None], None],
        *,
        node_id: str | None = None,
        api: str | None = None,
    ) -> None:
        """Loop thread, leader: propose adding (``kind`` ``"add"``) or removing (``"remove"``)
        the voter at raft address ``raft``, one change at a time; an added node's ``node_id``
        and ``api`` travel with the change (``member_info`` on every node). ``callback``
        (engine thread) gets ``None`` once the change is committed, else the error
        (``Rejected`` 409 when the engine refuses a second change in flight)."""
        ...

    def member_info(self, raft: str) -> tuple[str, str] | None:
        """``(id, api)`` of a member added at runtime that the config does not list."""
        ...

    def peer_connected(self, raft: str) -> bool:
        """Whether this node is connected to the peer at raft address ``raft``."""
        ...

    def sample(self) -> Hashable:
        """Loop thread, every tick interval: report what the engine does not report by itself
        (snapshots written) and return a marker that changes when memory may have been freed
        (a compaction or a snapshot install)."""
        ...

    def snapshot_file_bytes(self) -> int | None:
        """Size of the latest snapshot file (``None`` before the first)."""
        ...

    async def backup(self) -> tuple[SnapshotInfo, BinaryIO]:
        """The state as of this node's applied index at the call, as a verified snapshot file
        (``raftq.raft.snapshot_file``) written without stalling the engine thread, opened,
        and gone from the data dir (the caller closes it). ``ClusterError`` if it could not
        be written."""
        ...
