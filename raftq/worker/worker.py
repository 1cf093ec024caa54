"""``Worker``: claims jobs for its free slots and runs them with registered handlers.

The claim loop (one task) keeps ``concurrency`` slots busy: it claims at most as many jobs as
there are free slots (so an idle worker pulls, a busy one does not: work goes to the least
loaded), long-polling for ``wait_ms`` when nothing is ready, and starts a ``JobRun`` per job.

With ``prefetch``, the worker also claims up to that many jobs ahead of its free slots; they
are held, their leases heartbeated, and start in claim order as slots free up. The default,
``"auto"``, leases ahead what the slots finish in about 20 ms (``AUTO_HOLD_MS``) at the
handlers' average run time, at most ``concurrency``: short jobs are not paced by one claim
round trip (a Raft commit) per batch, and a held job waits about 20 ms for its slot, so long
jobs are not held back from idle workers (none are leased ahead for jobs longer than
``concurrency`` x 20 ms, nor before a first job has run).
Several claims are then in flight at once, but only while the queues have a backlog: a claim
that comes back with fewer jobs than it asked for means they were drained, and the worker
goes back to one claim at a time (the long-poll). Without prefetch several claims are in
flight only when ``batch`` is smaller than the free slots.

A slot is taken by a running handler. Once the handler has finished, its slot is free again
while the job's ack or nack is on its way (a Raft commit, milliseconds): the next claim
overlaps the acks, which the client coalesces into one request. At most ``concurrency +
prefetch`` such settling jobs (one round of what the worker may have claimed) free their
slots; past that, a finished job keeps its slot until its ack or nack is answered, so the
worker never holds more than ``2 * (concurrency + prefetch)`` jobs (leased to it), and a
cluster that is slow to answer acks slows the claims down too. ``running``
counts the handlers, ``held`` the prefetched jobs, ``settling`` the acks and nacks on their
way.

Several queues are claimed in one request (``POST /v1/claim``): the cluster hands out the best
job across all of them, highest priority first. Between jobs of equal priority it takes the
one that became ready first, whatever its queue, so a busy queue cannot starve another: a
job waits only behind jobs that were ready before it. The worker also rotates the order of the
queues it sends, so no queue is favoured by its position in the list.

Stopping (``stop()``, or SIGTERM/SIGINT with ``run(handle_signals=True)``):
1. no new claims; claims in flight are let finish (at most ``wait_ms``); jobs they bring and
   held (prefetched) jobs are handed back at once without being started (queued again, the
   claim not counted as an attempt: ``raftq.worker.source.hand_back``);
2. running jobs get ``grace_ms`` to finish (and are acked or nacked as usual); acks and nacks
   on their way are waited for too;
3. what is still running is cancelled and nacked with ``retry_in_ms=0``: redelivered at once.
A second stop request (``stop(now=True)``, a second signal) skips what is left of the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import signal
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Literal, TypeVar

from raftq import runloop
from raftq.client import Client
from raftq.client.stream import StreamUnsupportedError
from raftq.client.types import ClaimedJob
from raftq.core.limits import valid_queue_name
from raftq.errors import AuthError, ClusterError, RaftqError, Rejected, TransportError
from raftq.worker.acks import AckWaves
from raftq.worker.options import AUTO_HOLD_MS, WorkerOptions, default_name
from raftq.worker.runner import (
    OUTCOME_LOGGER,
    Handler,
    HandlerSpec,
    JobRun,
    RunContext,
    is_async_handler,
)
from raftq.worker.source import JobSource
from raftq.worker.stream_source import StreamSource
from raftq.worker.threads import DaemonThreadPool

__all__ = ["Worker"]

logger = logging.getLogger(__name__)
outcomes = logging.getLogger(OUTCOME_LOGGER)

_H = TypeVar("_H", bound=Handler)
_SETTLE_TIMEOUT_S = 10.0  # after the grace: how long nacks may take before we give up
_CLAIM_BACKOFF_CAP_S = 5.0
# Jobs leased (held, running, settling) <= this * (concurrency + prefetch): the acks of one
# full round of claimed jobs may be in flight while the next round is claimed, i.e. about
# one coalesced ack request per claim round trip. With prefetch, jobs finish as fast as they
# are claimed; a bound of 2 * concurrency + prefetch made the next claims wait for the acks
# (docs/benchmark-log.md, "Where a claim's time goes": +5-9% claim+ack with prefetch 10, 30).
_SETTLING_FACTOR = 2
_RUN_AVG_JOBS = 20  # prefetch "auto": the handlers' run time, averaged over about this many


class Worker:
    """Runs jobs of one or more queues with the handlers registered for them.

    Example::

        worker = Worker(["127.0.0.1:7001", "127.0.0.1:7002"], concurrency=8)

        @worker.handler("emails")
        async def send_email(job: raftq.worker.Job) -> dict:
            ...
            return {"sent": True}          # becomes the job's result

        worker.run_forever()               # until SIGINT/SIGTERM

    Args:
        nodes: API addresses of some nodes (as for ``raftq.client.Client``); may be left out
            when ``client`` is given, or set later with ``configure``.
        client: where to claim from instead of a new ``Client`` on ``nodes``: a ``Client``
            or an embedded ``raftq.Node`` (the worker does not close it).
        token: API token of the worker's own client.
        ssl: TLS context of the worker's own client.
        request_timeout_ms: deadline of one request of the worker's own client.
        retry_ms: how long the worker's own client retries one call through failures.
        concurrency, lease_ms, heartbeat_ms, job_timeout_ms, retry_in_ms, grace_ms, wait_ms,
            batch, prefetch, name: see ``WorkerOptions`` (kept in ``worker.options``).
        stream: with a ``Client`` (the worker's own or given), take jobs over the worker
            stream (``Client.stream``: the leader leases ahead up to the free slots plus
            ``prefetch``, and acks, nacks and heartbeats share the connection); ``False``, or
            a node that does not serve it (an older release), or a stream that cannot be
            opened: HTTP long-poll claims.

    Raises:
        ConfigError: an option is out of range (every problem listed).
    """

    def __init__(
        self,
        nodes: Sequence[str] | str | None = None,
        *,
        client: JobSource | None = None,
        token: str | None = None,
        ssl: ssl.SSLContext | None = None,
        request_timeout_ms: int = 10_000,
        retry_ms: int = 30_000,
        concurrency: int = 10,
        lease_ms: int = 30_000,
        heartbeat_ms: int | None = None,
        job_timeout_ms: int | None = None,
        retry_in_ms: int | None = None,
        grace_ms: int = 30_000,
        wait_ms: int = 2_000,
        batch: int | None = None,
        prefetch: int | Literal["auto"] = "auto",
        name: str | None = None,
        stream: bool = True,
    ) -> None:
        self.nodes = nodes
        self.stream = stream
        self.client = client
        self._token = token
        self._ssl = ssl
        self._request_timeout_ms = request_timeout_ms
        self._retry_ms = retry_ms
        self.options = WorkerOptions(
            concurrency=concurrency,
            lease_ms=lease_ms,
            heartbeat_ms=heartbeat_ms,
            job_timeout_ms=job_timeout_ms,
            retry_in_ms=retry_in_ms,
            grace_ms=grace_ms,
            wait_ms=wait_ms,
            batch=batch,
            prefetch=prefetch,
            name=name,
        )
        self._handlers: dict[str, HandlerSpec] = {}
        # Every job leased to this worker: held, running or settling.
        self._runs: dict[asyncio.Task[None], JobRun] = {}
        self._held: dict[JobRun, None] = {}  # claimed ahead of a slot, in claim order
        self._settling: set[JobRun] = set()  # handler over, ack or nack on its way
        self._asked = 0  # jobs asked for by the claims in flight
        self._run_s: float | None = None  # the handlers' average run time (prefetch "auto")
        self._stopping: asyncio.Event | None = None
        self._now: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._fatal: BaseException | None = None
        self._stop_early = False  # stop() before run(): return at once

    # -- setup ----------------------------------------------------------------------------

    def configure(
        self,
        *,
        nodes: Sequence[str] | str | None = None,
        client: JobSource | None = None,
        token: str | None = None,
        ssl: ssl.SSLContext | None = None,
        stream: bool | None = None,
        **options: Any,
    ) -> None:
        """Change settings before ``run`` (the CLI applies its flags this way).

        ``nodes``, ``client``, ``token``, ``ssl`` and ``stream`` replace the worker's when
        given; ``options`` are ``WorkerOptions`` fields (``ConfigError`` if out of range).
        """
        if stream is not None:
            self.stream = stream
        if nodes is not None:
            self.nodes = nodes
        if client is not None:
            self.client = client
        if token is not None:
            self._token = token
        if ssl is not None:
            self._ssl = ssl
        if options:
            self.options = replace(self.options, **options)

    def handler(self, queue: str, *, timeout_ms: int | None = None) -> Callable[[_H], _H]:
        """Decorator: register the function as the handler of ``queue`` (see
        ``add_handler``); returns the function unchanged."""

        def register(fn: _H) -> _H:
            self.add_handler(queue, fn, timeout_ms=timeout_ms)
            return fn

        return register

    def add_handler(self, queue: str, fn: Handler, *, timeout_ms: int | None = None) -> None:
        """Register ``fn`` as the handler of ``queue``.

        Args:
            queue: the queue name.
            fn: ``async def fn(job)`` runs on the worker's event loop; ``def fn(job)`` runs in
                the worker's thread pool (``concurrency`` threads). Its return value becomes the
                job's result (any JSON value or bytes); raising fails the attempt (``Retry``
                to choose the delay).
            timeout_ms: this queue's per-job timeout (default: ``job_timeout_ms``).

        Raises:
            ValueError: bad queue name, a second handler for the queue, or a bad timeout.
        """
        if not valid_queue_name(queue):
            raise ValueError(f"queue names match [A-Za-z0-9_.:-]{{1,128}}, got {queue!r}")
        if queue in self._handlers:
            raise ValueError(f"queue {queue!r} already has a handler")
        if not callable(fn):
            raise ValueError(f"the handler of {queue!r} is not callable: {fn!r}")
        if timeout_ms is not None and (type(timeout_ms) is not int or timeout_ms <= 0):
            raise ValueError(f"timeout_ms must be a positive integer, got {timeout_ms!r}")
        self._handlers[queue] = HandlerSpec(fn, is_async_handler(fn), timeout_ms)

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues that have a handler, in registration order."""
        return tuple(self._handlers)

    @property
    def running(self) -> int:
        """How many jobs are running now (their handler has not finished)."""
        return len(self._runs) - len(self._settling) - len(self._held)

    @property
    def held(self) -> int:
        """How many prefetched jobs wait for a slot (claimed, leased to this worker, their
        handler not started)."""
        return len(self._held)

    @property
    def settling(self) -> int:
        """How many jobs have finished running and wait for their ack or nack to be
        answered (their slot is already free; they are still leased to this worker)."""
        return len(self._settling)

    # -- running --------------------------------------------------------------------------

    def stop(self, *, now: bool = False) -> None:
        """Ask a running worker to stop (see the module docstring); ``now`` skips the grace.
        Call it on the worker's event loop (signal handlers added with
        ``loop.add_signal_handler`` are)."""
        if self._stopping is None:
            self._stop_early = True
            return
        self._stopping.set()
        self._wake_claims()
        if now and self._now is not None:
            self._now.set()

    def run_forever(self, queues: Sequence[str] | None = None) -> None:
        """Blocking: ``self.run(queues, handle_signals=True)`` on a new event loop, uvloop's
        where it is installed (``raftq.runloop``)."""
        runloop.run(self.run(queues, handle_signals=True))

    async def run(
        self, queues: Sequence[str] | None = None, *, handle_signals: bool = False
    ) -> None:
        """Claim and run jobs until ``stop()``; return once every job is settled.

        Cancelling the task that runs it stops the worker as ``stop()`` does (the grace
        period included), then the cancellation propagates.

        Args:
            queues: serve only these of the registered queues (default: all of them).
            handle_signals: the first SIGINT/SIGTERM stops gracefully, a second one skips the
                grace (main thread only).

        Raises:
            ValueError: no handler, or ``queues`` names a queue without one.
            Rejected, AuthError: the cluster refused the worker's claims (bad queue name,
                credentials...): the worker stopped (gracefully) because of it.
            RuntimeError: the worker is already running.
        """
        names = self._select(queues)
        if self._stopping is not None:
            raise RuntimeError("this worker is already running")
        if self._stop_early:
            self._stop_early = False
            return
        self._stopping = asyncio.Event()
        self._now = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._fatal = None
        try:
            with _signals(self, handle_signals):
                await self._run(names)
        finally:
            self._stopping = self._now = self._slot_freed = None
        if self._fatal is not None:
            raise self._fatal

    def _select(self, queues: Sequence[str] | None) -> tuple[str, ...]:
        if not self._handlers:
            raise ValueError("the worker has no handler: add one with @worker.handler(queue)")
        if queues is None:
            return self.queues
        names = tuple(dict.fromkeys(queues))
        unknown = [q for q in names if q not in self._handlers]
        if unknown or not names:
            known = ", ".join(self._handlers)
            raise ValueError(f"no handler for queue(s) {', '.join(unknown)} (handled: {known})")
        return names

    async def _run(self, names: tuple[str, ...]) -> None:
        opts = self.options
        async with contextlib.AsyncExitStack() as stack:
            source = self.client
            if source is None:
                if self.nodes is None:
                    raise ValueError("the worker has neither nodes nor a client")
                own = Client(
                    self.nodes,
                    timeout_ms=self._request_timeout_ms,
                    retry_ms=self._retry_ms,
                    token=self._token,
                    ssl=self._ssl,
                )
                stack.push_async_callback(own.close)
                source = own
            name = opts.name or default_name()
            if self.stream and isinstance(source, Client):
                streamed = await _open_stream(source, names, name, opts.lease_ms)
                if streamed is not None:
                    stack.push_async_callback(streamed.close)  # before the client's close
                    source = streamed
            executor = DaemonThreadPool(opts.concurrency, thread_name_prefix="raftq-worker")
            stack.callback(executor.shutdown, wait=False, cancel_futures=True)
            ctx = RunContext(
                source=source,
                worker=name,
                lease_ms=opts.lease_ms,
                heartbeat_ms=opts.heartbeat_period_ms,
                retry_in_ms=opts.retry_in_ms,
                job_timeout_ms=opts.job_timeout_ms,
                executor=executor,
                give_up=asyncio.Event(),
                acks=AckWaves(source, max_wait_ms=opts.heartbeat_period_ms),
            )
            outcomes.info(
                "worker %s: serving %s with concurrency %d (lease %d ms)",
                ctx.worker,
                ", ".join(names),
                opts.concurrency,
                opts.lease_ms,
            )
            claims = asyncio.create_task(self._claim_loop(ctx, names), name="raftq-claims")
            stopping = self._stopping
            assert stopping is not None
            try:
                await stopping.wait()
            finally:
                stopping.set()  # also when the task running us was cancelled: stop claiming
                await self._shutdown(ctx, claims)
            outcomes.info("worker %s: stopped", ctx.worker)

    async def _shutdown(self, ctx: RunContext, claims: asyncio.Task[None]) -> None:
        assert self._now is not None
        loop = asyncio.get_running_loop()
        grace_s = self.options.grace_ms / 1000
        stop_claiming = getattr(ctx.source, "stop_claiming", None)  # a ``StreamSource``
        if stop_claiming is not None:  # nothing more leased ahead for this worker
            await stop_claiming()
        for run in list(self._held):  # never started: handed back at once
            run.interrupt()
        if self._runs or not claims.done():
            outcomes.info(
                "worker %s: stopping; %d job(s) running, %d ack(s)/nack(s) on their way, "
                "up to %d ms to finish",
                ctx.worker,
                self.running,
                self.settling,
                self.options.grace_ms,
            )
        deadline = loop.time() + grace_s
        now = asyncio.ensure_future(self._now.wait())
        try:
            while not now.done():
                waiting = {t for t in (claims, *self._runs) if not t.done()}
                remaining = deadline - loop.time()
                if not waiting or remaining <= 0:
                    break
                await asyncio.wait(
                    {*waiting, now}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            now.cancel()
        if not claims.done():  # only when wait_ms exceeds the grace, or on stop(now=True)
            claims.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claims
        for task, run in self._runs.items():
            if not task.done():
                run.interrupt()
        tasks = set(self._runs)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_SETTLE_TIMEOUT_S)
            if pending:
                ctx.give_up.set()
                await asyncio.wait(pending)

    async def _claim_loop(self, ctx: RunContext, names: tuple[str, ...]) -> None:
        stopping, wake = self._stopping, self._slot_freed
        assert stopping is not None and wake is not None
        opts = self.options
        rotation, failures = 0, 0
        claims: set[asyncio.Task[bool]] = set()  # in flight; each answers "came back full"
        backlog = False  # the last claim answered brought all it asked for
        try:
            while not stopping.is_set():
                wake.clear()  # set by a slot freed, a claim answered, or stop
                for task in [t for t in claims if t.done()]:
                    claims.discard(task)
                    try:
                        backlog = task.result()
                    except (ClusterError, TransportError) as e:
                        backlog = False
                        failures += 1
                        delay = min(_CLAIM_BACKOFF_CAP_S, 0.1 * 2 ** min(failures, 10))
                        logger.warning("claim failed (%s); retrying in %.1f s", e, delay)
                        await _first(stopping.wait(), asyncio.sleep(delay))
                    else:
                        failures = 0
                room = self._room()
                # One claim at a time (the long-poll), more only while the queues have a
                # backlog: a claim in flight may take everything that is ready.
                if room > 0 and (not claims or backlog) and not stopping.is_set():
                    order = names[rotation:] + names[:rotation]
                    rotation = (rotation + 1) % len(names)
                    n = min(room, opts.batch or room)
                    self._asked += n
                    task = asyncio.create_task(self._claim(ctx, order, n))
                    task.add_done_callback(functools.partial(self._claim_answered, n))
                    claims.add(task)
                    continue
                await wake.wait()
        except (Rejected, AuthError) as e:
            outcomes.error("worker %s: the cluster refused its claims: %s", ctx.worker, e)
            self._fail(e)
        except Exception as e:
            outcomes.exception("worker %s: claim loop crashed", ctx.worker)
            self._fail(e)
        finally:
            # Stopping: claims in flight end within wait_ms, and the jobs they bring are
            # handed back at once (``_start``). Cancelled (past the grace): cancel them too.
            if claims:
                try:
                    await asyncio.wait(claims)
                finally:
                    for task in claims:
                        task.cancel()
                        if task.done() and not task.cancelled():
                            task.exception()  # retrieved: its failure no longer matters

    async def _claim(self, ctx: RunContext, order: tuple[str, ...], n: int) -> bool:
        """One claim of up to ``n`` jobs; starts (or holds) what it brought. True if it
        brought ``n``: the queues may have more."""
        opts = self.options
        jobs = await ctx.source.claim(
            order[0] if len(order) == 1 else order,
            worker=ctx.worker,
            max=n,
            lease_ms=opts.lease_ms,
            wait_ms=opts.wait_ms,
        )
        for claimed in jobs:
            self._start(ctx, claimed)
        return len(jobs) >= n

    def _claim_answered(self, n: int, _: asyncio.Task[bool]) -> None:
        self._asked -= n
        self._wake_claims()

    def _room(self) -> int:
        """Jobs the worker may ask for now: free slots plus ``prefetch``, minus the jobs held
        and the jobs asked for by claims in flight; and never more than keeps the jobs leased
        to it (held, running or settling) within ``2 * (concurrency + prefetch)``."""
        c, p = self.options.concurrency, self.prefetch
        waiting_or_running = len(self._runs) - len(self._settling)
        return min(
            c + p - waiting_or_running - self._asked,
            _SETTLING_FACTOR * (c + p) - len(self._runs) - self._asked,
        )

    @property
    def prefetch(self) -> int:
        """How many jobs the worker leases ahead of its free slots now: ``options.prefetch``,
        or with ``"auto"`` what its slots finish in ``AUTO_HOLD_MS`` at the handlers' average
        run time (at most ``concurrency``; 0 before a first job has run)."""
        fixed, c = self.options.prefetch, self.options.concurrency
        if fixed != "auto":
            return fixed
        if self._run_s is None:
            return 0
        return min(c, math.floor(c * AUTO_HOLD_MS / 1000 / max(self._run_s, 1e-6)))

    def _fail(self, error: BaseException) -> None:
        self._fatal = error
        if self._stopping is not None:
            self._stopping.set()
            self._wake_claims()

    def _start(self, ctx: RunContext, claimed: ClaimedJob) -> None:
        spec = self._handlers.get(claimed.queue)
        if spec is None:  # never: we claim only queues we handle
            spec = HandlerSpec(_no_handler, False, None)
        stopping = self._stopping is None or self._stopping.is_set()
        held = not stopping and self.running >= self.options.concurrency
        run = JobRun(ctx, claimed, spec, self._settle_started, held=held)
        if stopping:
            run.interrupt()  # claimed while stopping: handed back at once, never started
        elif held:
            self._held[run] = None
        task = asyncio.create_task(run.run(), name=f"raftq-run-{claimed.id}")
        self._runs[task] = run
        task.add_done_callback(self._finished)

    def _wake_claims(self) -> None:
        """A slot was freed, or the worker stops: the claim loop looks again."""
        if self._slot_freed is not None:
            self._slot_freed.set()

    def _settle_started(self, run: JobRun) -> None:
        """The handler of ``run`` is over (or a held run will never start): its slot is free
        while its ack or nack is sent."""
        self._held.pop(run, None)
        self._settling.add(run)
        if run.ran_s is not None:  # an average over the last ~20 jobs
            avg = self._run_s
            self._run_s = run.ran_s if avg is None else avg + (run.ran_s - avg) / _RUN_AVG_JOBS
        self._release_held()
        self._wake_claims()

    def _finished(self, task: asyncio.Task[None]) -> None:
        run = self._runs.pop(task, None)
        if run is not None:
            self._settling.discard(run)
            self._held.pop(run, None)
        self._release_held()
        self._wake_claims()
        if not task.cancelled() and task.exception() is not None:
            logger.error("job run crashed", exc_info=task.exception())

    def _release_held(self) -> None:
        """Start held jobs, oldest claim first, in the free slots."""
        while self._held and self.running < self.options.concurrency:
            run = next(iter(self._held))
            del self._held[run]
            run.release()


