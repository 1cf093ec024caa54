"""The snapshot section of the dependency and batch tables (snapshot version 6).

Written after the request records, only by a machine whose enabled log version is 3 or above
(before that the tables are empty and the snapshot keeps its older version). Items: a head
``[next_batch, n_links, n_dependants, n_batches]``, then the link records ``[job id, deps,
remaining, run_on_failure, outcomes]``, the dependants records ``[parent id, [job id, ...]]``
and the batch records ``[id, jobs, outcomes, succeeded, live, fired, on_complete, on_success,
on_death]``, each table in its dict order (so a restored machine writes the same bytes).
``outcomes`` is flat: id, state code, result, ... ``batch_of`` is derived (members still in the
jobs table).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from raftq.core.batches import Batch
from raftq.core.commands import BatchCallback
from raftq.core.deps import Link
from raftq.core.errors import CodecError
from raftq.core.job import JobState

if TYPE_CHECKING:
    from raftq.core.machine import Machine

__all__ = ["flow_records", "read_flow"]

_STATES = list(JobState)
_STATE_CODE = {s: i for i, s in enumerate(_STATES)}


def _flat(outcomes: dict[int, tuple[JobState, bytes | None]]) -> list[Any]:
    return [x for k, (st, res) in outcomes.items() for x in (k, _STATE_CODE[st], res)]


def _unflat(v: list[Any]) -> dict[int, tuple[JobState, bytes | None]]:
    return {v[i]: (_STATES[v[i + 1]], v[i + 2]) for i in range(0, len(v), 3)}


def _cb(c: BatchCallback | None) -> list[Any] | None:
    return None if c is None else [c.queue, c.payload]


def flow_records(m: Machine) -> Iterator[list[Any]]:
    f = m.flow
    yield [f.next_batch, len(f.links), len(f.dependants), len(f.batches)]
    for job_id, link in f.links.items():
        yield [job_id, list(link.deps), link.remaining, link.run_on_failure, _flat(link.outcomes)]
    for parent, ids in f.dependants.items():
        yield [parent, list(ids)]
    for b in f.batches.values():
        yield [
            b.id,
            list(b.jobs),
            _flat(b.outcomes),
            b.succeeded,
            b.live,
            b.fired,
            *(_cb(c) for c in b.callbacks),
        ]


def read_flow(m: Machine, it: Iterator[Any]) -> None:
    f = m.flow
    f.next_batch, n_links, n_dependants, n_batches = next(it)
    for _ in range(n_links):
        job_id, deps, remaining, run, outcomes = next(it)
        link = Link(tuple(deps), bool(run))
        link.remaining, link.outcomes = remaining, _unflat(outcomes)
        f.links[job_id] = link
    for _ in range(n_dependants):
        parent, ids = next(it)
        f.dependants[parent] = list(ids)
    for _ in range(n_batches):
        batch_id, jobs, outcomes, succeeded, live, fired, *cbs = next(it)
        if len(cbs) != 3:
            raise CodecError("corrupt snapshot: bad batch record")
        callbacks = tuple(
            None if c is None else BatchCallback(queue=c[0], payload=c[1]) for c in cbs
        )
        b = Batch(batch_id, callbacks)
        b.jobs, b.outcomes = tuple(jobs), _unflat(outcomes)
        b.succeeded, b.live, b.fired = succeeded, live, fired
        f.batches[batch_id] = b
        for j in b.jobs:
            if j in m.jobs:
                f.batch_of[j] = batch_id
