"""RaftNode: one raftq node's replicated state, driven by PySyncObj, used from asyncio.

Thread hops of one write: the asyncio loop encodes a batch of commands (group commit) and hands
it to PySyncObj's queue; PySyncObj's tick thread appends, replicates and, once committed, applies
it to the machine (under the state lock) and calls back; the callback hops to the loop with
``call_soon_threadsafe`` and resolves the waiting futures.

Settings chosen (measured in docs/benchmarks.md and the PySyncObj notes):
- ``appendEntriesUseBatch=False``: an entry is sent to followers at once (sub-ms round trip)
  instead of on a 100 ms timer; its entries/s ceiling does not matter because group commit
  puts many commands in one entry.
- ``commandsWaitLeader=False``: no unbounded queueing without a leader; we propose only on the
  leader and map failures to definite / unknown outcomes.
- journal + our own snapshot file through SyncObjConf's serializer hooks
  (``raftq.raft.snapshot_hooks``): written by a forked child in our checksummed format, so the
  tick thread never stalls; ``logCompactionMinEntries`` high (the default 5000 causes snapshot
  storms with a big state).
- before PySyncObj is built, the data dir is checked (``raftq.raft.datadir``): a damaged
  snapshot, journal or term/vote file stops the start with a one-line ``DataError``.
- the journal is ``raftq.raft.journal.DurableFileJournal``, installed around the constructor:
  with ``fsync = "always"`` (default) a write is fdatasync'd before it is acknowledged; in both
  modes it keeps the entries Raft keeps and compacts by rename.
- ``bindAddress`` = the configured raft host; the cluster secret becomes PySyncObj's
  ``password`` (authenticated encryption of peer traffic: its wire format is pickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf

from raftq.core import Command, Enqueue, Machine, Result, Tick
from raftq.errors import ClusterError, NoLeader, NotLeader, OutcomeUnknown, Overloaded
from raftq.raft.api import NodeStatus, PeerStatus
from raftq.raft.cluster_clock import ClusterClock
from raftq.raft.commit_rule import RaftqSyncObj
from raftq.raft.datadir import DUMP_FILE, JOURNAL_FILE, check_data_dir
from raftq.raft.election_hold import ElectionHold
from raftq.raft.fail_stop import then_exit
from raftq.raft.gc_guard import guard as gc_guard
from raftq.raft.group_commit import Done, GroupCommit, results_within
from raftq.raft.heap_trim import HeapTrimmer, trim_heap
from raftq.raft.journal import DurableFileJournal, durable_journal, verify_journal
from raftq.raft.replica import Replica
from raftq.raft.snapshot_file import remove_temp_files
from raftq.raft.snapshot_hooks import SnapshotHooks
from raftq.raft.stats import RaftStats
from raftq.raft.waiters import ClaimWaiters, NextClaim

if TYPE_CHECKING:
    from raftq.config import ClusterConfig

__all__ = ["RaftNode"]

logger = logging.getLogger(__name__)

# Asks the other nodes for their wall clocks: each answer is that node's wall clock now in ms
# (compensated for the round trip); nodes that did not answer are left out.
ClockProbe = Callable[[], Awaitable[Sequence[int]]]

_ROLES = {0: "follower", 1: "candidate", 2: "leader"}
_DEFINITE = {
    FAIL_REASON.QUEUE_FULL: Overloaded,
    FAIL_REASON.MISSING_LEADER: NoLeader,
    FAIL_REASON.NOT_LEADER: NoLeader,
    FAIL_REASON.DISCARDED: NoLeader,  # our entry was overwritten by another leader's
    FAIL_REASON.REQUEST_DENIED: Overloaded,
}


# See appendEntriesBatchSizeBytes in RaftNode._syncobj_conf: above any entry of a default
# configuration (a 16 MiB request body plus GroupCommit's 4 MiB), and the most entries one
# AppendEntries message bundles while a follower catches up.
_ENTRY_MESSAGE_MAX_BYTES = 32 * 1024 * 1024


_CLOCK_EVERY_S = 0.1  # how often a node follows the applied clock (and a leader may ask)


def _default_fatal(error: BaseException) -> None:
    # Reporting only: the process ends after any on_fatal returns (raftq.raft.fail_stop).
    logger.critical("stopping the process: the replicated state is corrupt (%r)", error)


class RaftNode:
    """A raftq node (implements ``raftq.raft.api.NodeAPI``). Create and use it on one event
    loop: ``await node.start()``, ..., ``await node.stop()``."""

    def __init__(
        self,
        config: ClusterConfig,
        node_id: str,
        *,
        on_fatal: Callable[[BaseException], None] = _default_fatal,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self._self = config.node(node_id)
        self._by_raft = {n.raft: n for n in config.nodes}
        # Fail-stop: a node whose state machine broke must not keep voting and acknowledging,
        # and PySyncObj would apply the failed entry again on a half-changed machine. The
        # callback only reports: the process ends after it (exit 70), whatever it does. Every
        # fatal path (Replica.apply, SnapshotHooks.deserialize, _on_diverged) gets this one.
        self._on_fatal = then_exit(on_fatal)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._syncobj: SyncObj | None = None
        self._replica: Replica | None = None
        self._commit: GroupCommit | None = None
        self._waiters = ClaimWaiters(self._submit_now, self.read)
        self._notify_pending = False
        self._tick_task: asyncio.Task[None] | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._hold: ElectionHold | None = None
        self._snapshots: SnapshotHooks | None = None
        self._submit_timeout_ms = config.raft.submit_timeout_ms
        self.stats = RaftStats()  # per-node raft instrumentation, read by /metrics
        self._snapshots_seen = 0  # SnapshotHooks.writes already reported to stats
        self._heap_trimmer = HeapTrimmer()
        # Cluster time as this node stamps it (raftq.raft.cluster_clock). Until a way to ask
        # the other nodes for their clocks is set (set_clock_probe), this node's clock decides.
        self.clock = ClusterClock(config.raft.clock_max_step_ms, name=node_id)
        self._clock_probe: ClockProbe | None = None
        self._probe_task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the raft port and start replicating (does not wait for a leader)."""
        self._loop = asyncio.get_running_loop()
        data_dir = self.config.node_data_dir(self.node_id)
        data_dir.mkdir(parents=True, exist_ok=True)
        dump_path = str(data_dir / DUMP_FILE)
        remove_temp_files(dump_path)
        # Refuse damaged data before PySyncObj reads it: it would log the error and go on
        # with an empty state (a damaged dump) or with whatever it could parse (a journal).
        await asyncio.to_thread(check_data_dir, str(data_dir))
        # A tick longer than half the minimum election timeout means heartbeats were left
        # unread: restart the election timer rather than depose a healthy leader.
        hold = ElectionHold(stall_s=self.config.raft.election_min_ms / 2000)
        self._hold = hold
        self._replica = Replica(self._applied_from_raft_thread, self._on_fatal, hold)
        self._snapshots = SnapshotHooks(
            dump_path,
            self._replica,
            hold,
            self._on_fatal,
            write_timeout_s=self.config.raft.snapshot_write_timeout_s,
            on_writer_killed=self.stats.observe_snapshot_killed,
        )
        conf = self._syncobj_conf(str(data_dir), self._snapshots)
        others = [n.raft for n in self.config.nodes if n.id != self.node_id]
        # SyncObj's tick thread stops when the thread that created it exits: create it here,
        # on the loop's thread. The constructor blocks until the port is bound.
        fsync = self.config.raft.fsync
        # PySyncObj builds our journal (raftq/raft/journal.py): fdatasync'd with fsync = "always",
        # and in both modes keeping the entries Raft keeps and compacting crash-safely.
        with durable_journal(sync=fsync == "always"):
            syncobj = RaftqSyncObj(
                self._self.raft,
                others,
                conf=conf,
                consumers=[self._replica],
                on_diverged=self._on_diverged,
            )
        try:
            verify_journal(syncobj, fsync)
        except Exception:
            syncobj.destroy_synchronous()
            raise
        hold.syncobj = syncobj
        syncobj.addOnTickCallback(hold.on_tick)
        # Full GC passes: short once the state is frozen, forgiven by the election timer.
        gc_guard.register(hold)
        # A leader spends at most a quarter of the minimum election timeout per tick sending
        # a snapshot to a follower (PySyncObj would send all of it in one tick).
        self._snapshots.install(syncobj, send_budget_s=self.config.raft.election_min_ms / 4000)
        self._syncobj = syncobj
        journal = _private(syncobj, "raftLog")
        if isinstance(journal, DurableFileJournal):
            journal.on_sync = self.stats.observe_fsync
        self._commit = GroupCommit(
            self._propose,
            entry_timeout_ms=self._submit_timeout_ms,
            on_entry=self.stats.observe_batch,
            on_commit=self.stats.observe_commit,
        )
        self._tick_task = asyncio.create_task(self._tick_loop(), name=f"raftq-tick-{self.node_id}")
        self._clock_task = asyncio.create_task(
            self._clock_loop(), name=f"raftq-clock-{self.node_id}"
        )
        logger.info("node %s: raft %s started", self.node_id, self._self.raft)

    async def stop(self) -> None:
        if self._hold is not None:
            gc_guard.unregister(self._hold)
        for task in (self._tick_task, self._clock_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tick_task = self._clock_task = None
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        if self._commit is not None:
            self._commit.fail_pending(NoLeader("node stopping"))
        self._waiters.close()
        if self._syncobj is not None:
            syncobj, self._syncobj = self._syncobj, None
            await asyncio.to_thread(syncobj.destroy_synchronous)
            if self._snapshots is not None:  # the tick thread has stopped
                self._snapshots.close_transfers()
        logger.info("node %s stopped", self.node_id)

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
            # hundreds of entries behind and the term went from 1 to 21 (docs/benchmarks.md,
            # "Memory and depth at 1M queued"). Only an entry of 32 MiB or more (with
            # max_body_bytes raised above 16 MiB) can still take that path.
            appendEntriesBatchSizeBytes=_ENTRY_MESSAGE_MAX_BYTES,
            appendEntriesPeriod=min(0.1, election_min_s / 4),
            raftMinTimeout=election_min_s,
            raftMaxTimeout=r.election_max_ms / 1000,
            # A leader cut off from the majority steps down after this (default 30 s).
            leaderFallbackTimeout=max(2 * r.election_max_ms / 1000, 1.0),
            connectionRetryTime=1.0,
            connectionTimeout=3.5,
            commandsWaitLeader=False,
            journalFile=os.path.join(data_dir, JOURNAL_FILE),
            fullDumpFile=snapshots.dump_path,
            **snapshots.conf(),  # our file format; the hooks fork themselves
            logCompactionMinEntries=r.log_compaction_min_entries,
            logCompactionMinTime=r.log_compaction_min_time_s,
            logCompactionSplit=True,
            maxBindRetries=30,
            dynamicMembershipChange=False,
        )

    def _on_diverged(self, index: int, local_term: int, leader_term: int) -> None:
        """Tick thread: the leader replaces an entry this node already applied (see
        raftq.raft.commit_rule). The state machine ran an uncommitted command: stop."""
        self._on_fatal(
            ClusterError(
                f"node {self.node_id}: applied log entry {index} (term {local_term}) is being "
                f"replaced by the leader's entry of term {leader_term}: this node's state "
                "diverged from the cluster; wipe its data dir and restart it to catch up"
            )
        )

    # -- proposing --------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Cluster time to stamp on a command (``ClusterClock.stamp``: this node's wall clock
        while it agrees with cluster time within ``raft.clock_max_step_ms``, else cluster time
        going on at the rate of real time). Raises ``NoLeader`` while not settled."""
        return self.clock.stamp()

    def cluster_time_ms(self) -> int | None:
        replica = self._replica
        if replica is not None:  # the applied clock, even before the tick loop observes it
            with replica.lock:
                self.clock.observe(replica.machine.clock_ms)
        return self.clock.estimate()

    def clock_offset_ms(self) -> int | None:
        """This node's wall clock minus cluster time as it estimates it (for ``/metrics``)."""
        return self.clock.offset_ms()

    def set_clock_probe(self, probe: ClockProbe) -> None:
        """How this node, as leader, asks the other nodes for their wall clocks (the HTTP
        ``GET /v1/clock`` of ``raftq.server.clock_probe``): from then on, a majority of the
        nodes' clocks, not this node's alone, decides a jump of cluster time."""
        self._clock_probe = probe
        self.clock.voters = len(self.config.nodes)

    async def _clock_loop(self) -> None:
        """Tend cluster time on its own period, not the tick interval's (which may be a minute:
        a new leader must settle its time within a question, not a tick)."""
        while True:
            await asyncio.sleep(_CLOCK_EVERY_S)
            self._tend_clock()

    def _tend_clock(self) -> None:
        """Every ``_CLOCK_EVERY_S``: follow the applied clock; on the leader, ask the other
        nodes for their clocks when ``ClusterClock.wants_probe`` (one question at a time)."""
        replica = self._replica
        if replica is not None:
            with replica.lock:
                applied_ms = replica.machine.clock_ms
            self.clock.observe(applied_ms)
        probe = self._clock_probe
        if probe is None or not self.is_leader():
            return
        if self._probe_task is not None and not self._probe_task.done():
            return
        if self.clock.wants_probe():
            self._probe_task = asyncio.create_task(self._ask_clocks(probe))

    async def _ask_clocks(self, probe: ClockProbe) -> None:
        try:
            answers = await probe()
        except Exception as e:  # a failed question changes nothing; the next tick asks again
            logger.debug("asking the other nodes for their clocks failed: %r", e)
            return
        if self.is_leader():
            self.clock.offer(answers)

    def _propose(self, raw: bytes, done: Done) -> None:
        """Hand one entry to PySyncObj (loop thread); ``done`` is called back on the loop."""
        if self._syncobj is None or self._replica is None or self._loop is None:
            raise NoLeader("node not started")
        if not self._syncobj._isLeader():
            raise NotLeader(self.leader_id())
        loop = self._loop

        def callback(results: list[Result] | None, reason: int) -> None:  # tick thread
            loop.call_soon_threadsafe(done, *_outcome(results, reason))

        self._replica.apply(raw, callback=callback)

    async def submit(self, command: Command, timeout_ms: int | None = None) -> Result:
        return await self._result(self._submit_now(command), timeout_ms)

    async def submit_many(
        self, commands: Sequence[Command], timeout_ms: int | None = None
    ) -> list[Result]:
        return await self._results(self._submit_many_now(commands), timeout_ms)

    def _submit_now(self, command: Command) -> asyncio.Future[Result]:
        """Hand ``command`` to group commit (leader only) and return its result future. An
        enqueue of ready jobs takes waiting claims along into its entry (``ClaimWaiters``)."""
        return self._submit_many_now((command,))[0]

    def _submit_many_now(self, commands: Sequence[Command]) -> list[asyncio.Future[Result]]:
        """``_submit_now`` of each command in order, with one leadership check: all of them
        are handed to group commit, or (``NotLeader``, ``NoLeader``) none."""
        if self._commit is None or self._syncobj is None:
            raise NoLeader("node not started")
        if not self._syncobj._isLeader():
            leader = self.leader_id()
            if leader is None:
                raise NoLeader("no leader known")
            raise NotLeader(leader)
        futures = self._commit.submit_many(commands)
        if self._waiters:  # behind the batch, before group commit flushes: the same entry
            for command in commands:
                if isinstance(command, Enqueue):
                    self._waiters.on_enqueue(command)
        return futures

    async def _result(self, fut: asyncio.Future[Result], timeout_ms: int | None) -> Result:
        (result,) = await self._results((fut,), timeout_ms)
        return result

    async def _results(
        self, futures: Sequence[asyncio.Future[Result]], timeout_ms: int | None
    ) -> list[Result]:
        """``results_within`` the request's deadline (default: ``submit_timeout_ms``): on
        the deadline, ``OutcomeUnknown``, and commands not proposed yet are dropped."""
        return await results_within(futures, (timeout_ms or self._submit_timeout_ms) / 1000)

    async def barrier(self, timeout_ms: int | None = None) -> None:
        await self.submit(Tick(now_ms=self.now_ms()), timeout_ms)

    async def _tick_loop(self) -> None:
        """On the leader, advance cluster time so leases expire and delayed jobs come due
        with no other traffic."""
        interval_s = self.config.raft.tick_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            self._observe()
            if self.is_leader():
                try:
                    await self.submit(Tick(now_ms=self.now_ms()))
                except ClusterError as e:
                    logger.debug("tick not applied: %s", e)

    def _observe(self) -> None:
        """Sample what PySyncObj does not report by itself (every tick interval, every node):
        the leader (for leader changes) and the snapshots written since the last sample."""
        self.stats.observe_leader(self.leader_id())
        snapshots = self._snapshots
        if snapshots is not None and snapshots.writes != self._snapshots_seen:
            self._snapshots_seen = snapshots.writes
            if snapshots.last_write_ms is not None:
                self.stats.observe_snapshot(snapshots.last_write_ms / 1000)
        gc_guard.observe()
        # After a compaction or a snapshot install, hand the freed heap back to the OS
        # (raftq.raft.heap_trim: up to 120 MB kept by glibc at 1M jobs otherwise).
        replica = self._replica
        marker = (self._snapshots_seen, id(replica.machine) if replica is not None else 0)
        if self._heap_trimmer.due(marker) and self._loop is not None:
            self._loop.run_in_executor(None, trim_heap)

    def snapshot_file_bytes(self) -> int | None:
        """Size of this node's latest snapshot file (``None`` before the first)."""
        if self._snapshots is None:
            return None
        try:
            return os.stat(self._snapshots.dump_path).st_size
        except OSError:
            return None

    # -- applied entries and long-poll waiters ----------------------------------------------

    def _applied_from_raft_thread(self) -> None:
        # Coalesce: one wake-up of the loop per burst of applied entries.
        if self._notify_pending or self._loop is None or not self._waiters:
            return
        self._notify_pending = True
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._wake_waiters)

    def _wake_waiters(self) -> None:
        self._notify_pending = False
        self._waiters.on_applied()

    async def claim_when_ready(
        self, queues: Sequence[str], timeout_ms: int, next_claim: NextClaim
    ) -> Result | None:
        fut = await self._waiters.wait(tuple(queues), timeout_ms, next_claim)
        if fut is None:
            return None
        return await self._result(fut, None)

    # -- reads and status -------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Machine]:
        replica = self._replica
        if replica is None:
            raise NoLeader("node not started")
        with replica.lock:
            yield replica.machine

    def is_leader(self) -> bool:
        return self._syncobj is not None and bool(self._syncobj._isLeader())

    def leader_id(self) -> str | None:
        if self._syncobj is None:
            return None
        leader = self._syncobj._getLeader()
        if leader is None:
            return None
        node = self._by_raft.get(leader.id)
        return None if node is None else node.id

    def api_address(self, node_id: str) -> str | None:
        for n in self.config.nodes:
            if n.id == node_id:
                return n.api
        return None

    def status(self) -> NodeStatus:
        so = self._syncobj
        if so is None or self._replica is None:
            raise NoLeader("node not started")
        state = _private(so, "raftState")
        with self.read() as m:
            digest = m.digest.hex()
            clock_ms = m.clock_ms
            applied = so.raftLastApplied
        commit = so.raftCommitIndex
        leader = self.leader_id()
        self.stats.observe_leader(leader)  # so a scrape always counts the current leader
        leader_commit = _private(so, "leaderCommitIndex")
        peers = []
        for n in self.config.nodes:
            if n.id == self.node_id:
                reachable = True
            else:
                reachable = any(o.id == n.raft and so.isNodeConnected(o) for o in so.otherNodes)
            peers.append(PeerStatus(id=n.id, api=n.api, raft=n.raft, reachable=reachable))
        return NodeStatus(
            id=self.node_id,
            role=_ROLES.get(state, "unknown"),
            leader=leader,
            term=so.raftCurrentTerm,
            commit_index=commit,
            applied_index=applied,
            digest=digest,
            clock_ms=clock_ms,
            ready=leader is not None and leader_commit is not None and applied >= leader_commit,
            log_entries=len(_private(so, "raftLog")),
            nodes=tuple(peers),
        )


def _private(so: SyncObj, name: str) -> Any:
    """A PySyncObj private attribute (name-mangled); pinned to pysyncobj 0.3.x."""
    return getattr(so, f"_SyncObj__{name}")


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
