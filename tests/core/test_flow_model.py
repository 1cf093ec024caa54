"""Model test of dependencies and batches: random flows, claims, acks, deaths, cancels,
requeues and time, with the rules checked after every step against what the test observed:

- a dependant never leaves ``waiting`` before each dependency finished (each succeeded, unless
  it runs on failure), never returns to it, and is cancelled with ``dependency_failed`` only
  when a dependency failed; its claim carries exactly its parents' outcomes;
- each batch callback is enqueued at most once, only in the step that made it due, and is
  enqueued by the end of any step where it is due.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raftq.core import (
    Ack,
    BatchCallback,
    BatchCreated,
    Cancel,
    Claim,
    Claimed,
    Command,
    CreateBatch,
    EnableVersion,
    Enqueued,
    EnqueueFlow,
    FlowJob,
    JobState,
    Lease,
    Machine,
    Nack,
    NewJob,
    Reason,
    Refusal,
    RequeueDead,
    Result,
    Tick,
    encode_entry,
)
from raftq.core.job import FINISHED_STATES

T = 1_700_000_000_000
OK = JobState.SUCCEEDED


def _has_cycle(refs: list[tuple[int, ...]]) -> bool:
    seen: dict[int, int] = {}

    def visit(i: int) -> bool:
        if seen.get(i) == 1:
            return True
        if seen.get(i) == 2:
            return False
        seen[i] = 1
        if any(visit(k) for k in refs[i]):
            return True
        seen[i] = 2
        return False

    return any(visit(i) for i in range(len(refs)))


flow_specs = st.lists(
    st.tuples(
        st.lists(st.integers(0, 30), max_size=2),  # picks among existing ids
        st.lists(st.integers(0, 2), max_size=2),  # @N
        st.booleans(),  # run on failure
        st.integers(1, 2),  # max attempts
    ),
    min_size=1,
    max_size=3,
)


class FlowModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = Machine()
        self.now = T
        self.ids: list[int] = []
        self.deps: dict[int, tuple[tuple[int, ...], bool]] = {}
        # Each job's finishes as observed (a requeued dead job may finish again), the state
        # seen last, and for each dependant where its parents' histories stood at its enqueue.
        self.finishes: dict[int, list[JobState]] = {}
        self.last: dict[int, JobState] = {}
        self.start: dict[int, dict[int, int]] = {}
        self.left_waiting: set[int] = set()
        self.leases: list[Lease] = []
        self.batches: list[tuple[int, tuple[int, ...]]] = []  # (batch id, members)
        self.fired: dict[tuple[int, bytes], int] = {}  # (batch, payload) -> job id
        self.one(EnableVersion(now_ms=T, version=3))

    def one(self, cmd: Command) -> Result:
        before = set(self.m.jobs)
        (result,) = self.m.apply_entry(encode_entry([cmd]))
        if isinstance(cmd, (EnqueueFlow, CreateBatch)):
            refs = [j.depends_on_new for j in cmd.jobs]
            if _has_cycle(refs) or any(i in r for i, r in enumerate(refs)):
                assert isinstance(result, Refusal) and result.reason is Reason.INVALID, result
            else:
                assert isinstance(result, (Enqueued, BatchCreated)), result
                self._record(cmd.jobs, result.ids)
                if isinstance(result, BatchCreated):
                    self.batches.append((result.batch, result.ids))
        self._see_callbacks(before)
        return result

    def _jobs(self, spec: list[tuple[list[int], list[int], bool, int]]) -> tuple[FlowJob, ...]:
        out = []
        for picks, new, run, attempts in spec:
            existing = tuple(dict.fromkeys(self.ids[p % len(self.ids)] for p in picks if self.ids))
            out.append(
                FlowJob(
                    queue="q",
                    job=NewJob(payload=b"x", max_attempts=attempts, lease_ms=1000),
                    depends_on=existing,
                    depends_on_new=tuple(k for k in new if k < len(spec)),
                    run_on_failure=run,
                )
            )
        return tuple(out)

    def _record(self, jobs: tuple[FlowJob, ...], ids: tuple[int, ...]) -> None:
        for j, job_id in zip(jobs, ids, strict=True):
            deps = tuple(dict.fromkeys((*j.depends_on, *(ids[k] for k in j.depends_on_new))))
            if deps:
                self.deps[job_id] = (deps, j.run_on_failure)
                # A parent finished at the enqueue counts with that finish (its last one).
                self.start[job_id] = {
                    d: len(self.finishes.get(d, []))
                    - (1 if self.last.get(d) in FINISHED_STATES else 0)
                    for d in deps
                }
            self.ids.append(job_id)

    @rule(spec=flow_specs)
    def enqueue_flow(self, spec: list[tuple[list[int], list[int], bool, int]]) -> None:
        self.one(EnqueueFlow(now_ms=self.now, jobs=self._jobs(spec)))

    @rule(spec=flow_specs)
    def create_batch(self, spec: list[tuple[list[int], list[int], bool, int]]) -> None:
        cbs = [BatchCallback(queue="cb", payload=p) for p in (b"complete", b"success", b"death")]
        self.one(
            CreateBatch(
                now_ms=self.now,
                jobs=self._jobs(spec),
                on_complete=cbs[0],
                on_success=cbs[1],
                on_death=cbs[2],
            )
        )

    @rule(n=st.integers(1, 3))
    def claim(self, n: int) -> None:
        r = self.one(Claim(now_ms=self.now, queues=("q",), worker="w", max=n))
        assert isinstance(r, Claimed)
        for lease in r.jobs:
            self.leases.append(lease)
            if lease.id in self.deps:
                deps, _ = self.deps[lease.id]
                assert lease.parents is not None
                assert [p[0] for p in lease.parents] == list(deps)
                assert [p[1] for p in lease.parents] == self._outcomes(lease.id)

    @rule(i=st.integers(0, 50), kill=st.booleans())
    def finish(self, i: int, kill: bool) -> None:
        if not self.leases:
            return
        lease = self.leases.pop(i % len(self.leases))
        if kill:
            self.one(Nack(now_ms=self.now, job_id=lease.id, token=lease.token, retry_in_ms=0))
        else:
            self.one(Ack(now_ms=self.now, job_id=lease.id, token=lease.token, result=b"r"))

    @rule(i=st.integers(0, 50))
    def cancel(self, i: int) -> None:
        if self.ids:
            self.one(Cancel(now_ms=self.now, job_id=self.ids[i % len(self.ids)]))

    @rule()
    def requeue(self) -> None:
        self.one(RequeueDead(now_ms=self.now, queue="q"))

    @rule(ms=st.integers(0, 1500))
    def tick(self, ms: int) -> None:
        self.now += ms
        self.one(Tick(now_ms=self.now))

    def _outcomes(self, job_id: int) -> list[JobState | None]:
        """Each parent's first finish since the dependant was enqueued (``None``: none yet)."""
        out: list[JobState | None] = []
        for d, i in self.start[job_id].items():
            seen = self.finishes.get(d, [])
            out.append(seen[i] if i < len(seen) else None)
        return out

    def _state(self, job_id: int) -> JobState:
        info = self.m.job_info(job_id)
        assert info is not None  # retention is an hour: nothing is collected here
        return info.state

    def _see_callbacks(self, before: set[int]) -> None:
        """Record the step's first finishes, then check the callbacks it created."""
        for job_id in self.ids:
            st_ = self._state(job_id)
            if st_ in FINISHED_STATES and self.last.get(job_id) not in FINISHED_STATES:
                self.finishes.setdefault(job_id, []).append(st_)
            self.last[job_id] = st_
        new = [j for j in self.m.jobs if j not in before and self.m.jobs[j].queue == "cb"]
        for job_id in new:
            job = self.m.jobs[job_id]
            flow = self.m.job_flow(job_id)
            assert flow is not None and flow.batch is None
            members = {p[0] for p in flow.outcomes}
            owner = [b for b, ids in self.batches if members <= set(ids)]
            assert owner, "a callback without its batch"
            key = (owner[-1], job.payload)
            assert key not in self.fired, f"{key} fired twice"
            self.fired[key] = job_id
            ids = dict(self.batches)[owner[-1]]
            states = [self._state(j) for j in ids]
            if job.payload == b"complete":
                assert all(s in FINISHED_STATES for s in states)
            elif job.payload == b"success":
                assert all(s is OK for s in states)
            else:
                assert any(s is JobState.DEAD for s in states)

    @invariant()
    def rules_hold(self) -> None:
        self.m.check_invariants()
        for job_id, (_deps, run) in self.deps.items():
            st_ = self._state(job_id)
            finals = self._outcomes(job_id)
            failed = any(f is not None and f is not OK for f in finals)
            if st_ is JobState.WAITING:
                assert job_id not in self.left_waiting, "back to waiting"
                assert None in finals and (run or not failed)
                continue
            self.left_waiting.add(job_id)
            info = self.m.job_info(job_id)
            assert info is not None
            if st_ is JobState.CANCELLED and info.error == "dependency_failed":
                assert failed and not run
            else:
                assert None not in finals or st_ is JobState.CANCELLED
                assert run or not failed or st_ is JobState.CANCELLED
        for b, ids in self.batches:
            states = [self._state(j) for j in ids]
            if all(s in FINISHED_STATES for s in states):
                assert (b, b"complete") in self.fired
            if all(s is OK for s in states):
                assert (b, b"success") in self.fired
            if any(s is JobState.DEAD for s in states):
                assert (b, b"death") in self.fired


FlowModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFlowModel = FlowModel.TestCase
