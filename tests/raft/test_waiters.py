"""ClaimWaiters (raftq/raft/waiters.py): which waiting claims an applied entry or a proposed
enqueue serves, against a real state machine; proposals are recorded instead of replicated."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from raftq.core import Claim, Command, Enqueue, Machine, NewJob, Result, encode_entry
from raftq.errors import NotLeader
from raftq.raft.waiters import ClaimWaiters


class Proposals:
    def __init__(self) -> None:
        self.machine = Machine()
        self.sent: list[Command] = []
        self.leader = True

    def propose(self, command: Command) -> asyncio.Future[Result]:
        if not self.leader:
            raise NotLeader("n2")
        self.sent.append(command)
        return asyncio.get_running_loop().create_future()

    @contextlib.contextmanager
    def read(self) -> Iterator[Machine]:
        yield self.machine

    def apply(self, command: Command) -> None:
        self.machine.apply_entry(encode_entry([command]))


def _claim(worker: str, queues: tuple[str, ...]) -> Claim:
    return Claim(now_ms=1_000, queues=queues, worker=worker, max=10)


def _enqueue(queue: str, *jobs: NewJob) -> Enqueue:
    return Enqueue(now_ms=1_000, queue=queue, jobs=jobs)


async def _waiting(w: ClaimWaiters, *specs: tuple[str, tuple[str, ...]]) -> list[asyncio.Task]:
    tasks = [
        asyncio.create_task(w.wait(queues, 5_000, lambda n=name, q=queues: _claim(n, q)))
        for name, queues in specs
    ]
    await asyncio.sleep(0)  # every waiter registered (nothing is ready)
    return tasks


async def test_an_enqueue_takes_one_waiter_per_ready_job_along_oldest_first() -> None:
    p = Proposals()
    w = ClaimWaiters(p.propose, p.read)
    tasks = await _waiting(
        w, ("a", ("q",)), ("b", ("other",)), ("c", ("other", "q")), ("d", ("q",))
    )
    assert p.sent == []
    # Two ready jobs and one delayed one: the two oldest waiters on q, not the one on `other`.
    w.on_enqueue(
        _enqueue(
            "q",
            NewJob(payload=b"1"),
            NewJob(payload=b"2", delay_ms=50),
            NewJob(payload=b"3", run_at_ms=900),
        )
    )
    assert [c.worker for c in p.sent if isinstance(c, Claim)] == ["a", "c"]
    for t in tasks[:1] + tasks[2:3]:
        assert isinstance(await t, asyncio.Future)  # the round's result future
    assert not tasks[1].done() and not tasks[3].done()
    w.on_enqueue(_enqueue("q", NewJob(payload=b"4", delay_ms=10)))  # nothing ready: nobody
    assert len(p.sent) == 2
    w.close()
    assert await tasks[1] is None and await tasks[3] is None


async def test_applied_entries_serve_as_many_waiters_as_jobs_are_ready() -> None:
    p = Proposals()
    w = ClaimWaiters(p.propose, p.read)
    tasks = await _waiting(w, ("a", ("q",)), ("b", ("q",)), ("c", ("q",)))
    p.apply(_enqueue("q", NewJob(payload=b"1"), NewJob(payload=b"2")))
    w.on_applied()
    assert [c.worker for c in p.sent if isinstance(c, Claim)] == ["a", "b"]
    assert not tasks[2].done()
    # A later pass counts again the jobs whose claims are still in flight, so c is served too:
    # its round may come back empty, and then it waits again.
    w.on_applied()
    assert [c.worker for c in p.sent if isinstance(c, Claim)] == ["a", "b", "c"]
    await asyncio.gather(*tasks)


async def test_a_waiter_already_satisfied_is_served_at_once() -> None:
    p = Proposals()
    p.apply(_enqueue("q", NewJob(payload=b"1")))
    w = ClaimWaiters(p.propose, p.read)
    fut = await w.wait(("q",), 5_000, lambda: _claim("a", ("q",)))
    assert isinstance(fut, asyncio.Future) and len(p.sent) == 1 and not w


async def test_no_round_when_the_client_left_or_leadership_moved() -> None:
    p = Proposals()
    w = ClaimWaiters(p.propose, p.read)
    left = asyncio.create_task(w.wait(("q",), 5_000, lambda: None))
    moved = asyncio.create_task(w.wait(("q",), 5_000, lambda: _claim("b", ("q",))))
    await asyncio.sleep(0)
    p.leader = False
    w.on_enqueue(_enqueue("q", NewJob(payload=b"1"), NewJob(payload=b"2")))
    assert await left is None and await moved is None and p.sent == []


async def test_a_timed_out_waiter_is_not_served() -> None:
    p = Proposals()
    w = ClaimWaiters(p.propose, p.read)
    assert await w.wait(("q",), 10, lambda: _claim("a", ("q",))) is None
    w.on_enqueue(_enqueue("q", NewJob(payload=b"1")))
    assert p.sent == [] and not w
