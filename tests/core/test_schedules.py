"""Schedules in the machine (log version 3): the exactly-once rule of ``Fire``, overlap,
pause/resume, trigger, the version gate, snapshot version 6, determinism, and a hypothesis
model of the rules (no slot fires twice; accepted slots of a schedule strictly increase)."""

from __future__ import annotations

from typing import Any

import pytest
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
    DeleteSchedule,
    EnableVersion,
    Enqueue,
    Enqueued,
    EnqueueFlow,
    Fire,
    Fired,
    FlowJob,
    Machine,
    NewJob,
    Purge,
    PutSchedule,
    Reason,
    Refusal,
    Result,
    ScheduleDeleted,
    SchedulePaused,
    SchedulePut,
    SetLimits,
    SetSchedulePaused,
    Tick,
    TriggerSchedule,
    encode_entry,
)
from raftq.core.limits import REQUEST_WINDOW_MS
from raftq.core.snapshot import snapshot_bytes

T = 1_700_000_000_000


def _machine(version: int = 3) -> Machine:
    m = Machine()
    if version > 1:
        m.apply_entry(encode_entry([EnableVersion(now_ms=T - 1000, version=version)]))
    return m


def _one(m: Machine, cmd: Command) -> Result:
    (result,) = m.apply_entry(encode_entry([cmd]))
    m.check_invariants()
    return result


def _put(m: Machine, now_ms: int = T, **kw: Any) -> Result:
    fields: dict[str, Any] = {"name": "s", "queue": "q", "every_ms": 1000, "payload": b"p"}
    fields.update(kw)
    return _one(m, PutSchedule(now_ms=now_ms, **fields))


def _refused(result: Result, reason: Reason) -> None:
    assert isinstance(result, Refusal), result
    assert result.reason is reason, result


def test_schedule_commands_need_log_version_3() -> None:
    m = _machine(version=2)
    _refused(_put(m), Reason.VERSION_NOT_ENABLED)
    assert not m.schedules
    _one(m, EnableVersion(now_ms=T, version=3))
    assert _put(m) == SchedulePut("s", True)
    assert _put(m, every_ms=2000) == SchedulePut("s", False)


def test_a_slot_fires_once_and_only_after_the_last_one() -> None:
    m = _machine()
    _put(m, now_ms=T, priority=4)
    # Slots at or before creation never fire: the schedule starts after it was made.
    _refused(_one(m, Fire(now_ms=T + 10, name="s", slot_ms=T)), Reason.STALE_SLOT)
    fired = _one(m, Fire(now_ms=T + 1010, name="s", slot_ms=T + 1000))
    assert isinstance(fired, Fired) and fired.fire_ms == T + 1000 and fired.job_id > 0
    info = m.job_info(fired.job_id)
    assert info is not None
    assert (info.schedule, info.fire_ms, info.queue, info.priority) == ("s", T + 1000, "q", 4)
    # The same slot again (a retry without its request id, or a second leader): refused.
    _refused(_one(m, Fire(now_ms=T + 1020, name="s", slot_ms=T + 1000)), Reason.STALE_SLOT)
    _refused(_one(m, Fire(now_ms=T + 1020, name="s", slot_ms=T + 500)), Reason.STALE_SLOT)
    # A slot after cluster time is refused: the leader fires due slots only.
    _refused(_one(m, Fire(now_ms=T + 1030, name="s", slot_ms=T + 5000)), Reason.INVALID)
    assert len(m.jobs) == 1
    s = m.schedule_info("s")
    assert s is not None and (s.last_slot_ms, s.fires, s.last_job_id) == (T + 1000, 1, fired.job_id)


def test_a_retry_under_the_same_request_id_gets_the_first_answer() -> None:
    m = _machine()
    _put(m)
    cmd = Fire(now_ms=T + 1000, request_id="fire:s:1", name="s", slot_ms=T + 1000)
    first = _one(m, cmd)
    assert isinstance(first, Fired)
    retry = Fire(now_ms=T + 1100, request_id="fire:s:1", name="s", slot_ms=T + 1000)
    assert _one(m, retry) == first
    assert len(m.jobs) == 1


