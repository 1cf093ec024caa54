"""Batches: a set of jobs created together (``CreateBatch``) with callbacks.

A batch counts its members' outcomes as they finish (``member_changed``, from ``deps.settle``)
and enqueues each callback exactly once, in the command that makes it due:

- ``on_complete``: every member is finished (succeeded, dead or cancelled);
- ``on_success``: every member succeeded. A dead member that is requeued (``RequeueDead``)
  is unfinished again, so a batch whose dead members are requeued and then succeed still
  fires it (after ``on_complete`` and ``on_death`` fired for the first round);
- ``on_death``: the first member that dies (a lease that ran out of attempts included).

A callback is a job of its queue (created with the batch, so firing never creates a queue)
whose claim carries the members' outcomes so far as ``parents``, in member order. A batch is
kept until its last member is deleted (collected after retention, or purged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftq.core.commands import BatchCallback, CreateBatch, FlowJob, NewJob
from raftq.core.job import JobState
from raftq.core.limits import MAX_PAYLOAD_BYTES, MAX_QUEUES, valid_queue_name
from raftq.core.ops import invalid
from raftq.core.queue import QueueState
from raftq.core.results import Reason, Refusal

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = [
    "COMPLETE",
    "DEATH",
    "SUCCESS",
    "Batch",
    "batch_counts",
    "member_changed",
    "open_batch",
    "validate_callbacks",
]

COMPLETE, SUCCESS, DEATH = 1, 2, 4  # bits of ``Batch.fired``


class Batch:
    """Invariants: ``outcomes`` holds exactly the members now finished (and those deleted
    finished); ``succeeded`` counts its SUCCEEDED entries; ``live`` the members still in the
    jobs table; a bit of ``fired`` is set once, when its callback was enqueued."""

    __slots__ = (
        "callbacks",
        "fired",
        "id",
        "jobs",
        "live",
        "outcomes",
        "succeeded",
    )

    def __init__(self, batch_id: int, callbacks: tuple[BatchCallback | None, ...]) -> None:
        self.id = batch_id
        self.jobs: tuple[int, ...] = ()
        self.callbacks = callbacks  # on_complete, on_success, on_death
        self.outcomes: dict[int, tuple[JobState, bytes | None]] = {}
        self.succeeded = 0
        self.live = 0
        self.fired = 0


def validate_callbacks(m: Machine, cmd: CreateBatch) -> Refusal | None:
    new: dict[str, None] = {}
    for name, cb in (
        ("on_complete", cmd.on_complete),
        ("on_success", cmd.on_success),
        ("on_death", cmd.on_death),
    ):
        if cb is None:
            continue
        if not valid_queue_name(cb.queue):
            return invalid(f"{name}: queue name must match [A-Za-z0-9_.:-]{{1,128}}")
        if len(cb.payload) > MAX_PAYLOAD_BYTES:
            return invalid(f"{name}: payload larger than {MAX_PAYLOAD_BYTES} bytes")
        if cb.queue not in m.queues:
            new[cb.queue] = None
    for fj in cmd.jobs:
        new.pop(fj.queue, None)
    unseen = sum(1 for fj in {fj.queue: None for fj in cmd.jobs} if fj not in m.queues)
    if len(m.queues) + len(new) + unseen > MAX_QUEUES:
        return Refusal(Reason.TOO_MANY_QUEUES, f"at most {MAX_QUEUES} queues")
    return None


def open_batch(m: Machine, cmd: CreateBatch) -> Batch:
    f = m.flow
    b = Batch(f.next_batch, (cmd.on_complete, cmd.on_success, cmd.on_death))
    f.next_batch += 1
    f.batches[b.id] = b
    for cb in b.callbacks:
        if cb is not None and cb.queue not in m.queues:
            m.queues[cb.queue] = QueueState(cb.queue)
    return b


def member_changed(
    m: Machine, b: Batch, job_id: int, state: JobState, result: bytes | None
) -> None:
    """A member finished in ``state``, or (``QUEUED``) a dead member was requeued."""
    old = b.outcomes.pop(job_id, None)
    if old is not None and old[0] is JobState.SUCCEEDED:
        b.succeeded -= 1
    if state is JobState.QUEUED:
        return
    b.outcomes[job_id] = (state, result)
    if state is JobState.SUCCEEDED:
        b.succeeded += 1
    n = len(b.jobs)
    if state is JobState.DEAD:
        _fire(m, b, DEATH)
    if len(b.outcomes) == n:
        _fire(m, b, COMPLETE)
    if b.succeeded == n:
        _fire(m, b, SUCCESS)


def _fire(m: Machine, b: Batch, bit: int) -> None:
    if b.fired & bit:
        return
    b.fired |= bit
    cb = b.callbacks[(COMPLETE, SUCCESS, DEATH).index(bit)]
    if cb is None:
        return
    from raftq.core import deps  # noqa: PLC0415 - deps imports this module

    fj = FlowJob(queue=cb.queue, job=NewJob(payload=cb.payload))
    job = deps.create_job(m, m.queues[cb.queue], fj, waiting=False)
    link = m.flow.links[job.id] = deps.Link((), False)
    link.outcomes = {j: b.outcomes[j] for j in b.jobs if j in b.outcomes}


def batch_counts(m: Machine, b: Batch) -> dict[str, int]:
    """Members by state (finished ones as they finished, even if since collected)."""
    counts = dict.fromkeys((s.value for s in JobState), 0)
    for st, _ in b.outcomes.values():
        counts[st.value] += 1
    for j in b.jobs:
        if j not in b.outcomes:
            job = m.jobs.get(j)
            if job is not None:
                counts[job.state.value] += 1
    return counts
