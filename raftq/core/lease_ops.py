"""Command handlers, part 2: what a lease holder does (heartbeat, ack, nack, release) and
cancel.

A lease is live while ``clock_ms < lease_expires_ms``; ack, nack, release and heartbeat need
the live lease's token. A job whose lease ended by expiry keeps ``lease_expires_ms != 0``
until it is claimed again, finished or rescheduled, which is how its old token gets
``lease_expired`` rather than ``stale_token``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftq.core.backoff import backoff_ms
from raftq.core.commands import Ack, Cancel, Heartbeat, Nack, Release
from raftq.core.job import FINISHED_STATES, Job, JobState
from raftq.core.limits import (
    MAX_DELAY_MS,
    MAX_ERROR_CHARS,
    MAX_LEASE_MS,
    MAX_PAYLOAD_BYTES,
    MAX_PROGRESS_BYTES,
)
from raftq.core.ops import advance_queue, finish, in_range, invalid, move, schedule
from raftq.core.queue import QueueState
from raftq.core.results import (
    Acked,
    Cancelled,
    Extended,
    Nacked,
    Reason,
    Refusal,
    Released,
    Result,
)
from raftq.core.tally import CANCELLED, DEAD, FAILED, RETRIED, SUCCEEDED

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = ["ack", "cancel", "heartbeat", "nack", "release"]

_LONG_JOBS_VERSION = 3  # the log version of progress, checkpoints and cancel_requested


def _leased_job(m: Machine, job_id: int, token: int) -> tuple[Job, QueueState] | Refusal:
    """The job if ``token`` is its live lease; else why not."""
    job = m.jobs.get(job_id)
    if job is None:
        return Refusal(Reason.NOT_FOUND, f"no job {job_id}")
    if token != job.token:
        return Refusal(Reason.STALE_TOKEN, f"token {token} is not job {job_id}'s current lease")
    if job.state is JobState.LEASED and m.clock_ms < job.lease_expires_ms:
        return job, m.queues[job.queue]
    if job.state is JobState.LEASED or job.lease_expires_ms != 0:
        return Refusal(Reason.LEASE_EXPIRED, f"the lease of job {job_id} expired")
    if job.state in FINISHED_STATES:
        return Refusal(Reason.FINISHED, f"job {job_id} is already {job.state}")
    return Refusal(Reason.STALE_TOKEN, f"job {job_id} is {job.state}, not leased")


def heartbeat(m: Machine, cmd: Heartbeat) -> Result:
    if not in_range(cmd.lease_ms, 1, MAX_LEASE_MS):
        return invalid(f"lease_ms must be 1..{MAX_LEASE_MS}")
    for name, value in (("progress", cmd.progress), ("checkpoint", cmd.checkpoint)):
        if value is not None and len(value) > MAX_PROGRESS_BYTES:
            return invalid(f"{name} larger than {MAX_PROGRESS_BYTES} bytes")
    cancelled = m.jobs.get(cmd.job_id)
    if cancelled is not None and cancelled.cancel_requested and cmd.token == cancelled.token:
        # The lease this token holds was revoked by a cancel: tell its worker to stop.
        return Extended(cancelled.finished_ms, cancel_requested=True)
    found = _leased_job(m, cmd.job_id, cmd.token)
    if isinstance(found, Refusal):
        return found
    job, q = found
    if cmd.progress is not None or cmd.checkpoint is not None:
        job.set_long(
            job.progress if cmd.progress is None else cmd.progress,
            job.checkpoint if cmd.checkpoint is None else cmd.checkpoint,
            False,
        )
    # Without lease_ms, the length the lease was claimed with (the claim may have overridden
    # the job's own lease_ms).
    expires_ms = m.clock_ms + (job.claim_lease_ms if cmd.lease_ms is None else cmd.lease_ms)
    if expires_ms != job.lease_expires_ms:  # an equal key is already in the heap
        job.lease_expires_ms = expires_ms
        q.push_lease(job)
    return Extended(expires_ms)


def ack(m: Machine, cmd: Ack) -> Result:
    if cmd.result is not None and len(cmd.result) > MAX_PAYLOAD_BYTES:
        return invalid(f"result larger than {MAX_PAYLOAD_BYTES} bytes")
    found = _leased_job(m, cmd.job_id, cmd.token)
    if isinstance(found, Refusal):
        return found
    job, q = found
    job.result = cmd.result
    q.tally.totals[SUCCEEDED] += 1
    q.tally.run.observe(m.clock_ms - job.claimed_ms)
    finish(m, q, job, JobState.SUCCEEDED, m.clock_ms)
    advance_queue(m, q)
    return Acked(job.id)


def nack(m: Machine, cmd: Nack) -> Result:
    if not in_range(cmd.retry_in_ms, 0, MAX_DELAY_MS):
        return invalid(f"retry_in_ms must be 0..{MAX_DELAY_MS}")
    found = _leased_job(m, cmd.job_id, cmd.token)
    if isinstance(found, Refusal):
        return found
    job, q = found
    job.error = None if cmd.error is None else cmd.error[:MAX_ERROR_CHARS]
    totals = q.tally.totals
    totals[FAILED] += 1
    if job.attempts >= job.max_attempts:
        totals[DEAD] += 1
        finish(m, q, job, JobState.DEAD, m.clock_ms)
        result = Nacked(job.id, JobState.DEAD.value, None)
    else:
        totals[RETRIED] += 1
        delay_ms = backoff_ms(job.id, job.attempts) if cmd.retry_in_ms is None else cmd.retry_in_ms
        schedule(m, q, job, delay_ms)
        result = Nacked(job.id, job.state.value, job.ready_at_ms)
    advance_queue(m, q)
    return result


def release(m: Machine, cmd: Release) -> Result:
    found = _leased_job(m, cmd.job_id, cmd.token)
    if isinstance(found, Refusal):
        return found
    job, q = found
    # Back where it stood in line: its ready key (priority, ready_at_ms, id) is the one it
    # had before the claim, which changed neither. The claim's attempt is undone, and with
    # it the claim's lease (lease_expires_ms 0: the token now answers stale_token).
    job.attempts -= 1
    job.lease_expires_ms = 0
    move(q, job, JobState.QUEUED)
    q.push_ready(job)
    advance_queue(m, q)
    return Released(job.id)


def cancel(m: Machine, cmd: Cancel) -> Result:
    job = m.jobs.get(cmd.job_id)
    if job is None:
        return Refusal(Reason.NOT_FOUND, f"no job {cmd.job_id}")
    q = m.queues[job.queue]
    # Decide on the job as of cluster time: its lease may have ended (leaving it dead), or it
    # may be past retention (collected).
    advance_queue(m, q)
    if cmd.job_id not in m.jobs:
        return Refusal(Reason.NOT_FOUND, f"no job {cmd.job_id}")
    if job.state in FINISHED_STATES:
        return Refusal(Reason.FINISHED, f"job {cmd.job_id} is already {job.state}")
    q.tally.totals[CANCELLED] += 1
    # Leased (and live: advance_queue ended any expired lease): ask its worker to stop. Only
    # once version 3 is enabled, so that an older node's snapshot holds nothing it cannot read.
    ask = job.state is JobState.LEASED and m.enabled_version >= _LONG_JOBS_VERSION
    finish(m, q, job, JobState.CANCELLED, m.clock_ms)
    if ask:
        job.set_long(job.progress, None, True)
    advance_queue(m, q)
    return Cancelled(job.id)
