"""Limits and fair groups against a naive reference, driven by hypothesis.

The reference keeps every job of the limited queue in a dict and the full list of claim times
(per queue and per group); it decides by scanning. After every step: the machine's invariants
hold (``check_invariants`` includes "no servable group is out of the ring"), and the state the
machine shows agrees with the reference. For every claim:
- each job handed out was queued, the best of its group (priority, ready time, id), and the
  queue and its group were below their concurrency and rate caps when it was handed out (a
  rate checked against the full history: no window of ``period_ms`` holds more than ``limit``
  starts, since the limits were last set);
- a claim that got fewer jobs than it asked for left no group with ready jobs and free
  capacity (nothing starves);
- a twin machine restored from a snapshot taken at a random step gives the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from raftq.core import (
    Ack,
    Acked,
    Cancel,
    Cancelled,
    Claim,
    Claimed,
    Command,
    EnableVersion,
    Enqueue,
    Enqueued,
    LimitsSet,
    Machine,
    Nack,
    NewJob,
    Result,
    SetLimits,
    Tick,
    encode_entry,
    snapshot_bytes,
)

T0 = 1_700_000_000_000
GROUPS = [None, "g1", "g2", "g3"]
opt_small = st.none() | st.integers(1, 3)
opt_period = st.sampled_from([None, 5, 20, 100])


@dataclass
class RJob:
    id: int
    group: str
    priority: int
    state: str  # queued, leased, done
    ready_at: int = 0
    token: int = 0
    lease_end: int = 0


class LimitsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = Machine()
        self.twin: Machine | None = None
        self.now = T0
        self.jobs: dict[int, RJob] = {}
        self.limits = SetLimits(now_ms=T0, queue="q")
        self.starts: list[int] = []  # claim times of "q"
        self.group_starts: dict[str, list[int]] = {}
        self.since: dict[str, int] = {}  # len of each start list when the limits were set
        # The machine's logs (docs/state-machine.md, Rate): the last `limit` starts, a full
        # log raised to a higher limit padded with its oldest start. The caps are checked
        # against the true history above; "nothing starves" against these.
        self.log: list[int] = []
        self.group_log: dict[str, list[int]] = {}

    def run(self, cmd: Command) -> Result:
        (got,) = self.m.apply_entry(encode_entry([cmd]))
        if self.twin is not None:
            (twin_got,) = self.twin.apply_entry(encode_entry([cmd]))
            assert twin_got == got
        return got

    @initialize(
        c=opt_small, rl=opt_small, rp=opt_period, gc=opt_small, grl=opt_small, grp=opt_period
    )
    def setup(
        self,
        *,
        c: int | None,
        rl: int | None,
        rp: int | None,
        gc: int | None,
        grl: int | None,
        grp: int | None,
    ) -> None:
        self.run(EnableVersion(now_ms=T0, version=3))
        self.set_limits(c=c, rl=rl, rp=rp, gc=gc, grl=grl, grp=grp)

    def set_limits(self, *, c: Any, rl: Any, rp: Any, gc: Any, grl: Any, grp: Any) -> None:
        cmd = SetLimits(
            now_ms=self.now,
            queue="q",
            concurrency=c,
            rate_limit=rl if rp is not None else None,
            rate_period_ms=rp if rl is not None else None,
            group_concurrency=gc,
            group_rate_limit=grl if grp is not None else None,
            group_rate_period_ms=grp if grl is not None else None,
        )
        got = self.run(cmd)
        assert isinstance(got, LimitsSet)
        # A rate counts the claims made while it is set: a new one starts from no history.
        old = self.limits
        if cmd.rate_limit is None or old.rate_limit is None:
            self.starts, self.log = [], []
        else:
            self.log = _carried(self.log, old.rate_limit, cmd.rate_limit)
        if cmd.group_rate_limit is None or old.group_rate_limit is None:
            self.group_starts, self.group_log = {}, {}
        else:
            self.group_log = {
                g: _carried(v, old.group_rate_limit, cmd.group_rate_limit)
                for g, v in self.group_log.items()
            }
        self.limits = cmd
        # The rate history is kept across a change; windows that end before it obeyed the
        # older limits, so the window check starts here.
        self.since = {g: len(s) for g, s in self.group_starts.items()}
        self.since["*"] = len(self.starts)

    @rule(c=opt_small, rl=opt_small, rp=opt_period, gc=opt_small, grl=opt_small, grp=opt_period)
    def change_limits(self, *, c: Any, rl: Any, rp: Any, gc: Any, grl: Any, grp: Any) -> None:
        self.set_limits(c=c, rl=rl, rp=rp, gc=gc, grl=grl, grp=grp)

    @rule(delta=st.sampled_from([0, 1, 2, 5, 20, 40]))
    def advance(self, delta: int) -> None:
        self.now += delta
        self.run(Tick(now_ms=self.now))
        self._expire()

    def _expire(self) -> None:
        for j in self.jobs.values():
            if j.state == "leased" and j.lease_end <= self.now:
                j.state, j.ready_at = "queued", j.lease_end

    @rule(
        groups=st.lists(st.sampled_from(GROUPS), min_size=1, max_size=4),
        priority=st.integers(0, 2),
        other=st.booleans(),
    )
    def enqueue(self, groups: list[str | None], priority: int, other: bool) -> None:
        queue = "r" if other else "q"
        jobs = tuple(
            NewJob(payload=b"x", group=g, priority=priority, max_attempts=1000) for g in groups
        )
        got = self.run(Enqueue(now_ms=self.now, queue=queue, jobs=jobs))
        assert isinstance(got, Enqueued)
        for job_id, g in zip(got.ids, groups, strict=True):
            info = self.m.job_info(job_id)
            assert info is not None and info.group == g
            if queue == "q":
                self.jobs[job_id] = RJob(job_id, g or "", priority, "queued", self.now)

    # -- the reference's view of the caps ---------------------------------------------------

    def _leased(self, group: str | None = None) -> int:
        return sum(
            1
            for j in self.jobs.values()
            if j.state == "leased" and (group is None or j.group == group)
        )

    @staticmethod
    def _rate_free(starts: list[int], limit: int | None, period: int | None, now: int) -> bool:
        return limit is None or period is None or sum(t > now - period for t in starts) < limit

    def _queue_free(self, *, logged: bool = False) -> bool:
        """Below the queue's caps, by the true history (``logged``: by the machine's log)."""
        lim = self.limits
        if lim.concurrency is not None and self._leased() >= lim.concurrency:
            return False
        starts = self.log if logged else self.starts
        return self._rate_free(starts, lim.rate_limit, lim.rate_period_ms, self.now)

    def _group_free(self, group: str, *, logged: bool = False) -> bool:
        lim = self.limits
        if lim.group_concurrency is not None and self._leased(group) >= lim.group_concurrency:
            return False
        starts = (self.group_log if logged else self.group_starts).get(group, [])
        return self._rate_free(starts, lim.group_rate_limit, lim.group_rate_period_ms, self.now)

    @rule(mx=st.integers(1, 5), both=st.booleans(), lease_ms=st.sampled_from([5, 30, 1000]))
    def claim(self, mx: int, both: bool, lease_ms: int) -> None:
        queues = ("r", "q") if both else ("q",)
        claimable = self.m.claimable("q")  # what wakes long-poll claims: never a false "none"
        got = self.run(Claim(now_ms=self.now, queues=queues, worker="w", max=mx, lease_ms=lease_ms))
        assert isinstance(got, Claimed)
        for lease in got.jobs:
            if lease.queue != "q":
                continue
            j = self.jobs[lease.id]
            assert j.state == "queued", f"job {j.id} handed out while {j.state}"
            assert self._queue_free(), "queue cap exceeded"
            assert self._group_free(j.group), f"group {j.group!r} cap exceeded"
            best = min(
                (-o.priority, o.ready_at, o.id)
                for o in self.jobs.values()
                if o.state == "queued" and o.group == j.group
            )
            assert best == (-j.priority, j.ready_at, j.id), "not the best job of its group"
            j.state, j.token, j.lease_end = "leased", lease.token, self.now + lease_ms
            if self.limits.rate_limit is not None:
                self.starts.append(self.now)
                self.log = [*self.log, self.now][-self.limits.rate_limit :]
            if self.limits.group_rate_limit is not None:
                self.group_starts.setdefault(j.group, []).append(self.now)
                log = [*self.group_log.get(j.group, []), self.now]
                self.group_log[j.group] = log[-self.limits.group_rate_limit :]
        took = sum(1 for lease in got.jobs if lease.queue == "q")
        assert (took > 0) == (claimable > 0) or (both and took == 0), (took, claimable)
        assert took <= max(claimable, 0) or claimable == 0
        if len(got.jobs) < mx and self._queue_free(logged=True):
            for j in self.jobs.values():
                assert not (j.state == "queued" and self._group_free(j.group, logged=True)), (
                    f"group {j.group!r} has ready jobs and free capacity but was not served"
                )

    def _pick(self, data: st.DataObject, state: str) -> RJob | None:
        chosen = [j for j in self.jobs.values() if j.state == state]
        return data.draw(st.sampled_from(chosen)) if chosen else None

    @rule(data=st.data(), kind=st.sampled_from(["ack", "nack", "cancel"]))
    def finish(self, data: st.DataObject, kind: str) -> None:
        j = self._pick(data, "leased")
        if j is None:
            return
        if kind == "ack":
            assert self.run(Ack(now_ms=self.now, job_id=j.id, token=j.token)) == Acked(j.id)
            j.state = "done"
        elif kind == "nack":
            self.run(Nack(now_ms=self.now, job_id=j.id, token=j.token, retry_in_ms=0))
            j.state, j.ready_at = "queued", self.now
        else:
            assert self.run(Cancel(now_ms=self.now, job_id=j.id)) == Cancelled(j.id)
            j.state = "done"

    @rule(data=st.data())
    def cancel_queued(self, data: st.DataObject) -> None:
        j = self._pick(data, "queued")
        if j is not None:
            assert self.run(Cancel(now_ms=self.now, job_id=j.id)) == Cancelled(j.id)
            j.state = "done"

    @rule()
    def restore_twin(self) -> None:
        self.twin = Machine.restore(snapshot_bytes(self.m))
        assert self.twin.state_digest() == self.m.state_digest()

    @invariant()
    def agrees(self) -> None:
        self.m.check_invariants()
        stats = self.m.queue_stats("q")
        assert stats is not None
        assert stats.depth["leased"] == self._leased()
        assert stats.depth["queued"] == sum(j.state == "queued" for j in self.jobs.values())
        # No window of period_ms that ends after the limits were set holds more than limit
        # starts: any limit + 1 consecutive starts (the last one since then) span period_ms.
        lim = self.limits
        for group, starts in self.group_starts.items():
            if lim.group_rate_limit is not None and lim.group_rate_period_ms is not None:
                n, p, first = (
                    lim.group_rate_limit,
                    lim.group_rate_period_ms,
                    self.since.get(group, 0),
                )
                for i in range(len(starts) - n):
                    assert i + n < first or starts[i + n] - starts[i] >= p
        if lim.rate_limit is not None and lim.rate_period_ms is not None:
            n, p, s = lim.rate_limit, lim.rate_period_ms, self.starts
            for i in range(len(s) - n):
                assert i + n < self.since["*"] or s[i + n] - s[i] >= p


def _carried(log: list[int], old_limit: int, new_limit: int) -> list[int]:
    if len(log) == old_limit and new_limit > old_limit:  # the claims before are unknown
        log = [log[0]] * (new_limit - old_limit) + log
    return log[-new_limit:]


LimitsModel.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_limits_model = LimitsModel.TestCase
