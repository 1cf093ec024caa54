"""PySyncObjEngine: the ``LogEngine`` (``raftq.raft.engine``) on PySyncObj 0.3.17.

Relies on PySyncObj 0.3.17 private behaviour:
- ``_SyncObj__raftState``, ``_SyncObj__leaderCommitIndex``, ``_SyncObj__raftLog`` (read for
  ``status`` and the fsync instrumentation): guarded by
  ``tests/raft/test_pysyncobj_private.py`` (they exist on a real SyncObj) and
  ``tests/raft/test_journal.py`` (the journal is ours).
- ``SyncObj._isLeader``/``_getLeader`` (single underscore) and ``FAIL_REASON``'s values:
  guarded by ``tests/raft/test_pysyncobj_private.py``.

Thread hops of one write: the loop hands an entry to ``propose``, which puts it in PySyncObj's
queue (``Replica.apply``); PySyncObj's tick thread appends, replicates and, once committed,
applies it to the machine (under the state lock) and calls back with the results.

Settings chosen (measured in docs/benchmark-log.md and the PySyncObj notes):
- ``appendEntriesUseBatch=False``: an entry is sent to followers at once (sub-ms round trip)
  instead of on a 100 ms timer; its entries/s ceiling does not matter because group commit
  puts many commands in one entry. It also makes PySyncObj wake its tick thread through a
  notify pipe for every queued command (``raftq.raft.pysyncobj.tick_wake``).
- ``commandsWaitLeader=False``: no unbounded queueing without a leader; we propose only on the
  leader and map failures to definite / unknown outcomes.
- journal + our own snapshot file through SyncObjConf's serializer hooks
  (``raftq.raft.pysyncobj.snapshot_hooks``): written by a forked child in our checksummed
  format, so the tick thread never stalls; ``logCompactionMinEntries`` high (the default 5000
  causes snapshot storms with a big state).
- before PySyncObj is built, the data dir is checked (``raftq.raft.datadir``): a damaged
  snapshot, journal or term/vote file stops the start with a one-line ``DataError``.
- the journal is ``raftq.raft.pysyncobj.journal.DurableFileJournal``, installed around the
  constructor: with ``fsync = "always"`` (default) a write is fdatasync'd before it is
  acknowledged; in both modes it keeps the entries Raft keeps and compacts by rename.
- ``bindAddress`` = the configured raft host; the cluster secret becomes PySyncObj's
  ``password`` (authenticated encryption of peer traffic: its wire format is pickle).
- the TCP transport is PySyncObj's with a cluster identity frame in its handshake
  (``raftq.raft.pysyncobj.identity``): a node of another cluster is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from pysyncobj.node import TCPNode
from raftq.core import EnableVersion, Machine, Result
from raftq.core.codec import LOG_VERSION, encode_entry
from raftq.errors import (
    ClusterError,
    NoLeader,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    PortUnavailable,
    Rejected,
    TransferRefused,
)
from raftq.raft.datadir import DUMP_FILE, JOURNAL_FILE, check_data_dir
from raftq.raft.engine import Applied, EngineCallbacks, EngineStatus
from raftq.raft.gc_guard import guard as gc_guard
from raftq.raft.pysyncobj.backup_writer import write_backup
from raftq.raft.pysyncobj.commit_rule import RaftqSyncObj
from raftq.raft.pysyncobj.digests import DigestWatch
from raftq.raft.pysyncobj.election_hold import ElectionHold
from raftq.raft.pysyncobj.events import ClusterEvents
from raftq.raft.pysyncobj.identity import ClusterIdentity, PeerGate, identified_transport
from raftq.raft.pysyncobj.journal import DurableFileJournal, durable_journal, verify_journal
from raftq.raft.pysyncobj.membership import (
    derive_cluster_id,
    mark_caught_up,
    read_members_file,
    remember_members,
    start_membership,
)
from raftq.raft.pysyncobj.replica import Replica
from raftq.raft.pysyncobj.snapshot_hooks import SnapshotHooks
from raftq.raft.snapshot_file import SnapshotInfo, remove_temp_files

if TYPE_CHECKING:
    from raftq.config import ClusterConfig

__all__ = ["PySyncObjEngine", "ReplicaHook", "SyncObjHook", "new_pysyncobj_engine"]

logger = logging.getLogger(__name__)

# Called with the Replica before PySyncObj is built (the test-fault wrappers of
# raftq.raft.pysyncobj.faults; nothing in real use).
ReplicaHook = Callable[[Replica], None]
# Called with the SyncObj as soon as it is built (likewise: test-fault wrappers only).
SyncObjHook = Callable[[SyncObj], None]
# A membership change's or leadership transfer's outcome (tick thread): None = done.
Changed = Callable[[ClusterError | Rejected | None], None]

_ROLES = {0: "follower", 1: "candidate", 2: "leader"}
_DEFINITE = {
    FAIL_REASON.QUEUE_FULL: Overloaded,
    FAIL_REASON.MISSING_LEADER: NoLeader,
    FAIL_REASON.NOT_LEADER: NoLeader,
    FAIL_REASON.DISCARDED: NoLeader,  # our entry was overwritten by another leader's
    FAIL_REASON.REQUEST_DENIED: Overloaded,
}

# See appendEntriesBatchSizeBytes in PySyncObjEngine._syncobj_conf: above any entry of a
# default configuration (a 16 MiB request body plus GroupCommit's 4 MiB), and the most entries
# one AppendEntries message bundles while a follower catches up.
_ENTRY_MESSAGE_MAX_BYTES = 32 * 1024 * 1024
# A voter this many entries behind the commit index still counts as caught up for the quorum
# check of a membership change: under load the follower that was not needed for the last
# commit is always an entry or a few behind (group commit: < 1 s of entries). A node that
# needs a snapshot, or has acknowledged nothing yet (match index 0), never counts.
_READY_LAG = 64
_BIND_WAIT_S = 2.5  # a raft port busy for a moment at start (``_check_bound``)
# How long PySyncObj keeps a peer host name's addresses (its default: 600 s) and a failed
# lookup (30 s). Only the peer with the greater address dials a connection, on a name it
# resolved earlier: with the default, a peer restarted on a new IP (a Kubernetes pod, a
# container) stayed unreachable from the others for up to ten minutes, so a rolling restart
# could leave two nodes of three unable to reach each other. A lookup happens only while a peer
# is disconnected, at most once per this period (on the tick thread: keep it cheap).
_DNS_CACHE_S = 5.0
_DNS_FAIL_CACHE_S = 5.0


def new_pysyncobj_engine(
    config: ClusterConfig,
    node_id: str,
    *,
    replica_hooks: Sequence[ReplicaHook] = (),
    syncobj_hooks: Sequence[SyncObjHook] = (),
    transport_class: type[Any] | None = None,
    join: Sequence[tuple[str, str, str]] | None = None,
    join_cluster_id: str = "",
) -> PySyncObjEngine:
    """The engine of node ``node_id`` of ``config`` (nothing runs before ``start``).
    ``transport_class``: PySyncObj's ``transportClass`` (default its TCP transport on the
    node's raft address, with the cluster identity check of ``raftq.raft.pysyncobj.identity``;
    ``MemoryNetwork.transport_class()`` for an in-process cluster).
    ``join``: the running cluster's voters ``(raft, id, api)`` when the node joins it
    (``raftq serve --join``): a new data dir starts with them instead of the config's nodes,
    and records ``join_cluster_id``, the joined cluster's id."""
    return PySyncObjEngine(
        config,
        node_id,
        replica_hooks=replica_hooks,
        syncobj_hooks=syncobj_hooks,
        transport_class=transport_class,
        join=join,
        join_cluster_id=join_cluster_id,
    )