def test_overlap_skip_records_the_slot_without_a_job_while_the_last_job_runs() -> None:
    m = _machine()
    _put(m, overlap="skip")
    first = _one(m, Fire(now_ms=T + 1000, name="s", slot_ms=T + 1000))
    assert isinstance(first, Fired) and first.job_id
    skipped = _one(m, Fire(now_ms=T + 2000, name="s", slot_ms=T + 2000))
    assert skipped == Fired("s", T + 2000, 0)
    _refused(_one(m, Fire(now_ms=T + 2000, name="s", slot_ms=T + 2000)), Reason.STALE_SLOT)
    claimed = _one(m, Claim(now_ms=T + 2100, queues=("q",), worker="w"))
    assert isinstance(claimed, Claimed)
    lease = claimed.jobs[0]
    _one(m, Ack(now_ms=T + 2200, job_id=lease.id, token=lease.token))
    again = _one(m, Fire(now_ms=T + 3000, name="s", slot_ms=T + 3000))
    assert isinstance(again, Fired) and again.job_id > first.job_id
    s = m.schedule_info("s")
    assert s is not None and (s.fires, s.skipped) == (2, 1)
    # overlap allow (the default) fires while the last job is unfinished.
    _put(m, overlap="allow")
    assert isinstance(_one(m, Fire(now_ms=T + 4000, name="s", slot_ms=T + 4000)), Fired)
    assert len(m.jobs) == 3


def test_pause_refuses_fires_and_resume_skips_the_slots_of_the_pause() -> None:
    m = _machine()
    _put(m)
    assert _one(m, SetSchedulePaused(now_ms=T + 100, name="s", paused=True)) == SchedulePaused(
        "s", True
    )
    _refused(_one(m, Fire(now_ms=T + 1000, name="s", slot_ms=T + 1000)), Reason.SCHEDULE_PAUSED)
    _one(m, SetSchedulePaused(now_ms=T + 3500, name="s", paused=False))
    _refused(_one(m, Fire(now_ms=T + 3600, name="s", slot_ms=T + 3000)), Reason.STALE_SLOT)
    assert isinstance(_one(m, Fire(now_ms=T + 4000, name="s", slot_ms=T + 4000)), Fired)
    # A PUT with paused=true pauses; one with paused=false after it resumes the same way.
    _put(m, now_ms=T + 4100, paused=True)
    _put(m, now_ms=T + 6500, paused=False)
    _refused(_one(m, Fire(now_ms=T + 6600, name="s", slot_ms=T + 6000)), Reason.STALE_SLOT)


def test_trigger_enqueues_now_without_consuming_a_slot() -> None:
    m = _machine()
    _put(m, paused=True)
    triggered = _one(m, TriggerSchedule(now_ms=T + 700, name="s"))
    assert isinstance(triggered, Fired) and triggered.fire_ms == T + 700
    info = m.job_info(triggered.job_id)
    assert info is not None and (info.schedule, info.fire_ms) == ("s", T + 700)
    _one(m, SetSchedulePaused(now_ms=T + 800, name="s", paused=False))
    assert isinstance(_one(m, Fire(now_ms=T + 1000, name="s", slot_ms=T + 1000)), Fired)
    _refused(_one(m, TriggerSchedule(now_ms=T, name="nope")), Reason.NOT_FOUND)


