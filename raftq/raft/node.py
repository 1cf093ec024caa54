"""RaftNode: one raftq node's replicated state, on a Raft engine, used from asyncio.

Engine-neutral: the Raft implementation is a ``raftq.raft.engine.LogEngine`` built by the node
assembly (``raftq.node.process``, ``raftq.node.embedded``) and handed in, as hashicorp raft's
``NewRaft`` takes its log, snapshot and transport stores. This class owns what does not depend
on it: group commit, the long-poll claim waiters, cluster time, the tick loop and stats.

Thread hops of one write: the asyncio loop encodes a batch of commands (group commit) and
hands it to the engine (``propose``); the engine's thread appends, replicates and, once
committed, applies it to the machine (under the state lock) and calls back; the callback hops
to the loop with ``call_soon_threadsafe`` and resolves the waiting futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO

from raftq.core import Command, EnableVersion, Enqueue, Machine, Result, Tick
from raftq.core.codec import FORMAT_VERSION, command_version
from raftq.errors import ClusterError, NoLeader, NotLeader, Rejected, TransferRefused
from raftq.raft.api import MemberStatus, NodeStatus, PeerStatus
from raftq.raft.cluster_clock import ClusterClock
from raftq.raft.engine import EngineCallbacks, LogEngine
from raftq.raft.fail_stop import then_exit
from raftq.raft.gc_guard import guard as gc_guard
from raftq.raft.group_commit import Done, GroupCommit, results_within
from raftq.raft.heap_trim import HeapTrimmer, trim_heap
from raftq.raft.members import MemberChanges
from raftq.raft.snapshot_file import SnapshotInfo
from raftq.raft.stats import RaftStats
from raftq.raft.waiters import ClaimWaiters, NextClaim

if TYPE_CHECKING:
    from raftq.config import ClusterConfig

__all__ = ["RaftNode"]

logger = logging.getLogger(__name__)

# Asks the other nodes for their wall clocks: each answer is that node's wall clock now in ms
# (compensated for the round trip); nodes that did not answer are left out.
ClockProbe = Callable[[], Awaitable[Sequence[int]]]

_CLOCK_EVERY_S = 0.1  # how often a node follows the applied clock (and a leader may ask)


def _default_fatal(error: BaseException) -> None:
    # Reporting only: the process ends after any on_fatal returns (raftq.raft.fail_stop).
    logger.critical("stopping the process: the replicated state is corrupt (%r)", error)


class RaftNode:
    """A raftq node (implements ``raftq.raft.api.NodeAPI``) on ``engine`` (node
    ``engine.node_id`` of ``config``). Create and use it on one event loop:
    ``await node.start()``, ..., ``await node.stop()``."""

    def __init__(
        self,
        config: ClusterConfig,
        engine: LogEngine,
        *,
        on_fatal: Callable[[BaseException], None] = _default_fatal,
    ) -> None:
        self.config = config
        self.engine = engine
        self.node_id = node_id = engine.node_id
        self._self = config.node(node_id)
        self._by_raft = {n.raft: n for n in config.nodes}
        # Fail-stop: a node whose state machine broke must not keep voting and acknowledging,
        # and the engine might apply the failed entry again on a half-changed machine. The
        # callback only reports: the process ends after it (exit 70), whatever it does. Every
        # fatal path of the engine (an apply, a snapshot load, a diverged log) gets this one.
        self._on_fatal = then_exit(on_fatal)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._commit: GroupCommit | None = None
        self._waiters = ClaimWaiters(self._submit_now, self.read)
        self._notify_pending = False
        self._handing_over = False  # transfer_leadership in progress: nothing is proposed
        self._tick_task: asyncio.Task[None] | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._submit_timeout_ms = config.raft.submit_timeout_ms
        self.stats = RaftStats()  # per-node raft instrumentation, read by /metrics
        self._heap_trimmer = HeapTrimmer()
        # Cluster time as this node stamps it (raftq.raft.cluster_clock). Until a way to ask
        # the other nodes for their clocks is set (set_clock_probe), this node's clock decides.
        self.clock = ClusterClock(config.raft.clock_max_step_ms, name=node_id)
        self._clock_probe: ClockProbe | None = None
        self._probe_task: asyncio.Task[None] | None = None
        # A new leader hears from every follower within a heartbeat or two.
        settle_s = 2 * config.raft.election_max_ms / 1000
        self._members = MemberChanges(engine, self._self.raft, self.leader_id, settle_s)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the raft port and start replicating (does not wait for a leader)."""
        self._loop = asyncio.get_running_loop()
        await self.engine.start(
            EngineCallbacks(
                on_applied=self._applied_from_raft_thread,
                on_fatal=self._on_fatal,
                stats=self.stats,
            )
        )
        self._started = True
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
        if self._started:  # stays True: the machine is still readable after stop
            await self.engine.stop()
        logger.info("node %s stopped", self.node_id)

    # -- proposing --------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Cluster time to stamp on a command (``ClusterClock.stamp``: this node's wall clock
        while it agrees with cluster time within ``raft.clock_max_step_ms``, else cluster time
        going on at the rate of real time). Raises ``NoLeader`` while not settled."""
        return self.clock.stamp()

    def cluster_time_ms(self) -> int | None:
        if self._started:  # the applied clock, even before the tick loop observes it
            with self.engine.read() as m:
                self.clock.observe(m.clock_ms)
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
        if self._started:
            with self.engine.read() as m:
                applied_ms = m.clock_ms
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
        """Hand one entry to the engine (loop thread); ``done`` is called back on the loop."""
        if not self._started or self._loop is None:
            raise NoLeader("node not started")
        if not self.engine.is_leader():
            raise NotLeader(self.leader_id())
        loop = self._loop

        def callback(results: list[Result] | None, error: ClusterError | None) -> None:
            loop.call_soon_threadsafe(done, results, error)  # engine thread

        self.engine.propose(raw, callback)

    async def submit(self, command: Command, timeout_ms: int | None = None) -> Result:
        await self._settle_version((command,), timeout_ms)
        return await self._result(self._submit_now(command), timeout_ms)

    async def submit_many(
        self, commands: Sequence[Command], timeout_ms: int | None = None
    ) -> list[Result]:
        await self._settle_version(commands, timeout_ms)
        return await self._results(self._submit_many_now(commands), timeout_ms)

    def _needs_version(self, command: Command) -> tuple[int, int] | None:
        """``(needed, enabled)`` if ``command`` needs a log version the cluster has not
        enabled, else None."""
        needed = command_version(command)
        if needed == FORMAT_VERSION or isinstance(command, EnableVersion):
            return None
        with self.read() as m:
            enabled = m.enabled_version
        return (needed, enabled) if needed > enabled else None

    async def _settle_version(self, commands: Sequence[Command], timeout_ms: int | None) -> None:
        """A new cluster's leader enables its release's log version with its term's first
        entry (``LogEngine.version_pending``): a command that needs that version and comes
        in before the entry is applied waits for it rather than being refused. A cluster
        that really runs an older version refuses it at once in ``_check_enabled``."""
        if not any(self._needs_version(c) for c in commands):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_ms or self._submit_timeout_ms) / 1000
        while self._started and self.engine.version_pending() and loop.time() < deadline:
            await asyncio.sleep(0.01)

    def _check_enabled(self, command: Command) -> None:
        """Never propose a command of a log version the cluster has not enabled: a node still
        on an older raftq would stop at its entry (``NewerVersionError``). ``EnableVersion``
        itself is proposed only after every node was asked its version (the API's
        ``POST /v1/cluster/version``)."""
        short = self._needs_version(command)
        if short is not None:
            needed, enabled = short
            raise Rejected(
                "version_not_enabled",
                f"this command needs log version {needed}, the cluster has enabled {enabled}: "
                "once every node runs this raftq, run `raftq upgrade enable`",
                409,
            )

    def _submit_now(self, command: Command) -> asyncio.Future[Result]:
        """Hand ``command`` to group commit (leader only) and return its result future. An
        enqueue of ready jobs takes waiting claims along into its entry (``ClaimWaiters``)."""
        return self._submit_many_now((command,))[0]

    def _submit_many_now(self, commands: Sequence[Command]) -> list[asyncio.Future[Result]]:
        """``_submit_now`` of each command in order, with one leadership check: all of them
        are handed to group commit, or (``NotLeader``, ``NoLeader``) none."""
        if self._commit is None or not self._started:
            raise NoLeader("node not started")
        if self._handing_over:
            # Definite: nothing proposed. The API waits for the next leader and goes there.
            raise NoLeader("leadership is being handed over")
        if not self.engine.is_leader():
            leader = self.leader_id()
            if leader is None:
                raise NoLeader("no leader known")
            raise NotLeader(leader)
        for command in commands:
            self._check_enabled(command)
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
        """Sample what the engine does not report by itself (every tick interval, every
        node): the leader (for leader changes) and the snapshots written since the last
        sample (``LogEngine.sample``)."""
        self.stats.observe_leader(self.leader_id())
        marker = self.engine.sample() if self._started else None
        gc_guard.observe()
        # After a compaction or a snapshot install, hand the freed heap back to the OS
        # (raftq.raft.heap_trim: up to 120 MB kept by glibc at 1M jobs otherwise).
        if self._heap_trimmer.due(marker) and self._loop is not None:
            self._loop.run_in_executor(None, trim_heap)

    def snapshot_file_bytes(self) -> int | None:
        """Size of this node's latest snapshot file (``None`` before the first)."""
        return self.engine.snapshot_file_bytes() if self._started else None

    async def backup(self, timeout_ms: int | None = None) -> tuple[SnapshotInfo, BinaryIO]:
        """Leader: the state as of now, as a verified snapshot file, opened (the caller
        closes it). First a barrier, a ``Tick`` committed and applied through this node's log
        (``NotLeader`` on a follower): every entry acknowledged before the call was committed
        before the barrier, so the state written after it holds them all."""
        await self.barrier(timeout_ms)
        return await self.engine.backup()

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

    def end_claim_waits(self) -> None:
        self._waiters.close()

    # -- reads and status -------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Machine]:
        if not self._started:
            raise NoLeader("node not started")
        with self.engine.read() as m:
            yield m

    def is_leader(self) -> bool:
        return self._started and self.engine.is_leader()

    def leader_id(self) -> str | None:
        if not self._started:
            return None
        leader = self.engine.leader()
        if leader is None:
            return None
        node = self._by_raft.get(leader)
        if node is not None:
            return node.id
        info = self.engine.member_info(leader)  # added at runtime, not in the config
        return None if info is None else info[0]

    async def change_member(
        self,
        kind: str,
        raft: str,
        timeout_ms: int | None = None,
        *,
        node_id: str | None = None,
        api: str | None = None,
    ) -> None:
        if not self._started:
            raise NoLeader("node not started")
        timeout = timeout_ms or self._submit_timeout_ms
        await self._members.settled(timeout)  # a leader just elected: see raftq.raft.members
        self._members.check(kind, raft)
        if kind == "remove" and raft == self._self.raft:
            # The leader leaving hands over first; the new leader removes it (the HTTP edge
            # forwards the request there on this NotLeader).
            new_leader = await self.transfer_leadership(None)
            raise NotLeader(new_leader, f"leadership handed over to {new_leader}")
        await self._members.change(kind, raft, timeout, node_id=node_id, api=api)

    async def transfer_leadership(self, to: str | None) -> str:
        if not self.is_leader():
            raise NotLeader(self.leader_id())
        raft = None
        if to is not None:
            raft = self._member_raft(to)
            if raft is None or to == self.node_id:
                raise TransferRefused(f"{to} is not another node of the cluster")
        # A few elections' worth: the target starts its election at once, one round trip.
        timeout_s = max(2.0, 5 * self.config.raft.election_max_ms / 1000)
        # No new proposals meanwhile (Raft thesis, 3.10): an entry appended after the target
        # was found caught up makes this log longer than the target's, this node and any
        # follower that has the entry refuse it their vote, and elections follow one another
        # at rising terms instead of one handover.
        self._handing_over = True
        try:
            new_raft = await self.engine.transfer_leadership(raft, timeout_s)
        except NotLeader:
            raise NotLeader(self.leader_id()) from None
        finally:
            self._handing_over = False
        new_id = self._member_id(new_raft)
        logger.info("leadership handed over to %s", new_id or new_raft)
        return new_id or new_raft

    def _member_raft(self, node_id: str) -> str | None:
        """The raft address of the voter ``node_id`` of the replicated membership (a node of
        the config, or one added at runtime, known from its membership entry)."""
        for raft in self.engine.members():
            if self._member_id(raft) == node_id:
                return raft
        return None

    def _member_id(self, raft: str) -> str | None:
        """The id of the member at ``raft``: the config's, else its membership entry's."""
        node = self._by_raft.get(raft)
        if node is not None:
            return node.id
        info = self.engine.member_info(raft)
        return None if info is None else info[0]

    def api_address(self, node_id: str) -> str | None:
        for n in self.config.nodes:
            if n.id == node_id:
                return n.api
        for raft in self.engine.members():  # a member added at runtime
            info = self.engine.member_info(raft)
            if info is not None and info[0] == node_id:
                return info[1]
        return None

    def status(self) -> NodeStatus:
        if not self._started:
            raise NoLeader("node not started")
        engine = self.engine
        with self.read() as m:
            digest = m.digest.hex()
            clock_ms = m.clock_ms
            st = engine.status()  # its applied index is the machine's: read under its lock
        leader = self.leader_id()
        self.stats.observe_leader(leader)  # so a scrape always counts the current leader
        applied = st.applied_index
        leader_commit = st.leader_commit_index
        peers = []
        for n in self.config.nodes:
            reachable = n.id == self.node_id or engine.peer_connected(n.raft)
            peers.append(PeerStatus(id=n.id, api=n.api, raft=n.raft, reachable=reachable))
        members = []
        for raft in engine.members():
            spec = self._by_raft.get(raft)
            info = (spec.id, spec.api) if spec is not None else engine.member_info(raft)
            members.append(
                MemberStatus(
                    id=raft if info is None else info[0],
                    api=None if info is None else info[1],
                    raft=raft,
                    voter=True,
                )
            )
        return NodeStatus(
            id=self.node_id,
            role=st.role,
            leader=leader,
            term=st.term,
            commit_index=st.commit_index,
            applied_index=applied,
            digest=digest,
            clock_ms=clock_ms,
            ready=leader is not None and leader_commit is not None and applied >= leader_commit,
            log_entries=st.log_entries,
            nodes=tuple(peers),
            members=tuple(members),
            membership_mismatch=engine.membership_mismatch(),
            cluster_id=engine.cluster_id(),
        )
