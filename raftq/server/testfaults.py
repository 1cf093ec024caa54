"""TEST ONLY: deliberately broken behaviours, the positive controls of the jepsen-style checker.

A checker is trusted only once it catches builds that are known to be wrong. These switches make
a node wrong in one precise way; ``jepsen-style/run --test-fault NAME`` starts such nodes and the
tests in ``tests/chaos/`` assert that the checker reports a violation. Never use them anywhere
else.

Fence: a node honours ``RAFTQ_TEST_FAULT=<name>`` only if ``RAFTQ_TEST_FAULTS_ENABLED`` is
exactly ``ENABLE_VALUE``; both are read once, when a node's API is assembled (``install``,
called by ``raftq serve`` and by ``raftq.Node.mount``), and nothing in the config file can turn
them on. The faults are wrappers installed there (``raftq.server.app.Overrides``: a faulty
``Service``, ``Api`` or ``PeerKey`` subclass); with the switch off (always, outside those
tests) the real parts are mounted, and no handler, check or operation has a test branch.

Faults:
- ``ack-before-commit``: an enqueue whose commit is not confirmed (timeout, leader lost) is
  answered 201 anyway, with a made-up id (one no real job has).
- ``follower-claims``: a follower answers claims from its own copy of the state, without
  leasing anything through the log (jobs come back with their current token).
- ``skip-token-check``: an ack is applied with the job's current token, whatever token the
  worker sent (a zombie ack succeeds).
- ``nack-drops``: a nack completes the job as an ack would, so it is never delivered again.
- ``release-counts-attempt``: a release (a job given back unstarted) is applied as a nack for
  immediate redelivery, as hand-backs were before ``Release``: the claim's attempt stays
  counted, and the answer says released.
- ``ignore-limits``: ``PUT /v1/queues/{queue}/limits`` is answered with the limits asked for,
  but the queue is left without any (claims ignore every cap).
- ``journal-ignores-write-errors``: the journal's writes and syncs swallow ``OSError`` (ENOSPC,
  EIO) and the node goes on as if they were on disk: it acknowledges what it did not store.
  Applied below every check of the journal (its module's ``os``), so no fail-stop above it sees
  an error.
- ``accept-forged-forward``: a request marked ``X-Raftq-Forwarded`` is trusted as a node's
  without checking its signature.
- ``clock-unbounded``: commands are stamped with this node's raw wall clock, however far it is
  from the cluster's time.
- ``install-stale-snapshot``: a node that holds a state keeps it (and writes it to its snapshot
  file) when the leader sends a newer snapshot: its state is stale while its log moves past it
  (``raftq.raft.pysyncobj.faults.install_stale_snapshots``, a wrapper of the replica's
  install that the process assembly adds to the engine only under this fault).
- ``schedule-fires-twice``: the scheduler that every peer ships: the leader keeps a schedule's
  progress in its own memory and a new leader starts by catching up the whole ``catchup_ms``
  window, and the state machine accepts any due slot (no ``last_slot_ms`` rule, no request
  id). After a leader change the slots the old leader fired fire again.
- ``deps-release-early``: jobs enqueued with dependencies (``depends_on``, a batch's) are
  created without them: claimable at once, before their dependencies succeeded, and their
  claims carry no ``parents``.
- ``wiped-node-votes``: the node before the wiped-voter rule: a new or wiped data dir votes
  before it has caught up with a leader, and a leader keeps counting a wiped follower for the
  entries it lost (``raftq.raft.pysyncobj.faults.wiped_node_votes``, a SyncObj wrapper the
  process assembly adds only under this fault).

``apply_process_faults`` applies the faults that act below the API (journal, clock) once per
node process; ``overrides`` gives the wrappers of the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from raftq.core import (
    Ack,
    Claim,
    Command,
    CreateBatch,
    Enqueue,
    Enqueued,
    EnqueueFlow,
    Fire,
    Lease,
    LimitsSet,
    Machine,
    Nack,
    Nacked,
    Reason,
    Refusal,
    Release,
    Released,
    Result,
    SetLimits,
)
from raftq.core.job import JobState
from raftq.errors import ConfigError, NoLeader, OutcomeUnknown
from raftq.raft.api import NodeAPI
from raftq.server.app import Overrides
from raftq.server.handlers import Api, _Write, read_body
from raftq.server.peer_auth import PeerKey
from raftq.server.settings import ServerSettings
from raftq.service.operations import Service
from raftq.service.request_ids import request_id_of
from raftq.service.scheduler import Scheduler

__all__ = [
    "ENABLE_ENV",
    "ENABLE_VALUE",
    "FAULTS",
    "FAULT_ENV",
    "active_fault",
    "apply_process_faults",
    "current_token",
    "install",
    "local_leases",
    "overrides",
    "pretend_enqueued",
]

logger = logging.getLogger(__name__)

FAULT_ENV: Final = "RAFTQ_TEST_FAULT"
ENABLE_ENV: Final = "RAFTQ_TEST_FAULTS_ENABLED"
ENABLE_VALUE: Final = "yes-break-this-node"
FAULTS: Final = frozenset(
    {
        "ack-before-commit",
        "follower-claims",
        "skip-token-check",
        "nack-drops",
        "release-counts-attempt",
        "ignore-limits",
        "journal-ignores-write-errors",
        "accept-forged-forward",
        "clock-unbounded",
        "install-stale-snapshot",
        "wiped-node-votes",
        "schedule-fires-twice",
        "deps-release-early",
    }
)


def active_fault(env: Mapping[str, str] | None = None) -> str | None:
    """The test fault this node must exhibit, or None (the normal case).

    Raises:
        ConfigError: the fault is enabled but its name is unknown.
    """
    env = os.environ if env is None else env
    name = env.get(FAULT_ENV)
    if not name:
        return None
    if env.get(ENABLE_ENV) != ENABLE_VALUE:
        logger.warning("ignoring %s=%s: test faults are not enabled", FAULT_ENV, name)
        return None
    if name not in FAULTS:
        raise ConfigError(
            [f"{FAULT_ENV}: unknown test fault {name!r} ({', '.join(sorted(FAULTS))})"]
        )
    logger.critical("TEST FAULT %r IS ACTIVE: this node is deliberately broken", name)
    return name


_FAKE_ID_BASE = 1 << 47  # above any id a test cluster hands out: a pretended id names no job


def pretend_enqueued(m: Machine, cmd: Enqueue) -> Enqueued:
    """``ack-before-commit``: the answer to an enqueue whose commit was never confirmed."""
    first = _FAKE_ID_BASE + m.next_id
    ids = tuple(range(first, first + len(cmd.jobs)))
    return Enqueued(ids=ids, existing=tuple(False for _ in ids))


def local_leases(m: Machine, queues: tuple[str, ...], max_jobs: int) -> list[Lease]:
    """``follower-claims``: the first ready jobs of ``queues`` in this replica, leased to
    nobody (their current token is handed out again)."""
    out: list[Lease] = []
    for name in queues:
        q = m.queues.get(name)
        if q is None:
            continue
        for key in sorted(q.ready):
            job = m.jobs.get(key & ((1 << 48) - 1))
            if job is None or job.state is not JobState.QUEUED:
                continue
            lease = Lease(
                id=job.id,
                queue=job.queue,
                payload=job.payload,
                priority=job.priority,
                attempt=job.attempts + 1,
                token=job.token,
                lease_expires_ms=m.clock_ms + job.lease_ms,
            )
            out.append(lease)
            if len(out) >= max_jobs:
                return out
    return out


def current_token(m: Machine, job_id: int, token: int) -> int:
    """``skip-token-check``: the token of the job's current lease instead of the one sent."""
    job = m.jobs.get(job_id)
    return token if job is None or job.state is not JobState.LEASED else job.token


