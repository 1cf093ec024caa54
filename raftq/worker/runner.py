"""One delivery of one job: run the handler, heartbeat meanwhile, then ack or nack.

Outcomes (one log line each on the ``raftq.worker`` logger):

==================  ====================================================================
handler returns     ack with the return value as the result
handler raises      nack with ``describe_error(exc)`` (retry after ``retry_in_ms`` or backoff)
``Retry(delay_ms)``  nack with ``retry_in_ms=delay_ms`` and the Retry's message
timeout             the handler is cancelled; nack with a timeout error
heartbeat refused   (409/404: another worker holds the job now) the handler is cancelled;
                    no ack, no nack: the job is not ours any more
cancel requested    (the job was cancelled: a heartbeat said ``cancel_requested``) the
                    handler is cancelled (a sync one sees ``job.cancel_requested``); no
                    ack, no nack: the job is cancelled already
worker stopping     past the grace period the handler is cancelled; nack with
                    ``retry_in_ms=0`` so the job is redelivered at once
==================  ====================================================================

A run may be created ``held`` (a job the worker claimed ahead of its free slots): it waits for
``release()`` before the handler starts, heartbeating the lease meanwhile; interrupted while
held, it is handed back without being started (``source.hand_back``: queued again with the
attempt not counted; nacked for immediate redelivery on a cluster before log version 4).

The job's slot in the worker is released once the handler has finished (``on_settling``), while
the ack or nack is still on its way: the worker claims the next job meanwhile. The job stays
leased to this delivery until that ack or nack is answered, and the run (its task) lasts until
then, so a worker that stops still waits for it.

Ack and nack survive node failures and leader changes: the client retries each call with the
same request id (applied at most once); past the client's budget the worker keeps trying with
a new call until it gets an answer or the worker is stopped for good. If such a later call is
refused (409), the job is read back through the leader: if it succeeded with this delivery's
token, the earlier ack was applied and the outcome is a success.

A sync handler runs in the worker's thread pool and cannot be interrupted: after a timeout or a
lost lease its thread runs to completion and its result is dropped.

What the handler reports (``job.report_progress``, ``job.save_checkpoint``) rides on the
heartbeats (no extra write), the latest value of each; a checkpoint still pending when the
job is about to be nacked goes out with one more heartbeat first, so the next attempt gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from raftq import otel
from raftq.client.types import ClaimedJob
from raftq.errors import AuthError, ClusterError, Rejected, Retry, TransportError
from raftq.worker.acks import AckWaves
from raftq.worker.job import JOB_LOGGER, UNSET, Job, JobLogger, describe_error
from raftq.worker.source import JobSource, hand_back

__all__ = [
    "OUTCOME_LOGGER",
    "Handler",
    "HandlerSpec",
    "JobRun",
    "RunContext",
    "is_async_handler",
]

OUTCOME_LOGGER = "raftq.worker"
outcomes = logging.getLogger(OUTCOME_LOGGER)
_job_logger = logging.getLogger(JOB_LOGGER)
logger = logging.getLogger(__name__)

Handler = Callable[[Job], Any]
"""A job handler: ``def f(job)`` (run in a thread) or ``async def f(job)``."""

_CANCEL_WAIT_S = 1.0  # how long a cancelled async handler gets to unwind before we settle
_SETTLE_BACKOFF_CAP_S = 2.0
_STOPPED = "WorkerStopped: the worker stopped before the job began"  # a hand-back's nack
# Tasks of handlers that outlived their job (a handler that ignores cancellation): kept
# referenced so they are not garbage-collected while running.
_orphans: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler: the function, whether it is a coroutine function, its timeout."""

    fn: Handler
    is_async: bool
    timeout_ms: int | None


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every job run of one worker shares."""

    source: JobSource
    worker: str
    lease_ms: int  # claimed with, and extended by, this lease length
    heartbeat_ms: int  # heartbeat period (about a third of the lease)
    retry_in_ms: int | None  # retry delay after a failure (None: the cluster's backoff)
    job_timeout_ms: int | None  # for handlers registered without their own timeout
    executor: Executor  # runs sync handlers (a DaemonThreadPool)
    give_up: asyncio.Event  # set when the worker stops for good: stop retrying acks/nacks
    acks: AckWaves  # acks go through it (in waves), the rest straight to ``source``


class JobRun:
    """Runs one claimed job to its outcome (``await run()``); ``interrupt()`` on shutdown.

    ``on_settling(run)`` is called once, when the handler is over (or was never started) and
    the ack or nack (if any) is about to be sent; ``run()`` returns once that is answered.
    With ``held``, the handler starts only after ``release()``.
    """

    def __init__(
        self,
        ctx: RunContext,
        claimed: ClaimedJob,
        spec: HandlerSpec,
        on_settling: Callable[[JobRun], None] | None = None,
        *,
        held: bool = False,
    ) -> None:
        self._ctx = ctx
        self._spec = spec
        self._on_settling = on_settling
        self.ran_s: float | None = None  # how long the handler ran (once it has)
        self._timeout_ms = spec.timeout_ms if spec.timeout_ms is not None else ctx.job_timeout_ms
        extra = {"job_id": claimed.id, "queue": claimed.queue, "attempt": claimed.attempt}
        self.job = Job(
            id=claimed.id,
            queue=claimed.queue,
            payload=claimed.payload,
            attempt=claimed.attempt,
            token=claimed.token,
            priority=claimed.priority,
            lease_expires_ms=claimed.lease_expires_ms,
            worker=ctx.worker,
            logger=JobLogger(_job_logger, extra),
            parents=claimed.parents,
            parent_states=claimed.parent_states,
            checkpoint=claimed.checkpoint,
        )
        self._label = f"job {claimed.id} {claimed.queue}#{claimed.attempt}"
        self._interrupted = False
        self._lease_lost: str | None = None  # why the lease was lost, once it was
        self._cancelled = False  # a heartbeat answered cancel_requested
        self._reports_ok = True  # False once the cluster refused progress (log version < 3)
        self._handler: asyncio.Task[Any] | None = None
        # run() waits on one future, resolved by the first of: the handler ends, the timeout,
        # interrupt() or a lost lease (those two set _stop_waiting: settle without waiting).
        # Cheaper per job than a task per condition: the worker's claim+ack rate is bounded
        # by the event loop's work per job.
        self._wake: asyncio.Future[None] | None = None
        self._stop_waiting = False
        self._beats: asyncio.Task[None] | None = None
        self.held = held  # waiting for a slot: the handler has not started

    def release(self) -> None:
        """A slot is free for this held run: its handler may start."""
        if self.held:
            self.held = False
            self._wake_up()

    def interrupt(self) -> None:
        """Shutdown: cancel the handler; the job will be nacked for immediate redelivery."""
        self._interrupted = True
        self._stop()

    def _stop(self) -> None:
        self._stop_waiting = True
        self._wake_up()
        if self._handler is not None:
            self._handler.cancel()

    def _wake_up(self, _: object = None) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> None:
        """Run the handler and settle the job; never raises (except on cancellation)."""
        loop = asyncio.get_running_loop()
        # The heartbeat task starts when the first heartbeat is due: most jobs end before.
        # From here, so that a held job's lease is kept too.
        beats_due = loop.call_later(self._ctx.heartbeat_ms / 1000, self._start_heartbeats)
        if self.held and not self._interrupted:
            self._wake = loop.create_future()
            try:
                await self._wake  # release(), interrupt() or a lost lease
            except BaseException:
                beats_due.cancel()
                await self._stop_heartbeats()
                raise
        if self._cancelled:  # cancelled while held: nothing ran, nothing to send
            beats_due.cancel()
            await self._stop_heartbeats()
            self._settling()
            outcomes.warning("%s cancelled before it started: not run", self._label)
            return
        if self._lease_lost is not None:  # lost while held: nothing ran, nothing to send
            beats_due.cancel()
            await self._stop_heartbeats()
            self._settling()
            outcomes.warning(
                "%s lease lost before it started (%s); another worker owns the job now",
                self._label,
                self._lease_lost,
            )
            return
        if self._interrupted:  # stopped before it began: hand it back at once
            beats_due.cancel()
            await self._stop_heartbeats()
            self._settling()
            await self._hand_back()
            return
        started = loop.time()
        handler = asyncio.create_task(self._call(), name=f"raftq-{self._label}")
        self._handler = handler
        self._wake = wake = loop.create_future()
        handler.add_done_callback(self._wake_up)
        timeout_s = _seconds(self._timeout_ms)
        timer = None if timeout_s is None else loop.call_later(timeout_s, self._wake_up)
        timed_out = False
        try:
            await wake
            if not handler.done():
                # Timed out, or interrupted / lease lost (the handler was cancelled then): give
                # it a moment to unwind; one that ignores cancellation is left behind.
                timed_out = not self._stop_waiting
                handler.cancel()
                await asyncio.wait({handler}, timeout=_CANCEL_WAIT_S)
        finally:
            if timer is not None:
                timer.cancel()
            beats_due.cancel()
            await self._stop_heartbeats()
            if not handler.done():
                handler.cancel()
                _orphans.add(handler)
                handler.add_done_callback(_forget)
        self.ran_s = loop.time() - started
        elapsed_ms = int(self.ran_s * 1000)
        self._settling()
        await self._settle(handler, timed_out, elapsed_ms)

    async def _stop_heartbeats(self) -> None:
        beats, self._beats = self._beats, None
        if beats is not None:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats

    def _settling(self) -> None:
        if self._on_settling is not None:
            callback, self._on_settling = self._on_settling, None
            callback(self)

    async def _call(self) -> Any:
        job = self.job
        # With OpenTelemetry, a CONSUMER span around the handler (raftq.otel); a sync one
        # runs in it too (the thread gets a copy of this context).
        with otel.process_span(job.queue, job.id, job.attempt, job.payload):
            if self._spec.is_async:
                return await self._spec.fn(job)
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()
            result = await loop.run_in_executor(self._ctx.executor, ctx.run, self._spec.fn, job)
            if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                result = await result
            return result

    def _start_heartbeats(self) -> None:
        if self._beats is None and self._wake is not None and not self._wake.done():
            self._beats = asyncio.create_task(self._heartbeats(), name=f"raftq-hb-{self.job.id}")

    async def _heartbeats(self) -> None:
        """Heartbeat now, then every period (started one period after the claim)."""
        period_s = self._ctx.heartbeat_ms / 1000
        while await self._beat():
            await asyncio.sleep(period_s)

    async def _beat(self, plain: bool = False) -> bool:
        """One heartbeat, with what the handler reported since the last one (none when
        ``plain``); False once the run must stop (lease lost, or job cancelled)."""
        job, reports = self.job, self.job.reports
        progress, checkpoint = (UNSET, UNSET) if plain or not self._reports_ok else reports.take()
        pairs = (("progress", progress), ("checkpoint", checkpoint))
        extra = {k: v for k, v in pairs if v is not UNSET and v is not None}
        try:
            answer = await self._ctx.source.heartbeat(
                job.id, job.token, lease_ms=self._ctx.lease_ms, **extra
            )
        except Rejected as e:
            if extra and (e.status in (400, 413) or e.reason == "version_not_enabled"):
                # The values were refused, not the lease: drop them, keep the lease.
                logger.warning("%s: progress/checkpoint refused (%s): %s", self._label, e.reason, e)
                self._reports_ok = e.reason != "version_not_enabled"
                return await self._beat(plain=True)
            if e.status in (404, 409):
                self._lease_lost = e.reason
                self._stop()
                return False
            logger.warning("%s: heartbeat refused (%s): %s", self._label, e.reason, e)
        except (ClusterError, TransportError, AuthError) as e:
            reports.restore(progress, checkpoint)  # sent with the next one
            logger.warning("%s: heartbeat failed, will retry: %s", self._label, e)
        else:
            if answer.cancel_requested:
                reports.cancel_requested = True  # what a sync handler polls
                self._cancelled = True
                self._stop()
                return False
        return True

    # -- outcome --------------------------------------------------------------------------

    async def _settle(self, handler: asyncio.Task[Any], timed_out: bool, elapsed_ms: int) -> None:
        if await self._taken_away(handler, elapsed_ms):
            return
        label, retry_in_ms = self._label, self._ctx.retry_in_ms
        if timed_out:
            error = f"JobTimeout: the handler ran longer than {self._timeout_ms} ms"
            answer = await self._nack(error, retry_in_ms)
            if answer is not None:
                outcomes.warning("%s timed out after %d ms; %s", label, elapsed_ms, answer)
            return
        if not handler.done() or handler.cancelled():  # not done: it ignored cancellation
            if self._interrupted:
                error = "WorkerStopped: the worker stopped before the job finished"
                answer = await self._nack(error, 0)
                if answer is not None:
                    outcomes.warning(
                        "%s interrupted by shutdown after %d ms; %s", label, elapsed_ms, answer
                    )
                return
            error = "CancelledError: the handler was cancelled"
            answer = await self._nack(error, retry_in_ms)
            if answer is not None:
                outcomes.warning("%s cancelled after %d ms; %s", label, elapsed_ms, answer)
            return
        exc = handler.exception()
        if exc is None:
            await self._ack(handler.result(), elapsed_ms)
        elif isinstance(exc, Retry):
            answer = await self._nack(exc.message, exc.delay_ms)
            if answer is not None:
                when = "with backoff" if exc.delay_ms is None else f"in {exc.delay_ms} ms"
                outcomes.info("%s asked to retry %s (%s); %s", label, when, exc.message, answer)
        else:
            answer = await self._nack(describe_error(exc), retry_in_ms)
            if answer is not None:
                outcomes.warning(
                    "%s failed after %d ms: %s: %s; %s",
                    label,
                    elapsed_ms,
                    type(exc).__name__,
                    _first_line(exc),
                    answer,
                )

    async def _taken_away(self, handler: asyncio.Task[Any], elapsed_ms: int) -> bool:
        """Whether the job was cancelled or its lease lost (logged here: there is nothing to
        send). Before that is decided, a pending checkpoint goes out with one more heartbeat
        unless the handler succeeded: the job is about to be nacked, and the next attempt
        needs it."""
        succeeded = handler.done() and not handler.cancelled() and handler.exception() is None
        pending = self.job.reports.checkpoint_pending
        lost = self._cancelled or self._lease_lost is not None
        if pending and not succeeded and not lost and self._reports_ok:
            await self._beat()
        if self._cancelled:
            outcomes.warning(
                "%s cancelled while running: handler stopped after %d ms, not acked nor nacked",
                self._label,
                elapsed_ms,
            )
            return True
        if self._lease_lost is not None:
            outcomes.warning(
                "%s lease lost after %d ms (%s): handler cancelled, not acked; another worker "
                "owns the job now",
                self._label,
                elapsed_ms,
                self._lease_lost,
            )
            return True
        return False

    async def _ack(self, result: Any, elapsed_ms: int) -> None:
        acks, job, label = self._ctx.acks, self.job, self._label
        uncertain = False
        attempt = 0
        while True:
            try:
                await acks.ack(job.id, job.token, result)
                outcomes.info("%s succeeded in %d ms", label, elapsed_ms)
                return
            except Rejected as e:
                if e.status in (404, 409):
                    if uncertain and await self._ours_in(("succeeded",)):
                        outcomes.info("%s succeeded in %d ms", label, elapsed_ms)
                        return
                    outcomes.warning(
                        "%s finished in %d ms but its ack was refused (%s, %d): another worker "
                        "owns the job now; result dropped",
                        label,
                        elapsed_ms,
                        e.reason,
                        e.status,
                    )
                    return
                bad = f"{e.reason}: {e}"  # e.g. the result is too large or not storable
            except (TypeError, ValueError, OverflowError) as e:  # the result does not encode
                bad = f"{type(e).__name__}: {e}"
            except (ClusterError, TransportError, AuthError) as e:
                uncertain = True
                if not await self._backoff(attempt, "ack", e):
                    return
                attempt += 1
                continue
            answer = await self._nack(f"ResultRefused: the handler's result was refused ({bad})")
            if answer is not None:
                outcomes.warning(
                    "%s returned a result the cluster cannot store (%s); %s", label, bad, answer
                )
            return

    async def _nack(self, error: str, retry_in_ms: int | None = None) -> str | None:
        """Nack; the text for the log line, or None when there is nothing more to say
        (already logged: refused, or given up)."""
        src, job = self._ctx.source, self.job
        return await self._send(
            "nack", lambda: src.nack(job.id, job.token, error=error, retry_in_ms=retry_in_ms)
        )

    async def _hand_back(self) -> None:
        """The worker stopped before the job began: give it back (``hand_back``)."""
        src, job = self._ctx.source, self.job
        done = await self._send("hand back", lambda: hand_back(src, job.id, job.token, _STOPPED))
        if done is not None:
            outcomes.info("%s handed back unstarted: %s", self._label, done)

    async def _send(self, what: str, call: Callable[[], Awaitable[dict[str, Any]]]) -> str | None:
        """``call`` (a nack or a hand-back), again after a cluster error; the text for the
        log line, or None when there is nothing more to say (already logged: refused, or
        given up)."""
        uncertain = False
        attempt = 0
        while True:
            try:
                return _describe_nack(await call())
            except Rejected as e:
                if uncertain and e.status in (404, 409):
                    return f"{what} already applied (the job is no longer leased to this worker)"
                outcomes.warning(
                    "%s could not %s (%s, %d): %s", self._label, what, e.reason, e.status, e
                )
                return None
            except (ClusterError, TransportError, AuthError) as e:
                uncertain = True
                if not await self._backoff(attempt, what, e):
                    return None
                attempt += 1

    async def _backoff(self, attempt: int, what: str, error: Exception) -> bool:
        """Wait before trying ``what`` again; False once the worker stopped for good."""
        give_up = self._ctx.give_up
        if not give_up.is_set():
            delay = min(_SETTLE_BACKOFF_CAP_S, 0.1 * 2**attempt)
            logger.warning("%s: %s failed, retrying in %.1f s: %s", self._label, what, delay, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(give_up.wait(), delay)
        if give_up.is_set():
            outcomes.error(
                "%s: could not %s before the worker stopped (%s); outcome unknown: if it was "
                "not applied, the lease expires and the job is redelivered",
                self._label,
                what,
                error,
            )
            return False
        return True

    async def _ours_in(self, states: tuple[str, ...]) -> bool:
        """True if the job is in one of ``states`` with this delivery's token (read through
        the leader): an earlier call whose answer was lost did apply."""
        try:
            info = await self._ctx.source.get_job(self.job.id, linearizable=True)
        except (Rejected, ClusterError, TransportError, AuthError):
            return False
        return info.get("state") in states and info.get("token") == self.job.token


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:300] if text else ""


def _describe_nack(answer: dict[str, Any]) -> str:
    state = answer.get("state")
    if state == "dead":
        return "attempts used up: moved to the dead letters"
    if "run_at_ms" not in answer:  # released: queued again, the attempt not counted
        return "queued again, this attempt not counted"
    run_at = answer.get("run_at_ms")
    return f"will be retried ({state}, run_at_ms={run_at})"


def _forget(task: asyncio.Task[Any]) -> None:
    _orphans.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning


def is_async_handler(fn: Callable[..., Any]) -> bool:
    """True for coroutine functions and objects whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we want the method itself
    return call is not None and inspect.iscoroutinefunction(call)