class PySyncObjEngine:
    """``LogEngine`` on PySyncObj. The attributes ``syncobj``, ``replica``, ``snapshots`` and
    ``hold`` are set by ``start`` (tests reach PySyncObj's state through them)."""

    def __init__(
        self,
        config: ClusterConfig,
        node_id: str,
        *,
        replica_hooks: Sequence[ReplicaHook] = (),
        syncobj_hooks: Sequence[SyncObjHook] = (),
        transport_class: type[Any] | None = None,
        join: Sequence[tuple[str, str, str]] | None = None,
        join_cluster_id: str = "",
    ) -> None:
        self.config = config
        self._join = None if join is None else tuple(join)
        self._join_cluster_id = join_cluster_id
        self._cluster_id = ""
        self._node_id = node_id
        self._self = config.node(node_id)
        self._replica_hooks = tuple(replica_hooks)
        self._syncobj_hooks = tuple(syncobj_hooks)
        self._transport: dict[str, Any] = (
            {} if transport_class is None else {"transportClass": transport_class}
        )
        self.syncobj: SyncObj | None = None
        self.replica: Replica | None = None
        self.snapshots: SnapshotHooks | None = None
        self.hold: ElectionHold | None = None
        self._on_fatal: Callable[[BaseException], None] | None = None
        self._callbacks: EngineCallbacks | None = None
        self._snapshots_seen = 0  # SnapshotHooks.writes already reported to stats
        # How the TOML's nodes differ from the persisted membership at start, if they do.
        self._membership_mismatch: str | None = None
        # Where members are reached that the config does not list: {raft: (id, api)}, from
        # the membership entries that added them (raft.members keeps it across restarts).
        self._directory: dict[str, tuple[str, str]] = {}
        # Calls the loop thread hands to the tick thread (PySyncObj's methods that send are
        # not thread-safe); drained by ``_run_tick_calls`` at every tick.
        self._tick_calls: deque[Callable[[], None]] = deque()
        # The election no-op index of the last term this node led whose history was checked
        # (``_enable_version_of_new_cluster``): once per term.
        self._checked_noop: int | None = None
        self._enabling = False  # that check's EnableVersion is proposed, not yet applied

    @property
    def node_id(self) -> str:
        return self._node_id

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, callbacks: EngineCallbacks) -> None:
        """Check the data dir, build PySyncObj (binds the raft port; no leader awaited)."""
        self._callbacks = callbacks
        self._on_fatal = callbacks.on_fatal
        data_dir = self.config.node_data_dir(self._node_id)
        data_dir.mkdir(parents=True, exist_ok=True)
        dump_path = str(data_dir / DUMP_FILE)
        remove_temp_files(dump_path)
        # Refuse damaged data before PySyncObj reads it: it would log the error and go on
        # with an empty state (a damaged dump) or with whatever it could parse (a journal).
        await asyncio.to_thread(check_data_dir, str(data_dir))
        # A tick longer than half the minimum election timeout means heartbeats were left
        # unread: restart the election timer rather than depose a healthy leader. A node
        # restarted on a log waits up to two maximum election timeouts to hear of a leader.
        restarted = (data_dir / JOURNAL_FILE).exists() or os.path.exists(dump_path)
        rejoin_s = 2 * self.config.raft.election_max_ms / 1000 if restarted else 0.0
        hold = ElectionHold(stall_s=self.config.raft.election_min_ms / 2000, rejoin_s=rejoin_s)
        self.hold = hold
        replica = Replica(callbacks.on_applied, callbacks.on_fatal, hold)
        for hook in self._replica_hooks:
            hook(replica)
        self.replica = replica
        digests = DigestWatch(
            self._node_id, self._peer_name, callbacks.stats.observe_digest_mismatch
        )
        replica.on_entry = digests.record
        self.snapshots = snapshots = SnapshotHooks(
            dump_path,
            replica,
            hold,
            callbacks.on_fatal,
            write_timeout_s=self.config.raft.snapshot_write_timeout_s,
            on_writer_killed=callbacks.stats.observe_snapshot_killed,
            directory=self._known_members,
        )
        conf = self._syncobj_conf(str(data_dir), snapshots)
        # The replicated membership, never the TOML's once the data dir has one (issue 19:
        # an edited TOML must not make a second majority).
        toml = [n.raft for n in self.config.nodes]
        bootstrap = (
            toml if self._join is None else [self._self.raft, *(r for r, _, _ in self._join)]
        )
        new_id = self._join_cluster_id or derive_cluster_id(self.config.name, toml)
        membership = await asyncio.to_thread(
            start_membership, str(data_dir), self._self.raft, bootstrap, new_id
        )
        self._cluster_id = membership.cluster_id
        if self._join is not None:
            await asyncio.to_thread(
                remember_members, str(data_dir), {r: (i, a) for r, i, a in self._join}
            )
        found = await asyncio.to_thread(read_members_file, str(data_dir))
        if found is not None:
            self._directory.update({r: (i, a) for r, i, a in found.directory})
        if membership.mismatch is not None and self._join is not None:
            # The config of a joining node lists what it knows; the cluster's voters are the
            # ones it joined.
            membership = replace(membership, mismatch=None)
        if membership.mismatch is not None:
            self._membership_mismatch = membership.mismatch
            logger.warning(
                "node %s: the config's nodes differ from the cluster's membership (%s): "
                "keeping the cluster's; change members with `raftq members`, then edit the "
                "config to match",
                self._node_id,
                membership.mismatch,
            )
        others = [m for m in membership.members if m != self._self.raft]
        transport = self._transport
        if not transport:
            # PySyncObj's TCP transport, refusing nodes of another cluster
            # (raftq.raft.pysyncobj.identity).
            gate = PeerGate(
                ClusterIdentity(self.config.name, self._cluster_id),
                callbacks.stats.observe_peer_refused,
            )
            transport = {"transportClass": identified_transport(gate)}
        # SyncObj's tick thread stops when the thread that created it exits: create it here,
        # on the loop's thread. The constructor blocks until the port is bound.
        fsync = self.config.raft.fsync
        # PySyncObj builds our journal (raftq/raft/pysyncobj/journal.py): fdatasync'd with
        # fsync = "always", and in both modes keeping the entries Raft keeps and compacting
        # crash-safely.
        with durable_journal(sync=fsync == "always"):
            syncobj = RaftqSyncObj(
                self._self.raft,
                others,
                conf=conf,
                consumers=[replica],
                on_diverged=self._on_diverged,
                start_members=others,
                vote_hold=membership.fresh,
                # Read on the tick thread, like applies; the machine is replaced by a snapshot.
                digest=lambda: replica.machine.digest.hex(),  # noqa: PLW0108
                on_peer_digest=digests.peer,
                **transport,
            )
        for syncobj_hook in self._syncobj_hooks:
            syncobj_hook(syncobj)
        try:
            await self._check_bound(syncobj)
            verify_journal(syncobj, fsync)
        except Exception:
            syncobj.destroy_synchronous()
            raise
        hold.syncobj = syncobj
        syncobj.addOnTickCallback(hold.on_tick)
        syncobj.addOnTickCallback(self._run_tick_calls)
        syncobj.addOnTickCallback(self._enable_version_of_new_cluster)
        events = ClusterEvents(self._node_id, self._self.raft, self._peer_name)
        syncobj.addOnTickCallback(lambda: self._report_events(syncobj, events))
        if membership.fresh:
            logger.info(
                "node %s: new data dir: no vote for a candidate with history until caught up",
                self._node_id,
            )
            syncobj.addOnTickCallback(self._release_votes_once_caught_up)
        # Full GC passes: short once the state is frozen, forgiven by the election timer.
        gc_guard.register(hold)
        # A leader spends at most a quarter of the minimum election timeout per tick sending
        # a snapshot to a follower (PySyncObj would send all of it in one tick).
        snapshots.install(syncobj, send_budget_s=self.config.raft.election_min_ms / 4000)
        self.syncobj = syncobj
        journal = _private(syncobj, "raftLog")
        if isinstance(journal, DurableFileJournal):
            journal.on_sync = callbacks.stats.observe_fsync

    async def _check_bound(self, syncobj: SyncObj) -> None:
        """The constructor returns after PySyncObj's first bind attempt; a failed one is
        retried every ``bindRetryTime`` (1 s) by the tick thread while the node looks alive
        and is never ready. ``raftq.node.claim`` checks the port first; this catches a port
        taken in between: ``PortUnavailable``, one line, instead of a node that never works.
        A port busy only for a moment (a socket of the node's previous run in this process
        not yet collected, a client's connection that used it as its ephemeral port) is
        waited for, up to ``_BIND_WAIT_S``: two retries."""
        transport = _private(syncobj, "transport")
        deadline = time.monotonic() + _BIND_WAIT_S
        while not getattr(transport, "ready", True):  # the in-memory transport is at once
            if time.monotonic() >= deadline:
                address = self._self.raft
                raise PortUnavailable(self._node_id, "raft", address, "not bound", in_use=True)
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.hold is not None:
            gc_guard.unregister(self.hold)
        if self.syncobj is not None:
            syncobj, self.syncobj = self.syncobj, None
            await asyncio.to_thread(syncobj.destroy_synchronous)
            if self.snapshots is not None:  # the tick thread has stopped
                self.snapshots.close_transfers()

    def _syncobj_conf(self, data_dir: str, snapshots: SnapshotHooks) -> SyncObjConf:
        r = self.config.raft
        election_min_s = r.election_min_ms / 1000
        return SyncObjConf(
            password=self.config.secret,
            bindAddress=self._self.raft,  # "host:port": never 0.0.0.0
            autoTick=True,
            autoTickPeriod=0.01,
            appendEntriesUseBatch=False,
            # Every entry goes out whole. PySyncObj splits an entry at least this big into
            # "transmission" chunks and marks a chunk final when its end passes the length of
            # the *command* instead of the pickled entry (syncobj.py, __sendAppendEntries): for
            # an entry whose pickling overhead crosses a chunk boundary, the follower unpickles
            # a truncated entry, its tick raises and the rest of what it read is dropped.
            # Measured with 1000-job entries of ~131 KB (2 x 64 KiB default): a follower fell
            # hundreds of entries behind and the term went from 1 to 21 (docs/benchmark-log.md,
            # "Memory and depth at 1M queued"). Only an entry of 32 MiB or more (with
            # max_body_bytes raised above 16 MiB) can still take that path.
            appendEntriesBatchSizeBytes=_ENTRY_MESSAGE_MAX_BYTES,
            appendEntriesPeriod=min(0.1, election_min_s / 4),
            raftMinTimeout=election_min_s,
            raftMaxTimeout=r.election_max_ms / 1000,
            # A leader cut off from the majority steps down after this (default 30 s).
            leaderFallbackTimeout=max(2 * r.election_max_ms / 1000, 1.0),
            connectionRetryTime=1.0,
            # PySyncObj requires it at least the longest election timeout.
            connectionTimeout=max(3.5, r.election_max_ms / 1000),
            dnsCacheTime=_DNS_CACHE_S,
            dnsFailCacheTime=_DNS_FAIL_CACHE_S,
            commandsWaitLeader=False,
            journalFile=os.path.join(data_dir, JOURNAL_FILE),
            fullDumpFile=snapshots.dump_path,
            **snapshots.conf(),  # our file format; the hooks fork themselves
            logCompactionMinEntries=r.log_compaction_min_entries,
            logCompactionMinTime=r.log_compaction_min_time_s,
            logCompactionSplit=True,
            maxBindRetries=30,
            # Single-server changes (raftq.raft.pysyncobj.membership; one at a time).
            dynamicMembershipChange=True,
        )

    def _report_events(self, so: SyncObj, events: ClusterEvents) -> None:
        """Tick thread: log elections and peers lost or back (raftq.raft.pysyncobj.events)."""
        leader = so._getLeader()
        connected = [str(o.id) for o in so.otherNodes if so.isNodeConnected(o)]
        events.observe(None if leader is None else str(leader.id), so.raftCurrentTerm, connected)

    def _peer_name(self, raft: str) -> str:
        """``"n2 (127.0.0.1:7102)"`` for a member of the config or learnt since, else the
        address."""
        for n in self.config.nodes:
            if n.raft == raft:
                return f"{n.id} ({raft})"
        info = self._directory.get(raft)
        return raft if info is None else f"{info[0]} ({raft})"

    def _release_votes_once_caught_up(self) -> None:
        """Tick thread: a new data dir has caught up with a leader once (PySyncObj's
        ``isReady``): record it, then vote normally."""
        so = self.syncobj
        if so is None or not so.raftq_vote_hold or not so.isReady():
            return
        mark_caught_up(str(self.config.node_data_dir(self._node_id)))
        so.raftq_release_votes()
        logger.info("node %s: caught up with the leader; votes normally", self._node_id)

    def _enable_version_of_new_cluster(self) -> None:
        """Tick thread: a leader whose history holds no state-machine entry leads a new
        cluster, and proposes ``EnableVersion(LOG_VERSION)`` as the first entry of its term.

        A new cluster runs one release everywhere, so it starts at that release's log version
        (the snapshot header's member directory needs version 2: without this, a node caught
        up by snapshot never learnt the members added at runtime until an operator ran
        ``raftq upgrade enable``). A cluster that ever committed an entry keeps its enabled
        version: the upgrade gate (``POST /v1/cluster/version``) asks every node first.

        Why the check is exact: the entries at or before this term's election no-op are every
        entry of earlier terms that can ever commit (a leader's log holds all committed ones);
        a snapshot loaded, or entries applied, show in ``machine.applied``. Entries after the
        no-op are this term's own, proposed by this release. Should this leader fall before
        the entry commits, the next one finds a history with entries (this one, or the
        clients') and the cluster stays at version 1 until ``raftq upgrade enable``."""
        so, replica = self.syncobj, self.replica
        if so is None or replica is None or not so._isLeader():
            return
        noop = _private(so, "noopIDx")
        if noop is None or noop == self._checked_noop:
            return
        self._checked_noop = noop
        machine = replica.machine  # the tick thread is its only writer
        if machine.enabled_version >= LOG_VERSION or machine.applied:
            return
        log = _private(so, "raftLog")
        for i in range(len(log)):
            command, index, _term = log[i]
            if index >= noop:
                break
            if command[:1] == _REGULAR:
                return  # a state-machine entry of an earlier term: not a new cluster
        entry = encode_entry([EnableVersion(now_ms=machine.clock_ms, version=LOG_VERSION)])
        self._enabling = True

        def done(_result: object, _reason: int) -> None:  # tick thread, after its apply
            self._enabling = False

        replica.apply(entry, callback=done)
        logger.info(
            "node %s: new cluster: enabling log version %d as its first entry",
            self._node_id,
            LOG_VERSION,
        )

    def _on_diverged(self, index: int, local_term: int, leader_term: int) -> None:
        """Tick thread: the leader replaces an entry this node already applied (see
        raftq.raft.pysyncobj.commit_rule). The state machine ran an uncommitted command: stop."""
        assert self._on_fatal is not None  # set before the SyncObj that calls this is built
        self._on_fatal(
            ClusterError(
                f"node {self._node_id}: applied log entry {index} (term {local_term}) is being "
                f"replaced by the leader's entry of term {leader_term}: this node's state "
                "diverged from the cluster; wipe its data dir and restart it to catch up"
            )
        )

    # -- proposing and reading --------------------------------------------------------------

    def propose(self, raw: bytes, callback: Applied) -> None:
        """Loop thread: hand one entry to PySyncObj; ``callback`` runs on the tick thread."""
        if self.syncobj is None or self.replica is None:
            raise NoLeader("node not started")

        def on_result(results: list[Result] | None, reason: int) -> None:  # tick thread
            callback(*_outcome(results, reason))

        self.replica.apply(raw, callback=on_result)

    @contextlib.contextmanager
    def read(self) -> Iterator[Machine]:
        replica = self.replica
        if replica is None:
            raise NoLeader("node not started")
        with replica.lock:
            yield replica.machine

    def _run_tick_calls(self) -> None:
        """Tick thread: run what the loop thread queued (deque pops are atomic)."""
        calls = self._tick_calls
        while calls:
            calls.popleft()()

    async def transfer_leadership(self, to: str | None, timeout_s: float) -> str:
        """PySyncObj's ``transferLeadership`` (Raft's TimeoutNow), on the tick thread: it sends
        ``timeout_now`` only to a connected follower whose match index is the leader's last
        index (``to=None``: the most caught-up connected one), which then starts an election
        at once and wins it (its log is as long as any). Returns the raft address of the new
        leader once this node has stepped down and heard from it."""
        so = self.syncobj
        if so is None or not self.is_leader():
            raise NotLeader(None)
        if to is not None and not any(o.id == to for o in so.otherNodes):
            raise TransferRefused(f"{to} is not a member of the cluster")
        deadline = time.monotonic() + timeout_s
        # The leader goes on appending (ticks, writes), so a follower may lack its newest
        # entry at the instant asked: ask again until the deadline.
        while True:
            reason = await self._ask_transfer(so, to, deadline)
            if reason == FAIL_REASON.SUCCESS:
                break
            if reason == FAIL_REASON.NOT_LEADER:
                raise NotLeader(None)
            if time.monotonic() + 0.02 >= deadline:
                target = "the target" if to is not None else "any follower"
                raise TransferRefused(
                    f"{target} is not connected and fully caught up with the leader's log "
                    f"(asked for {timeout_s:g} s); retry once it has caught up"
                )
            await asyncio.sleep(0.02)
        # TimeoutNow was sent: the target's election takes a round trip or two.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if not self.is_leader() and leader is not None and leader != self._self.raft:
                return leader
            await asyncio.sleep(0.01)
        raise TransferRefused(f"no other node took over within {timeout_s:g} s")

    async def _ask_transfer(self, so: SyncObj, to: str | None, deadline: float) -> int:
        """One ``transferLeadership`` on the tick thread; its FAIL_REASON."""
        loop = asyncio.get_running_loop()
        asked: asyncio.Future[int] = loop.create_future()

        def settle(reason: int) -> None:  # loop thread
            if not asked.done():  # the wait may have timed out
                asked.set_result(reason)

        def answer(_result: object, reason: int) -> None:  # tick thread
            loop.call_soon_threadsafe(settle, reason)

        self._tick_calls.append(lambda: so.transferLeadership(to, answer))
        try:
            return await asyncio.wait_for(asked, max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            raise TransferRefused("the raft thread did not take the transfer in time") from None

    # -- queries ----------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.syncobj is not None and bool(self.syncobj._isLeader())

    def leader(self) -> str | None:
        if self.syncobj is None:
            return None
        leader = self.syncobj._getLeader()
        return None if leader is None else str(leader.id)

    def status(self) -> EngineStatus:
        so = self.syncobj
        if so is None:
            raise NoLeader("node not started")
        return EngineStatus(
            role=_ROLES.get(_private(so, "raftState"), "unknown"),
            leader=self.leader(),
            term=so.raftCurrentTerm,
            commit_index=so.raftCommitIndex,
            # Under the machine's lock (RaftNode.status), the index of the digest read with
            # it: PySyncObj counts an entry a moment after the machine applied it.
            applied_index=max(
                so.raftLastApplied, 0 if self.replica is None else self.replica.applied_index
            ),
            leader_commit_index=_private(so, "leaderCommitIndex"),
            log_entries=len(_private(so, "raftLog")),
        )

    def members(self) -> tuple[str, ...]:
        """The voters' raft addresses as this node knows them (itself included)."""
        so = self.syncobj
        if so is None:
            return ()
        return tuple(sorted([self._self.raft, *(str(n.id) for n in so.otherNodes)]))

    def membership_mismatch(self) -> str | None:
        return self._membership_mismatch

    def cluster_id(self) -> str:
        return self._cluster_id

    def voter_ready(self, raft: str) -> bool:
        """Leader: whether the voter (or joining node) at ``raft`` is connected and holds the
        log up to the commit index, give or take the entries still in flight (_READY_LAG);
        this node itself: always."""
        so = self.syncobj
        if so is None:
            return False
        if raft == self._self.raft:
            return True
        for node in so.otherNodes | so.readonlyNodes:
            if node.id == raft:
                match = _private(so, "raftMatchIndex").get(node, 0)
                behind = so.raftCommitIndex - match
                return bool(so.isNodeConnected(node)) and match > 0 and behind <= _READY_LAG
        return False

    def change_in_flight(self) -> bool:
        """Leader: whether a membership change is appended but not yet applied."""
        so = self.syncobj
        if so is None:
            return False
        pending = _private(so, "changeClusterIDx")
        return pending is not None and pending > so.raftLastApplied

    def leader_settled(self) -> bool:
        """Leader: its election no-op committed (PySyncObj refuses changes before that) and
        every connected voter's match index known again (PySyncObj zeroes them all when it
        is elected; a follower's is set by its first answer, a round trip later)."""
        so = self.syncobj
        if so is None or not self.is_leader():
            return False
        noop = _private(so, "noopIDx")
        if noop is None or so.raftLastApplied < noop:
            return False
        match = _private(so, "raftMatchIndex")
        return all(match.get(o, 0) > 0 for o in so.otherNodes if so.isNodeConnected(o))

    def version_pending(self) -> bool:
        """Leader: this term's ``_enable_version_of_new_cluster`` has not run yet (it runs
        at the leader's next tick), or the entry it proposed is not applied yet."""
        so = self.syncobj
        if so is None or not self.is_leader():
            return False
        noop: int | None = _private(so, "noopIDx")
        return noop != self._checked_noop or self._enabling

    def member_info(self, raft: str) -> tuple[str, str] | None:
        """``(id, api)`` of the member at ``raft`` that the config does not list, if known."""
        known = self._directory.get(raft)
        so = self.syncobj
        if known is None and so is not None:
            # Added since the last ``_learn_members`` (every tick interval): its entry's node.
            for node in list(so.otherNodes):
                node_id, api = getattr(node, "raftq_id", None), getattr(node, "raftq_api", None)
                if node.id == raft and isinstance(node_id, str) and isinstance(api, str):
                    return node_id, api
        return known

    def _known_members(self) -> dict[str, tuple[str, str]]:
        """Tick thread (the snapshot header's directory): ``{raft: (id, api)}`` of the members
        this node knows, itself included (it may be a member the others' config lacks)."""
        known = dict(self._directory)  # one C-level copy: safe against the loop thread
        known[self._self.raft] = (self._node_id, self._self.api)
        return known

    def _learn_members(self) -> None:
        """Loop thread: record the id and API of members added at runtime (they travel in
        the membership entry, as attributes of PySyncObj's node object, and in the header of
        a snapshot loaded since: ``SnapshotHooks.learnt``)."""
        so = self.syncobj
        if so is None:
            return
        known = {}
        listed = {n.raft for n in self.config.nodes}
        learnt = self.snapshots.learnt if self.snapshots is not None else {}
        for raft, info in list(learnt.items()):
            if raft not in listed and self._directory.get(raft) != info:
                known[raft] = info
        for node in so.otherNodes:
            node_id, api = getattr(node, "raftq_id", None), getattr(node, "raftq_api", None)
            fresh = self._directory.get(node.id) != (node_id, api)
            if isinstance(node_id, str) and isinstance(api, str) and fresh:
                known[str(node.id)] = (node_id, api)
        if known:
            self._directory.update(known)
            remember_members(str(self.config.node_data_dir(self._node_id)), known)

    def change_member(
        self,
        kind: str,
        raft: str,
        callback: Changed,
        *,
        node_id: str | None = None,
        api: str | None = None,
    ) -> None:
        """Loop thread: propose the single-server change ``kind`` (``"add"`` | ``"remove"``)
        of the voter at raft address ``raft``; ``callback`` (tick thread) gets ``None`` once
        the change is committed, else the error (``Rejected`` 409 when PySyncObj denies it:
        a change in flight or the leader's first entry not committed yet)."""
        so = self.syncobj
        if so is None:
            raise NoLeader("node not started")

        def done(_result: object, reason: int) -> None:  # tick thread
            callback(_change_outcome(reason))

        if kind == "add":
            extra = (
                {} if node_id is None or api is None else {"raftq_id": node_id, "raftq_api": api}
            )
            so.addNodeToCluster(TCPNode(raft, **extra), callback=done)
        else:
            so.removeNodeFromCluster(raft, callback=done)

    def peer_connected(self, raft: str) -> bool:
        so = self.syncobj
        if so is None:
            return False
        return any(o.id == raft and so.isNodeConnected(o) for o in so.otherNodes)

    def sample(self) -> Hashable:
        self._learn_members()
        snapshots = self.snapshots
        if snapshots is not None and snapshots.writes != self._snapshots_seen:
            self._snapshots_seen = snapshots.writes
            if snapshots.last_write_ms is not None and self._callbacks is not None:
                self._callbacks.stats.observe_snapshot(snapshots.last_write_ms / 1000)
        replica = self.replica
        return (self._snapshots_seen, id(replica.machine) if replica is not None else 0)

    async def backup(self) -> tuple[SnapshotInfo, BinaryIO]:
        """The state as of this node's applied index at the call (``write_backup``)."""
        so, snapshots = self.syncobj, self.snapshots
        if so is None or snapshots is None:
            raise NoLeader("node not started")
        timeout_s = self.config.raft.snapshot_write_timeout_s
        return await write_backup(so, snapshots, self._tick_calls.append, timeout_s)

    def snapshot_file_bytes(self) -> int | None:
        if self.snapshots is None:
            return None
        try:
            return os.stat(self.snapshots.dump_path).st_size
        except OSError:
            return None


_REGULAR = b"\x00"  # pysyncobj.syncobj._COMMAND_TYPE.REGULAR: a state-machine entry


def _private(so: SyncObj, name: str) -> Any:
    """A PySyncObj private attribute (name-mangled); pinned to pysyncobj 0.3.x."""
    return getattr(so, f"_SyncObj__{name}")


def _change_outcome(reason: int) -> ClusterError | Rejected | None:
    if reason == FAIL_REASON.SUCCESS:
        return None
    if reason == FAIL_REASON.REQUEST_DENIED:
        return Rejected(
            "change_in_flight",
            "the leader refused the change: another membership change is in flight or the "
            "leader was just elected; retry",
            409,
        )
    return _outcome(None, reason)[1]


def _outcome(
    results: list[Result] | None, reason: int
) -> tuple[list[Result] | None, ClusterError | None]:
    if reason == FAIL_REASON.SUCCESS:
        return results, None
    definite = _DEFINITE.get(reason)
    if definite is not None:
        return None, definite(f"not applied (pysyncobj reason {reason})")
    # LEADER_CHANGED, UNKNOWN_OUTCOME and anything new: may or may not have been applied.
    return None, OutcomeUnknown(f"outcome unknown (pysyncobj reason {reason})")
