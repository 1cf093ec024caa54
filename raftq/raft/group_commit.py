"""Group commit: coalesce concurrent commands into few log entries.

A command submitted while fewer than ``max_inflight`` entries are waiting for commit is sent
on the next loop iteration (so one request alone pays one round trip); commands submitted
while the pipeline is full wait and leave together in the next entry, bounded in count and
bytes. Under load entries grow, so the cost of a Raft round trip is shared by many requests.

Runs entirely on the asyncio loop thread; ``propose`` hands one encoded entry to Raft and
arranges for ``done(results, error)`` to be called back on the loop.

Instrumentation (loop time): ``on_entry(commands, waited_s)`` when an entry is proposed, with
how long its oldest command waited for a place in the pipeline; ``on_commit(seconds)`` when an
entry's results arrive, from its proposal on (replicated, committed and applied here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from raftq.core import Command, FlowJob, NewJob, Result, encode_entry
from raftq.errors import ClusterError, OutcomeUnknown

__all__ = ["GroupCommit", "results_within"]

logger = logging.getLogger(__name__)

# done(results, error): results when applied, else the error to raise in every waiter.
Done = Callable[[list[Result] | None, ClusterError | None], None]
Propose = Callable[[bytes, Done], None]
# A command waiting to be proposed: its result future and when it was submitted (loop time).
_Pending = tuple[Command, asyncio.Future[Result], float]


@dataclass(slots=True)
class _Entry:
    futures: list[asyncio.Future[Result]]
    proposed_at: float  # loop time
    finished: bool = False
    timer: asyncio.TimerHandle | None = field(default=None)


class GroupCommit:
    def __init__(
        self,
        propose: Propose,
        *,
        max_inflight: int = 2,
        max_commands: int = 4096,
        max_bytes: int = 4 * 1024 * 1024,
        entry_timeout_ms: int = 10_000,
        on_entry: Callable[[int, float], None] | None = None,
        on_commit: Callable[[float], None] | None = None,
    ) -> None:
        self._propose = propose
        self._on_entry = on_entry  # instrumentation (module docstring)
        self._on_commit = on_commit
        self._max_inflight = max_inflight
        self._max_commands = max_commands
        self._max_bytes = max_bytes
        self._entry_timeout_s = entry_timeout_ms / 1000
        self._pending: list[_Pending] = []
        self._inflight = 0
        self._flush_scheduled = False

    def submit(self, command: Command) -> asyncio.Future[Result]:
        """Queue ``command``; the future resolves with its result or a ``ClusterError``."""
        return self.submit_many((command,))[0]

    def submit_many(self, commands: Sequence[Command]) -> list[asyncio.Future[Result]]:
        """Queue ``commands`` in order, as if submitted one by one in the same loop
        iteration: one future each (its own result or ``ClusterError``), log order kept."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        futures: list[asyncio.Future[Result]] = []
        for command in commands:
            fut: asyncio.Future[Result] = loop.create_future()
            self._pending.append((command, fut, now))
            futures.append(fut)
        if not self._flush_scheduled and self._inflight < self._max_inflight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return futures

    def fail_pending(self, error: ClusterError) -> None:
        """Fail every command not yet proposed (e.g. leadership lost): definite, not sent."""
        pending, self._pending = self._pending, []
        for _, fut, _ in pending:
            if not fut.done():
                fut.set_exception(error)

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending and self._inflight < self._max_inflight:
            batch = self._take_batch()
            if batch:
                self._send(batch)

    def _take_batch(self) -> list[_Pending]:
        # Commands whose caller gave up (cancelled) are dropped before they are proposed.
        n = 0
        size = 0
        for command, _, _ in self._pending:
            size += _approx_size(command)
            n += 1
            if n >= self._max_commands or size >= self._max_bytes:
                break
        batch, self._pending = self._pending[:n], self._pending[n:]
        return [p for p in batch if not p[1].done()]

    def _send(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        entry = _Entry(futures=[f for _, f, _ in batch], proposed_at=now)
        raw = encode_entry([c for c, _, _ in batch])
        self._inflight += 1
        if self._on_entry is not None:
            self._on_entry(len(batch), now - batch[0][2])

        def done(results: list[Result] | None, error: ClusterError | None) -> None:
            self._finish(entry, results, error)

        entry.timer = loop.call_later(
            self._entry_timeout_s,
            self._finish,
            entry,
            None,
            OutcomeUnknown("no answer from raft within the entry deadline"),
        )
        try:
            self._propose(raw, done)
        except ClusterError as e:
            self._finish(entry, None, e)

    def _finish(
        self, entry: _Entry, results: list[Result] | None, error: ClusterError | None
    ) -> None:
        if entry.finished:  # a late callback after the deadline: the waiters already know
            return
        entry.finished = True
        if entry.timer is not None:
            entry.timer.cancel()
        self._inflight -= 1
        if results is not None and len(results) != len(entry.futures):
            error = OutcomeUnknown(f"{len(results)} results for {len(entry.futures)} commands")
            results = None
        if results is not None and self._on_commit is not None:
            self._on_commit(asyncio.get_running_loop().time() - entry.proposed_at)
        for i, fut in enumerate(entry.futures):
            if fut.done():
                continue
            if results is not None:
                fut.set_result(results[i])
            else:
                fut.set_exception(error or OutcomeUnknown("entry failed"))
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)


def _approx_size(command: Command) -> int:
    """A cheap upper-bound-ish estimate of a command's encoded size, for batch limits."""
    jobs = getattr(command, "jobs", None)
    if jobs is not None:  # NewJob, or FlowJob (a NewJob with a queue and its dependencies)
        return 64 + sum(_job_size(j) for j in jobs)
    result = getattr(command, "result", None) or b""
    return 64 + len(result)


def _job_size(j: NewJob | FlowJob) -> int:
    if isinstance(j, FlowJob):
        return len(j.job.payload) + 64 + len(j.queue) + 8 * len(j.depends_on)
    return len(j.payload) + 48


async def results_within(
    futures: Sequence[asyncio.Future[Result]], timeout_s: float
) -> list[Result]:
    """The results of ``futures`` (from ``GroupCommit.submit_many``), in order, under one
    deadline for all: the cost of one wait per entry they went out in, not one per command.

    The first failure in order is raised (``OutcomeUnknown`` when the deadline passes first);
    then the futures not done yet are cancelled (a command not proposed yet is dropped, as
    ``asyncio.wait_for`` does for a single one) and the errors of the others are retrieved,
    so none is logged as never retrieved.
    """
    ok = False
    try:
        async with asyncio.timeout(timeout_s):
            # A future already resolved (the usual case after the first: one entry resolves
            # them all at once) is awaited without suspending.
            results = [await fut for fut in futures]
        ok = True
        return results
    except TimeoutError as e:
        raise OutcomeUnknown(f"no commit within {timeout_s:g} s") from e
    finally:
        if not ok:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()
