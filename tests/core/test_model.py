"""The machine against a naive reference model, driven by hypothesis.

The model keeps every job in one plain dict and decides everything by scanning it: the state
of a job is a function of cluster time (a delayed job is ready once its time came, a lease
ends at its expiry, whether or not anything "advanced" the queue). The machine is driven only
through ``encode_entry`` / ``apply_entry``. After every step the invariants are checked and
the whole state is compared with the model.

Where the contract leaves the machine a choice, the model accepts both answers:
- collection of finished jobs is garbage collection: a succeeded or cancelled job past its
  retention may still be present (and then answers ``finished``) or gone (``not_found``);
- the retry delay of a nack without ``retry_in_ms`` is any value in [3/4, 1] of the nominal
  exponential backoff; the model then adopts the machine's value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from raftq.core import (
    Ack,
    Acked,
    Cancel,
    Cancelled,
    Claim,
    Claimed,
    Command,
    Configure,
    Configured,
    EnableVersion,
    Enqueue,
    Enqueued,
    Extended,
    Heartbeat,
    JobState,
    Lease,
    Machine,
    Nack,
    Nacked,
    NewJob,
    Pause,
    Paused,
    Purge,
    Purged,
    Reason,
    Refusal,
    Release,
    Released,
    Requeued,
    RequeueDead,
    Result,
    Resume,
    Resumed,
    Tick,
    Ticked,
    VersionEnabled,
    encode_entry,
    snapshot_bytes,
)
from raftq.core.job import delayed_key, lease_key, ready_key

QUEUES = ["a", "b", "c"]
KEYS = ["k1", "k2", "k3"]
REQUEST_WINDOW_MS = 120_000
DEFAULT_WINDOW_MS = 600_000
DEFAULT_RETENTION_MS = 3_600_000
UNFINISHED = ("queued", "delayed", "leased")
FINISHED = ("succeeded", "dead", "cancelled")


@dataclass
class MJob:
    id: int
    queue: str
    payload: bytes
    priority: int
    state: str
    max_attempts: int
    lease_ms: int
    ready_at: int
    created: int
    key: str | None
    attempts: int = 0
    token: int = 0
    lease_expires: int = 0
    lease_len: int = 0  # length of the current lease as claimed
    worker: str | None = None
    result: bytes | None = None
    error: str | None = None
    finished: int = 0
    expired: bool = False  # the lease of the current token ended by expiry
    cancel_requested: bool = False  # cancelled while leased, with log version 3 enabled
    collectable: bool = False  # past retention: the machine may have collected it


@dataclass
class MQueue:
    name: str
    paused: bool = False
    window: int = DEFAULT_WINDOW_MS
    retention: int = DEFAULT_RETENTION_MS
    keys: dict[str, int] = field(default_factory=dict)


class Model:
    """Obviously right, O(n) everywhere."""

    def __init__(self) -> None:
        self.clock = 0
        self.enabled = 1  # the enabled log version
        self.next_id = 1
        self.last_token = 0
        self.jobs: dict[int, MJob] = {}  # purged jobs are deleted, collected ones kept
        self.queues: dict[str, MQueue] = {}
        # request id -> (expiry, the command without now_ms and request_id, first answer)
        self.requests: dict[str, tuple[int, Command, Result]] = {}

    # -- time ------------------------------------------------------------------------------

    def settle(self) -> None:
        """Bring every job to cluster time."""
        expired = [
            j for j in self.jobs.values() if j.state == "leased" and j.lease_expires <= self.clock
        ]
        for j in sorted(expired, key=lambda j: (j.lease_expires, j.token, j.id)):
            j.expired = True
            if j.attempts >= j.max_attempts:
                j.state, j.finished = "dead", j.lease_expires
                j.error = f"lease expired after attempt {j.attempts} (worker {j.worker})"
            else:
                j.state, j.ready_at = "queued", j.lease_expires
        for j in self.jobs.values():
            if j.state == "delayed" and j.ready_at <= self.clock:
                j.state = "queued"
            retention = self.queues[j.queue].retention
            if j.state in ("succeeded", "cancelled") and j.finished + retention <= self.clock:
                j.collectable = True

    def live_key(self, q: MQueue, key: str) -> int | None:
        owner = q.keys.get(key)
        if owner is None or owner not in self.jobs:
            return None
        j = self.jobs[owner]
        if j.state in UNFINISHED or j.finished + q.window > self.clock:
            return owner
        return None

    def queue(self, name: str) -> MQueue:
        return self.queues.setdefault(name, MQueue(name))

    # -- lease lookups -----------------------------------------------------------------------

    def lease_refusal(self, job_id: int, token: int) -> set[Reason] | None:
        """``None`` when ``token`` is the live lease of the job, else the acceptable refusals."""
        j = self.jobs.get(job_id)
        if j is None:
            return {Reason.NOT_FOUND}
        if token != j.token:
            why = Reason.STALE_TOKEN
        elif j.state == "leased":
            return None
        elif j.expired:
            why = Reason.LEASE_EXPIRED
        elif j.state in FINISHED:
            why = Reason.FINISHED
        else:
            why = Reason.STALE_TOKEN
        return {why, Reason.NOT_FOUND} if j.collectable else {why}


def _new_job_valid(nj: NewJob) -> bool:
    return (
        0 <= nj.priority <= 9
        and not (nj.delay_ms is not None and nj.run_at_ms is not None)
        and (nj.max_attempts is None or nj.max_attempts >= 1)
    )


def nominal_backoff(attempts: int) -> int:
    return min(3_600_000, 1000 * 2 ** (attempts - 1))


class Expect:
    """What the model accepts as an answer: an exact result, a set of refusal reasons, or a
    check function (which may also adopt a value from the machine's answer)."""

    def __init__(
        self,
        exact: Result | None = None,
        reasons: set[Reason] | None = None,
        check: Any = None,
    ) -> None:
        self.exact, self.reasons, self.check = exact, reasons, check

    def verify(self, got: Result) -> None:
        if self.reasons is not None:
            assert isinstance(got, Refusal), f"expected one of {self.reasons}, got {got}"
            assert got.reason in self.reasons, f"expected one of {self.reasons}, got {got}"
        elif self.check is not None:
            self.check(got)
        elif isinstance(self.exact, Refusal):
            assert isinstance(got, Refusal), f"expected {self.exact}, got {got}"
            assert got.reason == self.exact.reason, f"expected {self.exact}, got {got}"
        else:
            assert got == self.exact, f"expected {self.exact}, got {got}"


def _rejected(reason: Reason) -> Expect:
    return Expect(reasons={reason})


def _refused(got: Result, reason: Reason) -> bool:
    return isinstance(got, Refusal) and got.reason is reason


# -- strategies ---------------------------------------------------------------------------

queues_st = st.sampled_from(QUEUES)
keys_st = st.one_of(st.none(), st.sampled_from(KEYS))
rid_st = st.one_of(st.none(), st.none(), st.sampled_from(["r1", "r2", "r3", "r4"]))


@st.composite
def new_jobs(draw: st.DrawFn, valid_only: bool = False) -> NewJob:
    timing = draw(st.sampled_from(["now", "now", "delay", "run_at"]))
    return NewJob(
        payload=draw(st.binary(max_size=4)),
        # now and then an invalid priority, which must reject the whole batch
        priority=draw(st.sampled_from(list(range(10)) * (40 if valid_only else 4) + [10])),
        delay_ms=draw(st.sampled_from([0, 1, 1000, 30_000])) if timing == "delay" else None,
        # an offset from the proposer's clock, made absolute by the rule
        run_at_ms=draw(st.integers(-5000, 40_000)) if timing == "run_at" else None,
        key=draw(keys_st),
        max_attempts=draw(st.sampled_from([None, 1, 2, 3])),
        lease_ms=draw(st.sampled_from([None, 1000, 5000])),
    )


class _Latest:
    """Stands in for ``st.data()`` in ``_pick_lease``: always the most recent lease."""

    def draw(self, strategy: Any) -> int:
        return 0


class QueueMachineTest(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = Machine()
        self.model = Model()
        self.now = 10**13  # the proposer's clock; may go backwards
        self.leases: list[tuple[int, int]] = []  # every (job id, token) handed out
        self.max_token_seen = 0
        self.tokens_of: dict[int, list[int]] = {}
        self.checked_leases = 0
        self.ready_before: list[tuple[str, int, int]] = []

    # -- driving ---------------------------------------------------------------------------

    def run(self, cmd: Command, expect_fn: Any) -> Result | None:
        """Apply ``cmd`` to the machine and to the model; compare the answers. Returns the
        answer, or ``None`` when it was a repeated request id answered from memory."""
        (got,) = self.m.apply_entry(encode_entry([cmd]))
        model = self.model
        model.clock = max(model.clock, cmd.now_ms)
        for rid, (expires, _, _) in list(model.requests.items()):
            if expires <= model.clock:
                del model.requests[rid]
        model.settle()
        rid = cmd.request_id
        asked = replace(cmd, now_ms=0, request_id=None)
        if rid is not None and rid in model.requests:
            _, first_asked, first = model.requests[rid]
            if asked != first_asked:
                assert isinstance(got, Refusal), "another command under a known id is refused"
                assert got.reason is Reason.REQUEST_ID_REUSED, got
            else:
                assert got == self.replayed(first), "a repeat must get the first answer"
            return None
        expect: Expect = expect_fn()
        expect.verify(got)
        model.settle()
        if rid is not None:
            model.requests[rid] = (model.clock + REQUEST_WINDOW_MS, asked, got)
        return got

    def replayed(self, first: Result) -> Result:
        """A repeated claim holds those of its leases that are still live, as they are now."""
        if not isinstance(first, Claimed):
            return first
        jobs = self.model.jobs
        live = [x for x in first.jobs if self.model.lease_refusal(x.id, x.token) is None]
        return Claimed(
            tuple(
                Lease(j.id, j.queue, j.payload, j.priority, j.attempts, j.token, j.lease_expires)
                for j in (jobs[x.id] for x in live)
            )
        )

    # -- time --------------------------------------------------------------------------------

    @rule(delta=st.one_of(st.integers(-3000, 3000), st.sampled_from([5000, 31_000, 700_000])))
    def advance(self, delta: int) -> None:
        self.now = max(0, self.now + delta)

    @rule(rid=rid_st)
    def tick(self, rid: str | None) -> None:
        self.run(Tick(now_ms=self.now, request_id=rid), lambda: Expect(Ticked(self.model.clock)))

    # -- enqueue -------------------------------------------------------------------------------

    @rule(
        q=st.sampled_from(QUEUES * 8 + ["bad name"]),
        jobs=st.lists(new_jobs(), min_size=1, max_size=3),
        rid=rid_st,
    )
    def enqueue(self, q: str, jobs: list[NewJob], rid: str | None) -> None:
        self._enqueue(q, jobs, rid)

    @rule(q=queues_st, jobs=st.lists(new_jobs(valid_only=True), min_size=1, max_size=4))
    def enqueue_valid(self, q: str, jobs: list[NewJob]) -> None:
        self._enqueue(q, jobs, None)

    def _enqueue(self, q: str, jobs: list[NewJob], rid: str | None) -> None:
        jobs = [
            nj if nj.run_at_ms is None else replace(nj, run_at_ms=max(0, self.now + nj.run_at_ms))
            for nj in jobs
        ]
        cmd = Enqueue(now_ms=self.now, request_id=rid, queue=q, jobs=tuple(jobs))
        self.run(cmd, lambda: self._expect_enqueue(cmd))

    def _expect_enqueue(self, cmd: Enqueue) -> Expect:
        model = self.model
        if cmd.queue not in QUEUES or not all(_new_job_valid(nj) for nj in cmd.jobs):
            return _rejected(Reason.INVALID)
        q = model.queue(cmd.queue)
        clock = model.clock
        ids, existing = [], []
        for nj in cmd.jobs:
            found = None if nj.key is None else model.live_key(q, nj.key)
            if found is not None:
                ids.append(found)
                existing.append(True)
                continue
            if nj.run_at_ms is not None:
                due = max(nj.run_at_ms, clock)
            else:
                due = clock + (nj.delay_ms or 0)
            j = MJob(
                id=model.next_id,
                queue=q.name,
                payload=nj.payload,
                priority=nj.priority,
                state="delayed" if due > clock else "queued",
                max_attempts=5 if nj.max_attempts is None else nj.max_attempts,
                lease_ms=30_000 if nj.lease_ms is None else nj.lease_ms,
                ready_at=due,
                created=clock,
                key=nj.key,
            )
            model.next_id += 1
            model.jobs[j.id] = j
            if nj.key is not None:
                q.keys[nj.key] = j.id
            ids.append(j.id)
            existing.append(False)
        return Expect(Enqueued(tuple(ids), tuple(existing)))

    # -- claim ---------------------------------------------------------------------------------

    @rule(
        qs=st.lists(st.sampled_from([*QUEUES, "unknown"]), min_size=1, max_size=3),
        mx=st.integers(1, 3),
        lease_ms=st.sampled_from([None, None, 1000, 4000]),
        rid=rid_st,
    )
    def claim(self, qs: list[str], mx: int, lease_ms: int | None, rid: str | None) -> None:
        self._claim(qs, mx, lease_ms, rid)

    @rule(q=queues_st, mx=st.integers(1, 2), lease_ms=st.sampled_from([None, 2000]))
    def claim_one_queue(self, q: str, mx: int, lease_ms: int | None) -> None:
        self._claim([q], mx, lease_ms, None)

    def _claim(self, qs: list[str], mx: int, lease_ms: int | None, rid: str | None) -> None:
        cmd = Claim(
            now_ms=self.now, request_id=rid, queues=tuple(qs), worker="w", max=mx, lease_ms=lease_ms
        )
        self.ready_before = []
        got = self.run(cmd, lambda: self._expect_claim(cmd))
        if isinstance(got, Claimed):
            claimed = {lease.id for lease in got.jobs}
            for lease in got.jobs:
                self.leases.append((lease.id, lease.token))
                # Strict priority, on the machine's answer: no job of the lease's queue that
                # was ready before the claim, and is still waiting, outranks it.
                for queue, priority, job_id in self.ready_before:
                    if queue == lease.queue and job_id not in claimed:
                        assert priority <= lease.priority, (lease, job_id, priority)

    def _expect_claim(self, cmd: Claim) -> Expect:
        model = self.model
        open_queues = [
            name for name in cmd.queues if name in model.queues and not model.queues[name].paused
        ]
        ready = [j for j in model.jobs.values() if j.state == "queued" and j.queue in open_queues]
        ready.sort(key=lambda j: (-j.priority, j.ready_at, j.id))
        self.ready_before = [(j.queue, j.priority, j.id) for j in ready]
        out = []
        for j in ready[: cmd.max]:
            model.last_token += 1
            j.state, j.attempts, j.token, j.worker = "leased", j.attempts + 1, model.last_token, "w"
            j.lease_len = j.lease_ms if cmd.lease_ms is None else cmd.lease_ms
            j.lease_expires = model.clock + j.lease_len
            j.expired = False
            out.append(
                Lease(j.id, j.queue, j.payload, j.priority, j.attempts, j.token, j.lease_expires)
            )
        return Expect(Claimed(tuple(out)))

    # -- lease holder's commands ---------------------------------------------------------

    def _pick_lease(self, data: st.DataObject) -> tuple[int, int]:
        """Mostly a recent lease (current or stale), sometimes an unknown job or token."""
        n = min(len(self.leases), 8)
        i = data.draw(st.integers(0, n))
        if i == n:
            pair: tuple[int, int] = data.draw(st.sampled_from([(999_999, 1), (1, 999_999)]))
            return pair
        return self.leases[-1 - i]

    @precondition(lambda self: self.leases)
    @rule(
        kind=st.sampled_from(["ack", "nack", "nack", "heartbeat", "release"]),
        retry=st.sampled_from([None, 0, 2000]),
    )
    def work_latest(self, kind: str, retry: int | None) -> None:
        """What a worker mostly does: finish the lease it got last."""
        data = _Latest()
        if kind == "ack":
            self.ack(data, b"r", None)  # type: ignore[arg-type]
        elif kind == "nack":
            self.nack(data, "e", retry, None)  # type: ignore[arg-type]
        elif kind == "release":
            self.release(data, None)  # type: ignore[arg-type]
        else:
            self.heartbeat(data, None, None)  # type: ignore[arg-type]

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), lease_ms=st.sampled_from([None, None, 500, 3000]), rid=rid_st)
    def heartbeat(self, data: st.DataObject, lease_ms: int | None, rid: str | None) -> None:
        job_id, token = self._pick_lease(data)
        cmd = Heartbeat(
            now_ms=self.now, request_id=rid, job_id=job_id, token=token, lease_ms=lease_ms
        )

        def expect() -> Expect:
            j = self.model.jobs.get(job_id)
            if j is not None and j.cancel_requested and token == j.token:
                told = Extended(j.finished, cancel_requested=True)
                if not j.collectable:
                    return Expect(told)

                def collected_or_told(got: Result) -> None:
                    assert got == told or _refused(got, Reason.NOT_FOUND), (told, got)

                return Expect(check=collected_or_told)
            why = self.model.lease_refusal(job_id, token)
            if why is not None:
                return Expect(reasons=why)
            j = self.model.jobs[job_id]
            j.lease_expires = self.model.clock + (j.lease_len if lease_ms is None else lease_ms)
            return Expect(Extended(j.lease_expires))

        self.run(cmd, expect)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), result=st.one_of(st.none(), st.binary(max_size=3)), rid=rid_st)
    def ack(self, data: st.DataObject, result: bytes | None, rid: str | None) -> None:
        job_id, token = self._pick_lease(data)
        cmd = Ack(now_ms=self.now, request_id=rid, job_id=job_id, token=token, result=result)

        def expect() -> Expect:
            why = self.model.lease_refusal(job_id, token)
            if why is not None:
                return Expect(reasons=why)
            j = self.model.jobs[job_id]
            j.state, j.result, j.finished = "succeeded", result, self.model.clock
            return Expect(Acked(job_id))

        self.run(cmd, expect)

    @precondition(lambda self: self.leases)
    @rule(
        data=st.data(),
        error=st.sampled_from([None, "boom"]),
        retry=st.sampled_from([None, None, 0, 700]),
        rid=rid_st,
    )
    def nack(
        self, data: st.DataObject, error: str | None, retry: int | None, rid: str | None
    ) -> None:
        job_id, token = self._pick_lease(data)
        cmd = Nack(
            now_ms=self.now,
            request_id=rid,
            job_id=job_id,
            token=token,
            error=error,
            retry_in_ms=retry,
        )

        def expect() -> Expect:
            model = self.model
            why = model.lease_refusal(job_id, token)
            if why is not None:
                return Expect(reasons=why)
            j = model.jobs[job_id]
            j.error = error
            if j.attempts >= j.max_attempts:
                j.state, j.finished = "dead", model.clock
                return Expect(Nacked(job_id, "dead", None))

            def check(got: Result) -> None:
                assert isinstance(got, Nacked) and got.job_id == job_id, got
                assert got.run_at_ms is not None
                delay = got.run_at_ms - model.clock
                if retry is None:
                    nominal = nominal_backoff(j.attempts)
                    assert nominal - nominal // 4 <= delay <= nominal, (delay, nominal)
                else:
                    assert delay == retry
                j.ready_at = got.run_at_ms
                j.state = "delayed" if delay > 0 else "queued"
                assert got.state == j.state

            return Expect(check=check)

        self.run(cmd, expect)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), rid=rid_st)
    def release(self, data: st.DataObject, rid: str | None) -> None:
        job_id, token = self._pick_lease(data)
        cmd = Release(now_ms=self.now, request_id=rid, job_id=job_id, token=token)

        def expect() -> Expect:
            model = self.model
            if model.enabled < 4:
                return _rejected(Reason.VERSION_NOT_ENABLED)
            why = model.lease_refusal(job_id, token)
            if why is not None:
                return Expect(reasons=why)
            j = model.jobs[job_id]
            # Back in its place (ready_at unchanged), the claim's attempt undone.
            j.state, j.attempts = "queued", j.attempts - 1
            return Expect(Released(job_id))

        self.run(cmd, expect)

    @rule(version=st.sampled_from([2, 3, 4]), rid=rid_st)
    def enable_version(self, version: int, rid: str | None) -> None:
        cmd = EnableVersion(now_ms=self.now, request_id=rid, version=version)

        def expect() -> Expect:
            self.model.enabled = max(self.model.enabled, version)
            return Expect(VersionEnabled(self.model.enabled))

        self.run(cmd, expect)

    # -- cancel and admin ------------------------------------------------------------------

    @rule(data=st.data(), rid=rid_st)
    def cancel(self, data: st.DataObject, rid: str | None) -> None:
        known = sorted(self.model.jobs)
        some_id = st.integers(1, self.model.next_id)
        job_id = data.draw(st.one_of(st.sampled_from(known), some_id) if known else some_id)
        cmd = Cancel(now_ms=self.now, request_id=rid, job_id=job_id)

        def expect() -> Expect:
            j = self.model.jobs.get(job_id)
            if j is None:
                return _rejected(Reason.NOT_FOUND)
            if j.collectable:
                return Expect(reasons={Reason.NOT_FOUND, Reason.FINISHED})
            if j.state in FINISHED:
                return _rejected(Reason.FINISHED)
            # A live lease (settled: an expired one is queued or dead by now) is told of the
            # cancel by its heartbeat once log version 3 is enabled.
            j.cancel_requested = j.state == "leased" and self.model.enabled >= 3
            j.state, j.finished, j.expired = "cancelled", self.model.clock, False
            return Expect(Cancelled(job_id))

        self.run(cmd, expect)

    @rule(q=queues_st, data=st.data(), rid=rid_st)
    def requeue_dead(self, q: str, data: st.DataObject, rid: str | None) -> None:
        self.model.settle()  # dead letters as of the coming command's time (or earlier)
        dead = sorted(j.id for j in self.model.jobs.values() if j.state == "dead")
        some_id = st.integers(1, self.model.next_id)
        if dead:
            some_id = st.one_of(st.sampled_from(dead), some_id)
        ids = data.draw(st.one_of(st.none(), st.lists(some_id, max_size=4)))
        cmd = RequeueDead(
            now_ms=self.now, request_id=rid, queue=q, job_ids=None if ids is None else tuple(ids)
        )

        def expect() -> Expect:
            model = self.model
            mq = model.queues.get(q)
            if mq is None:
                return Expect(Requeued(0))
            dead = sorted(j.id for j in model.jobs.values() if j.queue == q and j.state == "dead")
            chosen = dead if ids is None else [i for i in dict.fromkeys(ids) if i in dead]
            for i in chosen:
                j = model.jobs[i]
                owner = None if j.key is None else mq.keys.get(j.key)
                if j.key is not None and owner != j.id and model.live_key(mq, j.key) is None:
                    mq.keys[j.key] = j.id
                j.state, j.attempts, j.finished, j.ready_at = "queued", 0, 0, model.clock
                j.expired = False
            return Expect(Requeued(len(chosen)))

        self.run(cmd, expect)

    @rule(
        kind=st.sampled_from(["pause", "resume", "resume", "purge", "configure", "configure"]),
        q=queues_st,
        window=st.sampled_from([None, 0, 1000, 40_000, 600_000]),
        retention=st.sampled_from([None, 0, 1000, 40_000, 3_600_000]),
        rid=rid_st,
    )
    def admin(
        self, kind: str, q: str, window: int | None, retention: int | None, rid: str | None
    ) -> None:
        """Pause, resume, purge and configure share a rule: they are rarer than the rest."""
        if kind == "pause":
            self._pause(q, rid)
        elif kind == "resume":
            self._resume(q, rid)
        elif kind == "purge":
            self._purge(q, rid)
        else:
            self._configure(q, window, retention, rid)

    def _pause(self, q: str, rid: str | None) -> None:
        def expect() -> Expect:
            self.model.queue(q).paused = True
            return Expect(Paused(q))

        self.run(Pause(now_ms=self.now, request_id=rid, queue=q), expect)

    def _resume(self, q: str, rid: str | None) -> None:
        def expect() -> Expect:
            self.model.queue(q).paused = False
            return Expect(Resumed(q))

        self.run(Resume(now_ms=self.now, request_id=rid, queue=q), expect)

    def _purge(self, q: str, rid: str | None) -> None:
        def expect() -> Expect:
            model = self.model
            mq = model.queues.get(q)
            if mq is None:
                return Expect(Purged(0))
            doomed = [
                j
                for j in model.jobs.values()
                if j.queue == q and j.state in ("queued", "delayed", "dead")
            ]
            for j in doomed:
                del model.jobs[j.id]
                if j.key is not None and mq.keys.get(j.key) == j.id:
                    del mq.keys[j.key]
            return Expect(Purged(len(doomed)))

        self.run(Purge(now_ms=self.now, request_id=rid, queue=q), expect)

    def _configure(
        self, q: str, window: int | None, retention: int | None, rid: str | None
    ) -> None:
        cmd = Configure(
            now_ms=self.now,
            request_id=rid,
            queue=q,
            dedup_window_ms=window,
            retention_ms=retention,
        )

        def expect() -> Expect:
            model = self.model
            mq = model.queue(q)
            if window is not None:
                # A new window applies to the keys still live: forget the expired ones first.
                for key in [k for k in mq.keys if model.live_key(mq, k) is None]:
                    del mq.keys[key]
                mq.window = window
            if retention is not None:
                mq.retention = retention
            return Expect(Configured(q, mq.window, mq.retention))

        self.run(cmd, expect)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def internal_invariants(self) -> None:
        self.m.check_invariants()
        assert self.m.clock_ms == self.model.clock

    @invariant()
    def each_job_in_exactly_one_place(self) -> None:
        m = self.m
        for q in m.queues.values():
            places: dict[int, int] = {}
            for key in set(q.ready):
                job = m.jobs.get(key & ((1 << 48) - 1))
                if (
                    job is not None
                    and job.state is JobState.QUEUED
                    and key == ready_key(job.priority, job.ready_at_ms, job.id)
                ):
                    places[job.id] = places.get(job.id, 0) + 1
            for key in set(q.delayed):
                job = m.jobs.get(key & ((1 << 48) - 1))
                if (
                    job is not None
                    and job.state is JobState.DELAYED
                    and key == delayed_key(job.ready_at_ms, job.id)
                ):
                    places[job.id] = places.get(job.id, 0) + 1
            for key in set(q.leases):
                job = m.jobs.get(key & ((1 << 48) - 1))
                if (
                    job is not None
                    and job.state is JobState.LEASED
                    and key == lease_key(job.lease_expires_ms, job.token, job.id)
                ):
                    places[job.id] = places.get(job.id, 0) + 1
            for job_id in [*q.dead, *q.finished]:
                places[job_id] = places.get(job_id, 0) + 1
            mine = [j.id for j in m.jobs.values() if j.queue == q.name]
            assert sorted(places) == sorted(mine)
            assert all(n == 1 for n in places.values()), places

    @invariant()
    def one_live_lease_and_increasing_tokens(self) -> None:
        live = [
            j
            for j in self.m.jobs.values()
            if j.state is JobState.LEASED and j.lease_expires_ms > self.m.clock_ms
        ]
        assert len({j.id for j in live}) == len({j.token for j in live}) == len(live)
        for job_id, token in self.leases[self.checked_leases :]:
            assert token > self.max_token_seen, "fencing tokens strictly increase"
            self.max_token_seen = token
            seq = self.tokens_of.setdefault(job_id, [])
            assert not seq or token > seq[-1]
            seq.append(token)
        self.checked_leases = len(self.leases)

    @invariant()
    def state_matches_model(self) -> None:
        """Compare every job with the model, on a copy brought to cluster time by a tick."""
        model = self.model
        copy = Machine.restore(snapshot_bytes(self.m))
        copy.apply_command(Tick(now_ms=model.clock))
        present = set(copy.jobs)
        for j in model.jobs.values():
            info = copy.job_info(j.id)
            if info is None:
                assert j.collectable, f"job {j.id} lost ({j.state})"
                continue
            present.discard(j.id)
            assert info.state.value == j.state, (j.id, info.state, j)
            assert info.queue == j.queue and info.payload == j.payload
            assert info.priority == j.priority and info.key == j.key
            assert info.attempts == j.attempts and info.max_attempts == j.max_attempts
            assert info.token == j.token and info.lease_ms == j.lease_ms
            assert info.created_ms == j.created
            assert info.run_at_ms == j.ready_at, (j.id, info.run_at_ms, j.ready_at)
            if j.state == "leased":
                assert info.lease_expires_ms == j.lease_expires and info.worker == j.worker
            if j.state in FINISHED:
                assert info.finished_ms == j.finished, (j.id, info.finished_ms, j.finished)
            if j.state == "succeeded":
                assert info.result == j.result
            if j.error is not None and j.error.startswith("lease expired"):
                assert info.error is not None and info.error.startswith("lease expired")
            else:
                assert info.error == j.error
        assert not present, f"jobs the model does not know: {present}"
        for name, mq in model.queues.items():
            stats = copy.queue_stats(name)
            assert stats is not None
            assert stats.paused == mq.paused
            assert (stats.dedup_window_ms, stats.retention_ms) == (mq.window, mq.retention)
            mine = [j for j in model.jobs.values() if j.queue == name]
            for state in (*UNFINISHED, "dead"):
                n = sum(1 for j in mine if j.state == state)
                assert stats.depth[state] == n, (name, state, stats.depth, n)
            for state in ("succeeded", "cancelled"):
                low = sum(1 for j in mine if j.state == state and not j.collectable)
                high = sum(1 for j in mine if j.state == state)
                assert low <= stats.depth[state] <= high
            for p in range(10):
                n = sum(1 for j in mine if j.state == "queued" and j.priority == p)
                assert stats.by_priority[str(p)] == n
            dead = sorted(j.id for j in mine if j.state == "dead")
            assert [d.id for d in copy.dead_letters(name, limit=1000)] == dead
        assert set(copy.queues) == set(model.queues)


# When a change breaks the machine, hypothesis shrinks the failure for up to 5 minutes (its
# own cap); the test timeout must outlast that, or the interrupted shrink is reported as a
# confusing FlakyStrategyDefinition instead of the minimal failing example.
pytestmark = pytest.mark.timeout(900)

QueueMachineTest.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_queue_machine = QueueMachineTest.TestCase