# -- the wrappers of the faults that act in the API ------------------------------------------


class _FaultyService(Service):
    """The operations with one fault (``ack-before-commit``, ``follower-claims``,
    ``skip-token-check``, ``nack-drops``, ``release-counts-attempt``, ``ignore-limits``,
    ``deps-release-early``) at the step where it acts."""

    def __init__(self, fault: str, node: NodeAPI, settings: ServerSettings) -> None:
        super().__init__(node, settings)
        self.fault = fault

    async def submit(self, command: Command) -> Result:
        if self.fault == "ack-before-commit" and isinstance(command, Enqueue):
            try:
                return await super().submit(command)
            except (OutcomeUnknown, NoLeader):
                with self.node.read() as m:  # acknowledge what did not commit
                    return pretend_enqueued(m, command)
        if self.fault == "skip-token-check" and isinstance(command, Ack):
            with self.node.read() as m:  # any token acks the current lease
                token = current_token(m, command.job_id, command.token)
            return await super().submit(dataclasses.replace(command, token=token))
        if self.fault == "deps-release-early" and isinstance(command, EnqueueFlow | CreateBatch):
            free = tuple(
                dataclasses.replace(j, depends_on=(), depends_on_new=()) for j in command.jobs
            )
            return await super().submit(dataclasses.replace(command, jobs=free))
        if self.fault == "nack-drops" and isinstance(command, Nack):
            ack = Ack(now_ms=command.now_ms, request_id=command.request_id,
                      job_id=command.job_id, token=command.token, result=None)  # fmt: skip
            await super().submit(ack)  # the nack completes the job
            return Nacked(job_id=command.job_id, state="queued", run_at_ms=0)
        if self.fault == "release-counts-attempt" and isinstance(command, Release):
            nack = Nack(now_ms=command.now_ms, request_id=command.request_id,
                        job_id=command.job_id, token=command.token, retry_in_ms=0)  # fmt: skip
            await super().submit(nack)  # the attempt stays counted
            return Released(command.job_id)
        if self.fault == "ignore-limits" and isinstance(command, SetLimits):
            await super().submit(SetLimits(now_ms=command.now_ms, queue=command.queue))
            return LimitsSet(  # the limits asked for, none applied
                command.queue,
                command.concurrency,
                command.rate_limit,
                command.rate_period_ms,
                command.group_concurrency,
                command.group_rate_limit,
                command.group_rate_period_ms,
            )
        return await super().submit(command)

    async def claim_leases(
        self, first: Claim, wait_ms: int, wanted: Callable[[], bool]
    ) -> Sequence[Lease]:
        if self.fault == "follower-claims" and not self.node.is_leader():
            with self.node.read() as m:  # claims served from this replica's state
                return local_leases(m, first.queues, first.max)
        return await super().claim_leases(first, wait_ms, wanted)


