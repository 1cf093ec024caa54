"""Group commit's batched submission (``GroupCommit.submit_many``, ``results_within``).

Entries are applied to a real ``Machine`` by the test's ``propose`` (the part Raft plays in a
node): each proposed entry waits in ``Proposals`` until the test commits it, fails it, or
leaves it unanswered.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field

import pytest

from raftq.core import (
    Ack,
    Acked,
    BatchCreated,
    Claim,
    Claimed,
    CreateBatch,
    EnableVersion,
    Enqueue,
    Enqueued,
    EnqueueFlow,
    FlowJob,
    Lease,
    Machine,
    NewJob,
    Reason,
    Refusal,
    Result,
    encode_entry,
)
from raftq.core.codec import decode_entry
from raftq.errors import ClusterError, NoLeader, OutcomeUnknown
from raftq.raft.group_commit import Done, GroupCommit, results_within

T0 = 1_700_000_000_000


@dataclass
class Proposals:
    machine: Machine = field(default_factory=Machine)
    waiting: list[tuple[bytes, Done]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # commands per proposed entry

    def propose(self, raw: bytes, done: Done) -> None:
        self.sizes.append(len(decode_entry(raw)))
        self.waiting.append((raw, done))

    def commit_next(self) -> None:
        raw, done = self.waiting.pop(0)
        done(self.machine.apply_entry(raw), None)

    def fail_next(self, error: ClusterError) -> None:
        _, done = self.waiting.pop(0)
        done(None, error)


def _leases(p: Proposals, n: int) -> list[Lease]:
    jobs = tuple(NewJob(payload=b"p") for _ in range(n))
    p.machine.apply_entry(_entry(Enqueue(now_ms=T0, queue="q", jobs=jobs)))
    (claimed,) = p.machine.apply_entry(_entry(Claim(now_ms=T0, queues=("q",), worker="w", max=n)))
    assert isinstance(claimed, Claimed)
    return list(claimed.jobs)


def _entry(*commands: Enqueue | Claim | Ack | EnableVersion) -> bytes:
    return encode_entry(list(commands))


def _acks(leases: list[Lease], rid: str, stale: int | None = None) -> list[Ack]:
    return [
        Ack(
            now_ms=T0,
            request_id=f"{rid}.{i}",
            job_id=x.id,
            token=x.token + (99 if i == stale else 0),
            result=None,
        )
        for i, x in enumerate(leases)
    ]


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_batch_goes_out_in_one_entry_with_an_outcome_per_command() -> None:
    p = Proposals()
    leases = _leases(p, 3)
    gc = GroupCommit(p.propose)
    futures = gc.submit_many(_acks(leases, "r", stale=1))
    waiting = asyncio.create_task(results_within(futures, 5))
    await _settle()
    assert p.sizes == [3]
    p.commit_next()
    first, stale, last = await waiting
    assert first == Acked(leases[0].id) and last == Acked(leases[2].id)
    assert isinstance(stale, Refusal) and stale.reason is Reason.STALE_TOKEN


async def test_a_retry_is_answered_per_item_with_the_first_outcome() -> None:
    p = Proposals()
    leases = _leases(p, 3)
    gc = GroupCommit(p.propose)
    answers: list[list[Result]] = []
    for _ in range(2):  # the same request ids: the second is answered from memory
        waiting = asyncio.create_task(results_within(gc.submit_many(_acks(leases, "r", 1)), 5))
        await _settle()
        p.commit_next()
        answers.append(await waiting)
    assert answers[0] == answers[1]
    assert isinstance(answers[1][0], Acked)  # not "already finished": the first outcome
    # A fresh request id is a new operation: the acked jobs are finished by now.
    waiting = asyncio.create_task(results_within(gc.submit_many(_acks(leases, "s")), 5))
    await _settle()
    p.commit_next()
    fresh = await waiting
    assert isinstance(fresh[0], Refusal) and fresh[0].reason is Reason.FINISHED


@pytest.mark.parametrize("failing", [0, 1])
async def test_a_cluster_failure_of_any_entry_fails_the_batch(failing: int) -> None:
    p = Proposals()
    leases = _leases(p, 4)
    gc = GroupCommit(p.propose, max_commands=2, max_inflight=2)  # two entries of two
    waiting = asyncio.create_task(results_within(gc.submit_many(_acks(leases, "r")), 5))
    await _settle()
    assert p.sizes == [2, 2]
    for i in range(2):
        if i == failing:
            p.fail_next(NoLeader("entry discarded"))
        else:
            p.commit_next()
    with pytest.raises(NoLeader):
        await waiting


async def test_the_first_failure_in_order_is_raised() -> None:
    p = Proposals()
    leases = _leases(p, 2)
    gc = GroupCommit(p.propose, max_commands=1, max_inflight=2)
    waiting = asyncio.create_task(results_within(gc.submit_many(_acks(leases, "r")), 5))
    await _settle()
    p.waiting[1][1](None, NoLeader("second"))  # the later entry answers first
    p.fail_next(OutcomeUnknown("first"))
    with pytest.raises(OutcomeUnknown, match="first"):
        await waiting


async def test_no_failure_is_left_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    """The errors of the futures after the one raised are retrieved: asyncio would log each
    as "Future exception was never retrieved" when collected."""
    p = Proposals()
    leases = _leases(p, 2)
    gc_ = GroupCommit(p.propose, max_commands=1, max_inflight=2)
    futures = gc_.submit_many(_acks(leases, "r"))
    waiting = asyncio.create_task(results_within(futures, 5))
    await _settle()
    p.waiting[1][1](None, NoLeader("second"))
    p.fail_next(OutcomeUnknown("first"))
    with pytest.raises(OutcomeUnknown):
        await waiting
    del futures, waiting
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert "never retrieved" not in caplog.text


async def test_the_deadline_is_outcome_unknown_and_drops_what_was_not_proposed() -> None:
    p = Proposals()
    leases = _leases(p, 3)
    gc = GroupCommit(p.propose, max_inflight=1)
    blocker = gc.submit(_acks(leases[:1], "a")[0])  # fills the pipeline
    await _settle()
    futures = gc.submit_many(_acks(leases[1:], "b"))  # wait behind it
    with pytest.raises(OutcomeUnknown):
        await results_within(futures, 0.05)
    assert all(f.cancelled() for f in futures)
    p.commit_next()
    assert isinstance(await blocker, Acked)
    await _settle()
    assert p.sizes == [1]  # the given-up commands were never proposed
    assert p.machine.job_info(leases[1].id).state.value == "leased"  # type: ignore[union-attr]


async def test_submit_many_keeps_order_with_single_submits() -> None:
    p = Proposals()
    leases = _leases(p, 3)
    gc = GroupCommit(p.propose)
    acks = _acks(leases, "r")
    one = gc.submit(acks[0])
    many = gc.submit_many(acks[1:])
    await _settle()
    assert p.sizes == [3]  # one entry, in submission order
    p.commit_next()
    assert [await one, *(await results_within(many, 5))] == [Acked(x.id) for x in leases]


async def test_entries_report_their_queue_wait_and_commit_time() -> None:
    """``on_entry`` gets each proposed entry's size and how long its oldest command waited for
    the pipeline; ``on_commit`` how long each applied entry took from its proposal (a failed
    entry reports nothing)."""
    p = Proposals()
    leases = _leases(p, 3)
    entries: list[tuple[int, float]] = []
    commits: list[float] = []
    gc = GroupCommit(
        p.propose,
        max_inflight=1,
        on_entry=lambda n, waited: entries.append((n, waited)),
        on_commit=commits.append,
    )
    first = gc.submit(_acks(leases[:1], "a")[0])
    await _settle()
    queued = gc.submit_many(_acks(leases[1:], "b"))  # waits behind the entry in flight
    await asyncio.sleep(0.05)
    p.commit_next()
    assert isinstance(await first, Acked)
    await _settle()
    assert [n for n, _ in entries] == [1, 2]
    assert entries[0][1] < 0.05 <= entries[1][1] < 5
    assert len(commits) == 1 and 0.05 <= commits[0] < 5
    p.fail_next(NoLeader("discarded"))
    with pytest.raises(NoLeader):
        await results_within(queued, 5)
    assert len(commits) == 1


async def test_flow_commands_go_out_too() -> None:
    """A dependency or batch command is sized like an enqueue (its jobs are ``FlowJob``s,
    whose payload is one level down): it was an AttributeError in the flush, and the
    command never left the node."""
    p = Proposals()
    p.machine.apply_entry(_entry(EnableVersion(now_ms=T0, version=3)))
    gc = GroupCommit(p.propose)
    job = FlowJob(queue="q", job=NewJob(payload=b"p"))
    batch = CreateBatch(now_ms=T0, jobs=(job, job))
    futures = gc.submit_many([EnqueueFlow(now_ms=T0, jobs=(job,)), batch])
    waiting = asyncio.create_task(results_within(futures, 5))
    await _settle()
    assert p.sizes == [2]
    p.commit_next()
    flow, created = await waiting
    assert isinstance(flow, Enqueued) and isinstance(created, BatchCreated)
