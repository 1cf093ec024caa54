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
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final

from raftq.core import Enqueue, Enqueued, Lease, Machine
from raftq.core.job import JobState
from raftq.errors import ConfigError

__all__ = [
    "ENABLE_ENV",
    "ENABLE_VALUE",
    "FAULTS",
    "FAULT_ENV",
    "active_fault",
    "current_token",
    "local_leases",
    "pretend_enqueued",
]

logger = logging.getLogger(__name__)

FAULT_ENV: Final = "RAFTQ_TEST_FAULT"
ENABLE_ENV: Final = "RAFTQ_TEST_FAULTS_ENABLED"
ENABLE_VALUE: Final = "yes-break-this-node"
FAULTS: Final = frozenset(
    {"ack-before-commit", "follower-claims", "skip-token-check", "nack-drops"}
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