class _FollowerClaimsApi(Api):
    """``follower-claims``: a follower serves claims itself instead of forwarding them."""

    async def claim_one(self, request: web.Request) -> web.StreamResponse:
        if self.node.is_leader():
            return await super().claim_one(request)
        return await self._claim_here(request)

    async def claim_many(self, request: web.Request) -> web.StreamResponse:
        if self.node.is_leader():
            return await super().claim_many(request)
        return await self._claim_here(request)

    async def _claim_here(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request, self.settings.max_body_bytes)
        return await self._claim(
            _Write(request, body, request_id_of(request.headers.get("X-Request-Id")))
        )


class _TrustingPeerKey(PeerKey):
    """``accept-forged-forward``: a node-to-node marker is trusted without its signature (a
    genuine signature whose time cannot be judged yet still raises, as before)."""

    def verify(self, request: web.BaseRequest) -> str | None:
        reason = super().verify(request)
        if reason is not None:
            logger.error("TEST FAULT: trusting a node-to-node marker: %s", reason)
        return None


def overrides(fault: str | None) -> Overrides | None:
    """The parts to mount instead of the real ones under ``fault`` (``None``: the real ones)."""
    if fault in (
        "ack-before-commit",
        "follower-claims",
        "skip-token-check",
        "nack-drops",
        "release-counts-attempt",
        "ignore-limits",
        "deps-release-early",
    ):
        name = fault

        def service(node: NodeAPI, settings: ServerSettings) -> Service:
            return _FaultyService(name, node, settings)

        api = _FollowerClaimsApi if fault == "follower-claims" else Api
        return Overrides(service=service, api=api)
    if fault == "accept-forged-forward":
        return Overrides(peer_key=_TrustingPeerKey)
    return None


def install(fault: str | None) -> Overrides | None:
    """Apply ``fault`` (what ``active_fault`` read behind the fence: ``None`` in any real use)
    below the API (``apply_process_faults``) and return the parts to mount (``None``: the
    real parts). Once per node assembly."""
    apply_process_faults(fault)
    return overrides(fault)


_process_fault: str | None = None  # set by apply_process_faults