async def _open_stream(
    client: Client, names: tuple[str, ...], worker: str, lease_ms: int
) -> StreamSource | None:
    """The worker stream of ``client``, or ``None`` (HTTP claims) when the node does not
    serve it or it cannot be opened."""
    try:
        return await StreamSource(client, names, worker=worker, lease_ms=lease_ms).open()
    except StreamUnsupportedError as e:
        outcomes.info("worker %s: %s; claiming over HTTP", worker, e)
    except (ClusterError, TransportError) as e:
        outcomes.warning(
            "worker %s: the stream cannot be opened (%s); claiming over HTTP", worker, e
        )
    return None


def _no_handler(job: Any) -> None:
    raise RaftqError(f"no handler for queue {job.queue!r} in this worker")


async def _first(*aws: Any) -> None:
    """Wait until the first of ``aws`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


@contextlib.contextmanager
def _signals(worker: Worker, enabled: bool) -> Iterator[None]:
    """SIGINT/SIGTERM: the first stops gracefully, the next ones skip the grace."""
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal received
        received += 1
        if received == 1:
            outcomes.info(
                "%s received: stopping (grace %d ms; send it again to stop now)",
                sig.name,
                worker.options.grace_ms,
            )
            worker.stop()
        else:
            outcomes.info("%s received again: stopping now", sig.name)
            worker.stop(now=True)

    sigs = (signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)