def test_delete_and_unknown_names() -> None:
    m = _machine()
    _put(m)
    assert _one(m, DeleteSchedule(now_ms=T + 1, name="s")) == ScheduleDeleted("s")
    for cmd in (
        DeleteSchedule(now_ms=T + 2, name="s"),
        Fire(now_ms=T + 2000, name="s", slot_ms=T + 2000),
        SetSchedulePaused(now_ms=T + 2, name="s", paused=True),
    ):
        _refused(_one(m, cmd), Reason.NOT_FOUND)
    # Made again, it starts after its new creation: nothing fired before can fire again.
    _put(m, now_ms=T + 5000)
    _refused(_one(m, Fire(now_ms=T + 5000, name="s", slot_ms=T + 5000)), Reason.STALE_SLOT)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"every_ms": None}, "give every_ms or cron"),
        ({"cron": "* * * * *"}, "give every_ms or cron"),
        ({"every_ms": 0}, "every_ms must be"),
        ({"name": "a b"}, "schedule name must match"),
        ({"queue": ""}, "queue name must match"),
        ({"priority": 10}, "priority must be 0..9"),
        ({"overlap": "queue"}, "overlap must be allow or skip"),
        ({"catchup_ms": -1}, "catchup_ms must be"),
        ({"every_ms": None, "cron": ""}, "cron must be 1.."),
        ({"lease_ms": 0}, "lease_ms must be"),
        ({"max_attempts": 0}, "max_attempts must be"),
    ],
)
def test_put_refuses_bad_fields(fields: dict[str, Any], message: str) -> None:
    m = _machine()
    result = _put(m, **fields)
    _refused(result, Reason.INVALID)
    assert isinstance(result, Refusal) and message in result.message
    assert not m.schedules


def test_fired_origin_goes_with_its_job() -> None:
    m = _machine()
    _put(m)
    fired = _one(m, Fire(now_ms=T + 1000, name="s", slot_ms=T + 1000))
    assert isinstance(fired, Fired)
    _one(m, Purge(now_ms=T + 1001, queue="q"))
    assert m.fired == {} and m.job_info(fired.job_id) is None
    fired = _one(m, Fire(now_ms=T + 2000, name="s", slot_ms=T + 2000))
    assert isinstance(fired, Fired)
    _one(m, Cancel(now_ms=T + 2001, job_id=fired.job_id))
    assert fired.job_id in m.fired
    _one(m, Tick(now_ms=T + 2001 + 3_600_000))  # past the retention of finished jobs
    assert m.fired == {} and m.job_info(fired.job_id) is None


def _history(m: Machine) -> None:
    _put(m, now_ms=T, name="a", overlap="skip", catchup_ms=5000)
    _put(m, now_ms=T, name="b", every_ms=None, cron="*/5 * * * *", tz="UTC", queue="r")
    _one(m, Fire(now_ms=T + 1000, request_id="fire:a:1", name="a", slot_ms=T + 1000))
    _one(m, Fire(now_ms=T + 2000, name="a", slot_ms=T + 2000))
    _one(m, TriggerSchedule(now_ms=T + 2100, name="b"))
    _one(m, SetSchedulePaused(now_ms=T + 2200, name="b", paused=True))


def test_snapshot_version_6_round_trips_once_version_3_is_enabled() -> None:
    m = _machine(version=2)
    assert snapshot_bytes(m)[16] == 5
    _one(m, EnableVersion(now_ms=T, version=3))
    assert snapshot_bytes(m)[16] == 6
    _history(m)
    raw = snapshot_bytes(m)
    assert raw[16] == 6
    restored = Machine.restore(raw)
    restored.check_invariants()
    assert snapshot_bytes(restored) == raw
    assert restored.state_digest() == m.state_digest()
    assert restored.schedule_info("a") == m.schedule_info("a")
    assert restored.fired == m.fired
    # Both go on alike: the restored one refuses the same stale slot and fires the next.
    for x in (m, restored):
        _refused(_one(x, Fire(now_ms=T + 3000, name="a", slot_ms=T + 2000)), Reason.STALE_SLOT)
        _one(x, Fire(now_ms=T + 3000, name="a", slot_ms=T + 3000))
    assert restored.state_digest() == m.state_digest()


def test_replay_with_a_snapshot_midway_gives_the_same_state() -> None:
    entries: list[bytes] = []
    m = _machine()
    m.apply_entry = _recording(m, entries)  # type: ignore[method-assign]
    _history(m)
    whole = _machine()
    for e in entries:
        whole.apply_entry(e)
    half = _machine()
    for e in entries[:3]:
        half.apply_entry(e)
    half = Machine.restore(snapshot_bytes(half))
    for e in entries[3:]:
        half.apply_entry(e)
    assert whole.state_digest() == half.state_digest() == m.state_digest()


