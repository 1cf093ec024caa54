"""Test helpers: an in-process ``NodeAPI`` and a way to serve an app on a free port.

``LocalNode`` runs a real ``raftq.core.Machine`` in this process: commands go through
``encode_entry`` / ``apply_entry`` exactly as on a replica, with no raft underneath. Several
``LocalNode`` objects can share one machine (``leader.follower("n2")``): the follower reads the
same state, as a perfectly caught-up replica, and refuses writes with ``NotLeader`` so tests can
exercise forwarding between real HTTP servers. Faults can be injected into ``submit``.

Like hashicorp/raft's ``testing.go``, this ships with the library so that tests of the server,
the client, the CLI and embedding code can use it without starting a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from raftq.core import Command, Machine, Result, Tick, encode_entry
from raftq.errors import NoLeader, NotLeader, Rejected, TransferRefused
from raftq.raft.api import NodeAPI, NodeStatus, PeerStatus
from raftq.raft.waiters import ClaimWaiters, NextClaim

__all__ = ["LocalNode", "serve"]


@dataclass(slots=True)
class _Fault:
    error: BaseException
    after_apply: bool


@dataclass(slots=True)
class _Shared:
    """What the nodes of one ``LocalNode`` group share: the replicated state and the wiring."""

    machine: Machine = field(default_factory=Machine)
    lock: threading.Lock = field(default_factory=threading.Lock)
    addresses: dict[str, str] = field(default_factory=dict)
    nodes: list[LocalNode] = field(default_factory=list)
    log: list[Command] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    offset_ms: int = 0


class LocalNode:
    """An in-process node implementing ``raftq.raft.api.NodeAPI`` (see the module docstring).

    Args:
        node_id: this node's id.
        leader: the id of the leader as this node sees it; ``None``: no leader known;
            ``""`` (the default): this node itself, which then leads.
    """

    def __init__(
        self, node_id: str = "n1", *, leader: str | None = "", _shared: _Shared | None = None
    ) -> None:
        self.node_id = node_id
        self.leader: str | None = node_id if leader == "" else leader
        self.ready = True
        self._shared = _shared or _Shared()
        self._shared.members.append(node_id)
        self._shared.nodes.append(self)
        self._waiters = ClaimWaiters(lambda c: asyncio.ensure_future(self.submit(c)), self.read)
        self._faults: list[_Fault] = []

    # -- test controls ------------------------------------------------------------------------

    def follower(self, node_id: str) -> LocalNode:
        """A node sharing this node's state that follows this node."""
        return LocalNode(node_id, leader=self.node_id, _shared=self._shared)

    @property
    def machine(self) -> Machine:
        """The shared state machine (read it under ``read()``)."""
        return self._shared.machine

    @property
    def log(self) -> list[Command]:
        """Every command applied so far, in order (shared by the group)."""
        return self._shared.log

    def set_address(self, node_id: str, address: str) -> None:
        """Record ``host:port`` of a node's API (shared by the group)."""
        self._shared.addresses[node_id] = address

    def advance(self, ms: int) -> None:
        """Move the group's clock forward by ``ms`` (leases expire after a ``tick()``)."""
        self._shared.offset_ms += ms

    def inject(self, error: BaseException, *, after_apply: bool = False) -> None:
        """Make the next ``submit`` raise ``error``, before applying (a definite failure) or
        after applying (a lost answer, as ``OutcomeUnknown`` after a commit)."""
        self._faults.append(_Fault(error, after_apply))

    async def tick(self) -> Result:
        """Submit a ``Tick`` (advance cluster time, expire leases, wake long-polls)."""
        return await self.submit(Tick(now_ms=self.now_ms()))

    # -- NodeAPI --------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._shared.offset_ms

    def cluster_time_ms(self) -> int | None:
        return self.now_ms()

    def is_leader(self) -> bool:
        return self.leader == self.node_id

    def leader_id(self) -> str | None:
        return self.leader

    def api_address(self, node_id: str) -> str | None:
        return self._shared.addresses.get(node_id)

    async def transfer_leadership(self, to: str | None) -> str:
        if not self.is_leader():
            raise NotLeader(self.leader)
        raise TransferRefused("a LocalNode has no raft to hand leadership over with")

    async def submit(self, command: Command, timeout_ms: int | None = None) -> Result:
        (result,) = await self.submit_many([command], timeout_ms)
        return result

    async def submit_many(
        self, commands: Sequence[Command], timeout_ms: int | None = None
    ) -> list[Result]:
        # As the real node's group commit usually does: the commands share one entry, and a
        # fault fails all of them (before: none applied; after: all applied, answer lost).
        fault = self._faults.pop(0) if self._faults else None
        if fault is not None and not fault.after_apply:
            raise fault.error
        if not self.is_leader():
            if self.leader is None:
                raise NoLeader("no leader known")
            raise NotLeader(self.leader)
        raw = encode_entry(list(commands))
        with self._shared.lock:
            results = self._shared.machine.apply_entry(raw)
            self._shared.log.extend(commands)
        self._wake_waiters()
        await asyncio.sleep(0)  # a real submit always yields to the loop
        if fault is not None:
            raise fault.error
        return results

    async def barrier(self, timeout_ms: int | None = None) -> None:
        if not self.is_leader():
            raise NotLeader(self.leader)
        await self.submit(Tick(now_ms=self.now_ms()), timeout_ms)

    @contextlib.contextmanager
    def read(self) -> Iterator[Machine]:
        with self._shared.lock:
            yield self._shared.machine

    async def claim_when_ready(
        self, queues: Sequence[str], timeout_ms: int, next_claim: NextClaim
    ) -> Result | None:
        # Woken after every applied command; no hand-off on enqueue: submit applies at once.
        fut = await self._waiters.wait(tuple(queues), timeout_ms, next_claim)
        return None if fut is None else await fut

    def end_claim_waits(self) -> None:
        self._waiters.close()

    async def change_member(
        self,
        kind: str,
        raft: str,
        timeout_ms: int | None = None,
        *,
        node_id: str | None = None,
        api: str | None = None,
    ) -> None:
        raise Rejected("not_supported", "the in-process test double has no membership", 501)

    def status(self) -> NodeStatus:
        with self.read() as m:
            applied, digest, clock = m.applied, m.digest.hex(), m.clock_ms
        peers = tuple(
            PeerStatus(id=nid, api=self._shared.addresses.get(nid, ""), raft="", reachable=True)
            for nid in self._shared.members
        )
        return NodeStatus(
            id=self.node_id,
            role="leader" if self.is_leader() else "follower",
            leader=self.leader,
            term=1,
            commit_index=applied,
            applied_index=applied,
            digest=digest,
            clock_ms=clock,
            ready=self.ready and self.leader is not None,
            log_entries=applied,
            nodes=peers,
        )

    def _wake_waiters(self) -> None:
        for node in self._shared.nodes:
            node._waiters.on_applied()


if TYPE_CHECKING:
    _implements_node_api: NodeAPI = LocalNode()  # mypy checks LocalNode against the protocol


@contextlib.asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on ``port`` (default: a free one) of ``host``; yields ``"host:port"``;
    stops on exit."""
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        port = runner.addresses[0][1]
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()