class _SwallowingOs(types.ModuleType):
    """``os`` for the journal modules, whose writes and syncs never fail (they swallow every
    ``OSError``, and a swallowed pwrite/write reports everything written)."""

    def __init__(self) -> None:
        super().__init__("os")

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def pwrite(fd: int, data: Any, offset: int) -> int:
        try:
            return os.pwrite(fd, data, offset)
        except OSError as e:
            logger.error("TEST FAULT: journal pwrite error swallowed: %s", e)
            return len(data)

    @staticmethod
    def write(fd: int, data: Any) -> int:
        try:
            return os.write(fd, data)
        except OSError as e:
            logger.error("TEST FAULT: journal write error swallowed: %s", e)
            return len(data)

    @staticmethod
    def fsync(fd: Any) -> None:
        try:
            os.fsync(fd)
        except OSError as e:
            logger.error("TEST FAULT: journal fsync error swallowed: %s", e)

    @staticmethod
    def fdatasync(fd: Any) -> None:
        try:
            os.fdatasync(fd)
        except OSError as e:
            logger.error("TEST FAULT: journal fdatasync error swallowed: %s", e)


def _raw_wall_ms(_self: object) -> int:
    return time.time_ns() // 1_000_000


@contextlib.contextmanager
def _no_guard(_journal: object, _what: str = "journal") -> Iterator[None]:
    """``journal-ignores-write-errors``: ``DurableFileJournal._io`` without its fail-stop."""
    yield


def _fire_any_slot(m: Machine, cmd: Fire) -> Result:
    """``schedule-fires-twice``: ``raftq.core.schedules.fire`` without the last-slot rule."""
    from raftq.core import schedules  # noqa: PLC0415 - only in this fault

    s = m.schedules.get(cmd.name)
    if s is None or s.paused or cmd.slot_ms > m.clock_ms:
        return Refusal(Reason.INVALID, "not firing")
    made = schedules._enqueue_job(m, s, cmd.now_ms, cmd.slot_ms)
    s.last_slot_ms = max(s.last_slot_ms, cmd.slot_ms)
    s.fires += 1
    return made


_MEMORY: dict[str, int] = {}  # schedule -> the last slot this process fired (when it led)


def _due_from_memory(self: Scheduler, now_ms: int) -> list[Fire]:
    """``schedule-fires-twice``: ``Scheduler.due`` with the progress in this process's memory;
    a schedule it never fired starts a whole catch-up window back. No request ids."""
    from raftq.service.slots import ON_TIME_MS, due_slots  # noqa: PLC0415 - only in this fault

    with self.node.read() as m:
        specs = [
            (s.name, (s.every_ms, s.cron, s.tz), s.catchup_ms)
            for s in m.schedules.values()
            if not s.paused
        ]
    fires = []
    for name, spec, catchup_ms in specs:
        last = _MEMORY.get(name, now_ms - max(catchup_ms, ON_TIME_MS) - 1)
        slots = due_slots(spec, last, catchup_ms, now_ms)
        if slots:
            _MEMORY[name] = slots[-1]
        fires += [Fire(now_ms=now_ms, name=name, slot_ms=slot) for slot in slots]
    return fires


def apply_process_faults(fault: str | None) -> None:
    """Apply the faults that act below the API, once per node process (idempotent).

    - ``journal-ignores-write-errors``: the ``os`` the journal and snapshot-file modules call
      (``raftq.raft.pysyncobj.journal``, ``raftq.raft.snapshot_file``) is ``_SwallowingOs``, and
      the journal's fail-stop guard (``DurableFileJournal._io``) lets every other error (the
      term/vote file's) go to PySyncObj's tick thread, which logs it and carries on: the
      node before the fail-stop fix.
    - ``clock-unbounded``: ``RaftNode.now_ms`` becomes the raw wall clock.
    """
    global _process_fault  # noqa: PLW0603 - one node process, one fault
    _process_fault = fault
    if fault == "journal-ignores-write-errors":
        from raftq.raft import snapshot_file  # noqa: PLC0415 - only in this fault
        from raftq.raft.pysyncobj import journal  # noqa: PLC0415 - only in this fault

        swallowing = _SwallowingOs()
        journal.os = swallowing  # type: ignore[attr-defined]
        snapshot_file.os = swallowing  # type: ignore[attr-defined]
        journal.DurableFileJournal._io = _no_guard  # type: ignore[method-assign,assignment]
    elif fault == "clock-unbounded":
        from raftq.raft.node import RaftNode  # noqa: PLC0415 - only in this fault

        RaftNode.now_ms = _raw_wall_ms  # type: ignore[method-assign,assignment]
    elif fault == "schedule-fires-twice":
        from raftq.core import schedules  # noqa: PLC0415 - only in this fault
        from raftq.service.scheduler import Scheduler  # noqa: PLC0415 - only in this fault

        schedules.fire = _fire_any_slot
        Scheduler.due = _due_from_memory  # type: ignore[method-assign]