def _recording(m: Machine, entries: list[bytes]) -> Any:
    apply = m.apply_entry

    def record(raw: bytes) -> list[Result]:
        entries.append(raw)
        return apply(raw)

    return record


_NAMES = st.sampled_from(["a", "b", "c"])


class ScheduleModel(RuleBasedStateMachine):
    """The machine's schedules against a model of the rules: per schedule, the slots fired;
    a Fire is accepted exactly when the schedule exists, is not paused, and the slot is above
    every slot it accepted and its creation (or resume) time and not after the clock."""

    def __init__(self) -> None:
        super().__init__()
        self.m = _machine()
        self.now = T
        self.floor: dict[str, int] = {}  # schedule -> slots at or below it are refused
        self.paused: dict[str, bool] = {}
        self.slots: dict[str, list[int]] = {}  # every slot accepted, in order (whole history)
        self.triggered: set[int] = set()  # jobs of triggers (not slots)
        # request id -> (its first answer, when): a repeat inside the window is answered so
        # and not applied, a refusal as well as a fire.
        self.answers: dict[str, tuple[Result, int]] = {}

    def _apply(self, cmd: Command) -> Result:
        return _one(self.m, cmd)

    @rule(dt=st.integers(0, 3000))
    def advance(self, dt: int) -> None:
        self.now += dt
        self._apply(Tick(now_ms=self.now))

    @rule(name=_NAMES, skip=st.booleans(), paused=st.booleans())
    def put(self, name: str, skip: bool, paused: bool) -> None:
        overlap = "skip" if skip else "allow"
        result = _put(self.m, now_ms=self.now, name=name, overlap=overlap, paused=paused)
        assert isinstance(result, SchedulePut)
        if name not in self.floor:
            self.floor[name] = self.now
        elif self.paused[name] and not paused:
            self.floor[name] = max(self.floor[name], self.now)
        self.paused[name] = paused

    @rule(name=_NAMES)
    def delete(self, name: str) -> None:
        result = self._apply(DeleteSchedule(now_ms=self.now, name=name))
        assert isinstance(result, ScheduleDeleted) == (name in self.floor)
        self.floor.pop(name, None)
        self.paused.pop(name, None)

    @rule(name=_NAMES, paused=st.booleans())
    def pause(self, name: str, paused: bool) -> None:
        result = self._apply(SetSchedulePaused(now_ms=self.now, name=name, paused=paused))
        if name not in self.floor:
            _refused(result, Reason.NOT_FOUND)
            return
        if self.paused[name] and not paused:
            self.floor[name] = max(self.floor[name], self.now)
        self.paused[name] = paused

    @rule(name=_NAMES, back=st.integers(-500, 4000), rid=st.booleans())
    def fire(self, name: str, back: int, rid: bool) -> None:
        slot = self.now - back
        request_id = f"fire:{name}:{slot}" if rid else None
        result = self._apply(Fire(now_ms=self.now, request_id=request_id, name=name, slot_ms=slot))
        if request_id is not None:
            first = self.answers.get(request_id)
            if first is not None and self.now < first[1] + REQUEST_WINDOW_MS:
                assert result == first[0], (result, first)  # replayed, not applied
                return
            self.answers[request_id] = (result, self.now)
        accepted = (
            name in self.floor and not self.paused[name] and self.floor[name] < slot <= self.now
        )
        assert isinstance(result, Fired) == accepted, (result, accepted)
        if accepted:
            assert isinstance(result, Fired)
            self.floor[name] = slot
            self.slots.setdefault(name, []).append(slot)

    @rule(name=_NAMES, step=st.integers(0, 1), rid=st.booleans())
    def fire_at_the_boundary(self, name: str, step: int, rid: bool) -> None:
        """The slot right at the last one (refused) or just after it (accepted if due)."""
        if name in self.floor:
            self.fire(name, self.now - self.floor[name] - step, rid)

    @rule(name=_NAMES)
    def trigger(self, name: str) -> None:
        result = self._apply(TriggerSchedule(now_ms=self.now, name=name))
        assert isinstance(result, Fired) == (name in self.floor)
        if isinstance(result, Fired):
            self.triggered.add(result.job_id)

    @rule(data=st.data())
    def finish_one(self, data: st.DataObject) -> None:
        claimed = self._apply(Claim(now_ms=self.now, queues=("q",), worker="w"))
        assert isinstance(claimed, Claimed)
        for lease in claimed.jobs:
            if data.draw(st.booleans()):
                self._apply(Ack(now_ms=self.now, job_id=lease.id, token=lease.token))

    @rule()
    def snapshot_restore(self) -> None:
        raw = snapshot_bytes(self.m)
        self.m = Machine.restore(raw)
        self.m.check_invariants()
        assert snapshot_bytes(self.m) == raw

    @invariant()
    def slots_increase_and_never_repeat(self) -> None:
        for slots in self.slots.values():
            assert slots == sorted(set(slots))

    @invariant()
    def every_scheduled_job_is_one_accepted_slot_or_a_trigger(self) -> None:
        seen: set[tuple[str, int]] = set()
        for job_id, (name, fire_ms) in self.m.fired.items():
            info = self.m.job_info(job_id)
            assert info is not None and (info.schedule, info.fire_ms) == (name, fire_ms)
            key = (name, fire_ms)
            if job_id not in self.triggered:
                assert fire_ms in self.slots.get(name, []), f"{key} is no accepted slot"
                assert key not in seen, f"slot {key} made two jobs"
                seen.add(key)


ScheduleModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestScheduleModel = ScheduleModel.TestCase


def test_a_snapshot_with_every_version_3_table_round_trips() -> None:
    """Version 6 holds all of log version 3: a schedule's fired job in a limited queue, jobs in
    groups, a waiting dependant (in a group) and a batch come back the same and answer the
    same."""
    m = _machine()
    _one(m, SetLimits(now_ms=T, queue="q", concurrency=2, group_concurrency=1))
    assert isinstance(_put(m), SchedulePut)
    fired = _one(m, Fire(now_ms=T + 1010, name="s", slot_ms=T + 1000))
    assert isinstance(fired, Fired)
    jobs = (NewJob(payload=b"a", group="g1"), NewJob(payload=b"b", group="g2"))
    parents = _one(m, Enqueue(now_ms=T + 1020, queue="q", jobs=jobs))
    assert isinstance(parents, Enqueued)
    child = FlowJob(queue="q", job=NewJob(payload=b"c", group="g3"), depends_on=parents.ids)
    flow = _one(m, EnqueueFlow(now_ms=T + 1021, jobs=(child,)))
    assert isinstance(flow, Enqueued)
    member = FlowJob(queue="q", job=NewJob(payload=b"m"))
    done = BatchCallback(queue="done", payload=b"cb")
    batch = CreateBatch(now_ms=T + 1022, jobs=(member,), on_success=done)
    assert isinstance(_one(m, batch), BatchCreated)
    raw = snapshot_bytes(m)
    twin = Machine.restore(raw)
    twin.check_invariants()
    assert raw[16] == 6 and snapshot_bytes(twin) == raw
    info = twin.job_info(fired.job_id)
    assert info is not None and (info.schedule, info.fire_ms) == ("s", T + 1000)
    waiting = twin.job_info(flow.ids[0])
    assert waiting is not None and (waiting.state, waiting.group) == ("waiting", "g3")
    claim = Claim(now_ms=T + 1030, queues=("q",), worker="w", max=10)
    assert _one(twin, claim) == _one(m, claim)
    assert twin.state_digest() == m.state_digest()


def test_the_model_expects_a_repeated_request_id_to_replay_a_refusal_too() -> None:
    """Hypothesis found this sequence: a Fire refused (slot after cluster time) and the same
    Fire under the same request id once the slot is due is answered with the first refusal
    (request ids replay their first answer) and changes nothing."""
    model = ScheduleModel()
    model.put(name="c", paused=False, skip=False)
    model.fire_at_the_boundary(name="c", rid=True, step=1)  # slot T + 1 > clock T: refused
    model.advance(dt=1)
    model.fire_at_the_boundary(name="c", rid=True, step=1)  # due now, same id: replayed
    model.slots_increase_and_never_repeat()
    assert model.slots.get("c") is None
