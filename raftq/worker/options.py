"""A worker's settings, validated with every problem listed (``ConfigError``)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Final, Literal

from raftq.core.limits import MAX_CLAIM, MAX_DELAY_MS, MAX_LEASE_MS, MAX_WORKER_CHARS
from raftq.errors import ConfigError

__all__ = ["AUTO_HOLD_MS", "WorkerOptions", "default_name"]

_MIN_LEASE_MS = 300  # heartbeats every lease/3: below this they would flood the log
# prefetch="auto": the worker leases ahead as many jobs as its slots finish in about this long
# (from the handlers' measured run time), at most ``concurrency``: a held job waits about this
# long for its slot, so a job is not kept from an idle worker for longer than a claim takes.
AUTO_HOLD_MS: Final = 20


def default_name() -> str:
    """``<hostname>:<pid>``: what a worker is recorded as on the jobs it holds."""
    return f"{socket.gethostname()}:{os.getpid()}"[:MAX_WORKER_CHARS]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """How a worker claims and runs jobs.

    Attributes:
        concurrency: jobs run at the same time; the worker claims only for free slots.
        lease_ms: the lease the worker claims with (overriding the job's own ``lease_ms``) and
            extends by each heartbeat; after a crash, a job is redelivered this long after the
            last heartbeat.
        heartbeat_ms: heartbeat period while a job runs (default: a third of ``lease_ms``).
        job_timeout_ms: default per-job timeout (``None``: none); a handler may set its own.
        retry_in_ms: retry delay after a failure or a timeout (``None``: the cluster's
            exponential backoff, 1 s doubling to 1 h with jitter).
        grace_ms: on stop, how long running jobs may finish before they are cancelled and
            nacked for immediate redelivery.
        wait_ms: long-poll of one claim; an idle worker stops within this after a stop.
        batch: most jobs per claim (default: as many as there are free slots).
        prefetch: jobs the worker may claim ahead of its free slots, held until a slot frees
            (their leases are heartbeated meanwhile). With it, several claims are in flight
            at once while the queues have a backlog, so short jobs are not paced by one claim
            round trip (a Raft commit) per batch. Held jobs wait for this worker even when
            another one is idle. ``"auto"`` (the default): as many as the slots finish in
            about ``AUTO_HOLD_MS`` (20 ms) by the handlers' average run time so far, at most
            ``concurrency`` (jobs of 20 ms or less); none until a first job has run, and none
            for jobs that run longer than ``concurrency`` x 20 ms. ``0``: claim only for free
            slots.
        name: recorded on the jobs it holds (default ``<hostname>:<pid>``).
    """

    concurrency: int = 10
    lease_ms: int = 30_000
    heartbeat_ms: int | None = None
    job_timeout_ms: int | None = None
    retry_in_ms: int | None = None
    grace_ms: int = 30_000
    wait_ms: int = 2_000
    batch: int | None = None
    prefetch: int | Literal["auto"] = "auto"
    name: str | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []

        def check(field: str, value: int | None, lo: int, hi: int, optional: bool) -> None:
            if value is None and optional:
                return
            if type(value) is not int or not lo <= value <= hi:
                problems.append(f"{field} must be an integer in {lo}..{hi}, got {value!r}")

        check("concurrency", self.concurrency, 1, 10_000, False)
        check("lease_ms", self.lease_ms, _MIN_LEASE_MS, MAX_LEASE_MS, False)
        check("heartbeat_ms", self.heartbeat_ms, 50, MAX_LEASE_MS, True)
        check("job_timeout_ms", self.job_timeout_ms, 1, MAX_DELAY_MS, True)
        check("retry_in_ms", self.retry_in_ms, 0, MAX_DELAY_MS, True)
        check("grace_ms", self.grace_ms, 0, 86_400_000, False)
        check("wait_ms", self.wait_ms, 0, 600_000, False)
        check("batch", self.batch, 1, MAX_CLAIM, True)
        if self.prefetch != "auto" and (
            type(self.prefetch) is not int or not 0 <= self.prefetch <= 10_000
        ):
            problems.append(
                f'prefetch must be "auto" or an integer in 0..10000, got {self.prefetch!r}'
            )
        if (
            isinstance(self.heartbeat_ms, int)
            and isinstance(self.lease_ms, int)
            and self.heartbeat_ms >= self.lease_ms
        ):
            problems.append(
                f"heartbeat_ms ({self.heartbeat_ms}) must be shorter than lease_ms "
                f"({self.lease_ms}), about a third of it"
            )
        if self.name is not None and (
            type(self.name) is not str or not 1 <= len(self.name) <= MAX_WORKER_CHARS
        ):
            problems.append(f"name must be 1..{MAX_WORKER_CHARS} characters")
        if problems:
            raise ConfigError(problems)

    @property
    def heartbeat_period_ms(self) -> int:
        """The heartbeat period actually used."""
        return self.heartbeat_ms if self.heartbeat_ms is not None else max(50, self.lease_ms // 3)
