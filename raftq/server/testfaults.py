"""TEST ONLY: deliberately broken behaviours, the positive controls of the jepsen-style checker.

A checker is trusted only once it catches builds that are known to be wrong. These switches make
a node wrong in one precise way; ``jepsen-style/run --test-fault NAME`` starts such nodes and the
tests in ``tests/chaos/`` assert that the checker reports a violation. Never use them anywhere
else.

Fence: a node honours ``RAFTQ_TEST_FAULT=<name>`` only if ``RAFTQ_TEST_FAULTS_ENABLED`` is
exactly ``ENABLE_VALUE``; both are read once, when the API of a node is built, and nothing in
the config file can turn them on. With the switch off (always, outside those tests) the
handlers only compare one attribute to ``None``.

Faults:
- ``ack-before-commit``: an enqueue whose commit is not confirmed (timeout, leader lost) is
  answered 201 anyway, with a made-up id (one no real job has).
- ``follower-claims``: a follower answers claims from its own copy of the state, without
  leasing anything through the log (jobs come back with their current token).
- ``skip-token-check``: an ack is applied with the job's current token, whatever token the
  worker sent (a zombie ack succeeds).
- ``nack-drops``: a nack completes the job as an ack would, so it is never delivered again.
- ``journal-ignores-write-errors``: the journal's writes and syncs swallow ``OSError`` (ENOSPC,
  EIO) and the node goes on as if they were on disk: it acknowledges what it did not store.
  Applied below every check of the journal (its module's ``os``), so no fail-stop above it sees
  an error.
- ``accept-forged-forward``: a request marked ``X-Raftq-Forwarded`` is trusted as a node's
  without checking its signature.
- ``clock-unbounded``: commands are stamped with this node's raw wall clock, however far it is
  from the cluster's time.
- ``install-stale-snapshot``: every snapshot a node loads after its first one is replaced by
  that first (older) one: the node installs a stale snapshot over a state that moved past it
  (``snapshot_to_install``, called by the snapshot loader).

``apply_process_faults`` applies the faults that act below the API (journal, clock) once per
node process; the others are consulted where they act.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import types
from collections.abc import Iterator, Mapping
from typing import Any, Final

from raftq.core import Enqueue, Enqueued, Lease, Machine
from raftq.core.job import JobState
from raftq.errors import ConfigError

__all__ = [
    "ENABLE_ENV",
    "ENABLE_VALUE",
    "FAULTS",
    "FAULT_ENV",
    "active_fault",
    "apply_process_faults",
    "current_token",
    "local_leases",
    "pretend_enqueued",
    "snapshot_to_install",
    "trusts_forged_marker",
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
        "journal-ignores-write-errors",
        "accept-forged-forward",
        "clock-unbounded",
        "install-stale-snapshot",
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


def trusts_forged_marker(fault: str | None) -> bool:
    """``accept-forged-forward``: skip the signature check of the node-to-node marker."""
    return fault == "accept-forged-forward"


_process_fault: str | None = None  # set by apply_process_faults
_first_snapshot: Machine | None = None  # install-stale-snapshot: the first machine loaded


def snapshot_to_install(machine: Machine) -> Machine:
    """The machine a snapshot load installs: ``machine`` itself, except under
    ``install-stale-snapshot``, where every load after the first installs the first one's
    machine again (tick thread only)."""
    global _first_snapshot  # noqa: PLW0603 - one node process, one fault
    if _process_fault != "install-stale-snapshot":
        return machine
    if _first_snapshot is None:
        _first_snapshot = machine
        return machine
    logger.error("TEST FAULT: installing the first snapshot's state again (stale)")
    return _first_snapshot


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


def apply_process_faults(fault: str | None) -> None:
    """Apply the faults that act below the API, once per node process (idempotent).

    - ``journal-ignores-write-errors``: the ``os`` the journal and snapshot-file modules call
      (``raftq.raft.pysyncobj.journal``, ``raftq.raft.snapshot_file``) is ``_SwallowingOs``, and
      the journal's fail-stop guard (``DurableFileJournal._io``) lets every other error (the
      term/vote file's) go to PySyncObj's tick thread, which logs it and carries on: the
      node before the fail-stop fix.
    - ``clock-unbounded``: ``RaftNode.now_ms`` becomes the raw wall clock.
    - ``install-stale-snapshot``: arms ``snapshot_to_install``.
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
