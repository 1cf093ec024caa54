"""The wire format: round trips, golden bytes, and totality on malformed input.

Log entries are replicated and kept forever in Raft logs and snapshots, so their bytes are a
contract: the golden-bytes tests make any format change a deliberate act (bump
``FORMAT_VERSION`` and keep decoding the old one). Malformed input must never raise out of
``Machine.apply_entry`` / ``Machine.apply``: an exception inside a replicated method wedges a
PySyncObj node forever. A damaged snapshot must raise ``CodecError`` and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from raftq.core import (
    Ack,
    Acked,
    BatchCallback,
    BatchCreated,
    Cancel,
    Cancelled,
    Claim,
    Claimed,
    CodecError,
    Command,
    Configure,
    Configured,
    CreateBatch,
    DeleteSchedule,
    EnableVersion,
    Enqueue,
    Enqueued,
    EnqueueFlow,
    Extended,
    Fire,
    Fired,
    FlowJob,
    Heartbeat,
    Lease,
    LimitsSet,
    Machine,
    Nack,
    Nacked,
    NewJob,
    Pause,
    Paused,
    Purge,
    Purged,
    PutSchedule,
    Reason,
    Refusal,
    Release,
    Released,
    Requeued,
    RequeueDead,
    Result,
    Resume,
    Resumed,
    ScheduleDeleted,
    SchedulePaused,
    SchedulePut,
    SetLimits,
    SetSchedulePaused,
    Tick,
    Ticked,
    TriggerSchedule,
    VersionEnabled,
    codec,
    decode_entry,
    encode_entry,
    snapshot_bytes,
)
from raftq.core.codec import (
    FORMAT_VERSION,
    LOG_VERSION,
    decode_results,
    encode_command,
    encode_result,
    encode_results,
)

# -- fixtures: one of each command and of each result ---------------------------------------

ONE_OF_EACH_COMMAND: list[Command] = [
    Enqueue(
        now_ms=1_700_000_000_000,
        request_id="req-1",
        queue="emails",
        jobs=(
            NewJob(
                payload=b"\x01hello",
                priority=7,
                delay_ms=1500,
                key="k-1",
                max_attempts=3,
                lease_ms=60_000,
            ),
            NewJob(payload=b"", run_at_ms=1_700_000_123_456),
        ),
    ),
    Claim(now_ms=1_700_000_000_001, queues=("emails", "sms"), worker="w-1", max=10, lease_ms=5000),
    Heartbeat(now_ms=1_700_000_000_002, job_id=1, token=2, lease_ms=9000),
    Ack(now_ms=1_700_000_000_003, request_id="req-2", job_id=1, token=2, result=b"done"),
    Nack(now_ms=1_700_000_000_004, job_id=2, token=3, error="boom", retry_in_ms=250),
    Cancel(now_ms=1_700_000_000_005, job_id=3),
    RequeueDead(now_ms=1_700_000_000_006, queue="emails", job_ids=(4, 5)),
    Purge(now_ms=1_700_000_000_007, queue="emails"),
    Pause(now_ms=1_700_000_000_008, queue="sms"),
    Resume(now_ms=1_700_000_000_009, queue="sms"),
    Configure(now_ms=1_700_000_000_010, queue="sms", dedup_window_ms=60_000, retention_ms=0),
    Tick(now_ms=1_700_000_000_011, request_id="tick-1"),
]

ONE_OF_EACH_RESULT: list[Result] = [
    Refusal(Reason.STALE_TOKEN, "token 2 is not job 1's current lease"),
    Enqueued((1, 2), (False, True)),
    Claimed((Lease(1, "emails", b"\x01hello", 7, 1, 2, 1_700_000_005_001),)),
    Extended(1_700_000_009_002),
    Acked(1),
    Nacked(2, "delayed", 1_700_000_000_254),
    Nacked(3, "dead", None),
    Cancelled(3),
    Requeued(2),
    Purged(5),
    Paused("sms"),
    Resumed("sms"),
    Configured("sms", 60_000, 0),
    Ticked(1_700_000_000_011),
]

GOLDEN_ENTRY = bytes.fromhex(
    "92019c9501a57265712d31cf0000018bcfe56800a6656d61696c739297c4060168656c6c6f07cd05dcc0a36b"
    "2d3103cdea6097c40000c0cf0000018bcfe74a40c0c0c09702c0cf0000018bcfe5680192a6656d61696c73a3"
    "736d73a3772d310acd13889603c0cf0000018bcfe568020102cd23289604a57265712d32cf0000018bcfe568"
    "030102c404646f6e659705c0cf0000018bcfe568040203a4626f6f6dccfa9406c0cf0000018bcfe568050395"
    "07c0cf0000018bcfe56806a6656d61696c739204059408c0cf0000018bcfe56807a6656d61696c739409c0cf"
    "0000018bcfe56808a3736d73940ac0cf0000018bcfe56809a3736d73960bc0cf0000018bcfe5680aa3736d73"
    "cdea6000930ca67469636b2d31cf0000018bcfe5680b"
)

GOLDEN_RESULTS = bytes.fromhex(
    "92019e9300ab7374616c655f746f6b656ed924746f6b656e2032206973206e6f74206a6f6220312773206375"
    "7272656e74206c65617365930192010292c2c39202919701a6656d61696c73c4060168656c6c6f070102cf00"
    "00018bcfe57b899203cf0000018bcfe58b2a920401940502a764656c61796564cf0000018bcfe568fe940503"
    "a464656164c09206039207029208059209a3736d73920aa3736d73940ba3736d73cdea6000920ccf0000018b"
    "cfe5680b"
)


# -- round trips and golden bytes -------------------------------------------------------------


def test_golden_entry_bytes() -> None:
    """A change here changes the replicated log format: bump FORMAT_VERSION, keep decoding v1."""
    assert FORMAT_VERSION == 1
    assert encode_entry(ONE_OF_EACH_COMMAND) == GOLDEN_ENTRY
    assert decode_entry(GOLDEN_ENTRY) == ONE_OF_EACH_COMMAND


def test_golden_result_bytes() -> None:
    assert encode_results(ONE_OF_EACH_RESULT) == GOLDEN_RESULTS
    assert decode_results(GOLDEN_RESULTS) == ONE_OF_EACH_RESULT


# Log version 2: in an entry of their own (the golden v1 entry above must not change).
V2_COMMANDS: list[Command] = [EnableVersion(now_ms=1_700_000_000_012, request_id="v-1", version=2)]
V2_RESULTS: list[Result] = [VersionEnabled(2)]
GOLDEN_V2_ENTRY = bytes.fromhex("920291940da3762d31cf0000018bcfe5680c02")


def test_golden_v2_entry_bytes() -> None:
    assert encode_entry(V2_COMMANDS) == GOLDEN_V2_ENTRY
    assert decode_entry(GOLDEN_V2_ENTRY) == V2_COMMANDS
    # Mixed with version-1 commands, the entry declares version 2.
    mixed = encode_entry([*ONE_OF_EACH_COMMAND, *V2_COMMANDS])
    assert mixed[:2] == b"\x92\x02" and decode_entry(mixed) == [*ONE_OF_EACH_COMMAND, *V2_COMMANDS]
    assert decode_results(encode_results(V2_RESULTS)) == V2_RESULTS


def test_a_version_2_command_in_a_version_1_entry_is_malformed() -> None:
    raw = msgpack.packb([1, [encode_command(V2_COMMANDS[0])]])
    assert_malformed(raw, Reason.MALFORMED)


# Log version 3: schedules.
V3_SLOT = 1_700_000_000_000
V3_COMMANDS: list[Command] = [
    PutSchedule(
        now_ms=1_700_000_000_013,
        request_id="s-1",
        name="nightly",
        queue="reports",
        cron="0 3 * * *",
        tz="Europe/Berlin",
        payload=b"\xa1r",
        priority=3,
        max_attempts=2,
        lease_ms=5000,
        overlap="skip",
        catchup_ms=60000,
    ),
    DeleteSchedule(now_ms=1_700_000_000_014, name="old"),
    Fire(now_ms=1_700_000_000_015, request_id="fire:nightly:1", name="nightly", slot_ms=V3_SLOT),
    TriggerSchedule(now_ms=1_700_000_000_016, name="nightly"),
    SetSchedulePaused(now_ms=1_700_000_000_017, name="nightly", paused=True),
]
V3_RESULTS: list[Result] = [
    SchedulePut("nightly", True),
    ScheduleDeleted("old"),
    Fired("nightly", V3_SLOT, 7),
    SchedulePaused("nightly", True),
]
GOLDEN_V3_ENTRY = bytes.fromhex(
    "9203959f14a3732d31cf0000018bcfe5680da76e696768746c79a77265706f727473c0a9302033202a202a202a"
    "ad4575726f70652f4265726c696ec402a1720302cd1388a4736b6970cdea60c29415c0cf0000018bcfe5680ea3"
    "6f6c649516ae666972653a6e696768746c793a31cf0000018bcfe5680fa76e696768746c79cf0000018bcfe568"
    "009417c0cf0000018bcfe56810a76e696768746c799518c0cf0000018bcfe56811a76e696768746c79c3"
)
GOLDEN_V3_RESULTS = bytes.fromhex(
    "9201949314a76e696768746c79c39215a36f6c649416a76e696768746c79cf0000018bcfe56800079317a76e69"
    "6768746c79c3"
)
# Log version 3: limits, and a job's group (its job array gets an 8th field).
V3L_COMMANDS: list[Command] = [
    SetLimits(
        now_ms=1_700_000_000_013,
        request_id="l-1",
        queue="q",
        concurrency=2,
        rate_limit=10,
        rate_period_ms=1000,
        group_concurrency=1,
    ),
    Enqueue(
        now_ms=1_700_000_000_014,
        queue="q",
        jobs=(NewJob(payload=b"x", group="tenant-1"), NewJob(payload=b"y")),
    ),
]
V3L_RESULTS: list[Result] = [LimitsSet("q", 2, 10, 1000, 1, None, None)]
GOLDEN_V3L_ENTRY = bytes.fromhex(
    "9203929a0ea36c2d31cf0000018bcfe5680da171020acd03e801c0c09501c0cf0000018bcfe5680ea1719298c4017800c0c0c0c0c0a874656e616e742d3197c4017900c0c0c0c0c0"
)


def test_golden_v3_entry_bytes() -> None:
    assert encode_entry(V3_COMMANDS) == GOLDEN_V3_ENTRY
    assert decode_entry(GOLDEN_V3_ENTRY) == V3_COMMANDS
    assert encode_results(V3_RESULTS) == GOLDEN_V3_RESULTS
    assert decode_results(GOLDEN_V3_RESULTS) == V3_RESULTS
    # With version-2 commands, the entry declares version 3; in a version-2 entry, malformed.
    assert encode_entry([*V2_COMMANDS, *V3_COMMANDS])[:2] == b"\x92\x03"
    for cmd in V3_COMMANDS:
        assert_malformed(msgpack.packb([2, [encode_command(cmd)]]), Reason.MALFORMED)


def test_golden_v3_limits_entry_bytes() -> None:
    assert encode_entry(V3L_COMMANDS) == GOLDEN_V3L_ENTRY
    assert decode_entry(GOLDEN_V3L_ENTRY) == V3L_COMMANDS
    assert GOLDEN_V3L_ENTRY[:2] == b"\x92\x03"
    assert decode_results(encode_results(V3L_RESULTS)) == V3L_RESULTS
    # An enqueue without a group keeps the version-1 bytes.
    plain = Enqueue(now_ms=1, queue="q", jobs=(NewJob(payload=b"x"),))
    assert encode_entry([plain])[:2] == b"\x92\x01"
    assert codec.command_version(V3L_COMMANDS[1]) == 3 and codec.command_version(plain) == 1


@pytest.mark.parametrize("cmd", V3L_COMMANDS, ids=lambda c: type(c).__name__)
def test_a_version_3_command_in_a_version_2_entry_is_malformed(cmd: Command) -> None:
    raw = msgpack.packb([2, [encode_command(cmd)]])
    assert_malformed(raw, Reason.MALFORMED)


V3_FLOW_COMMANDS: list[Command] = [
    EnqueueFlow(
        now_ms=1_700_000_000_013,
        request_id="f-1",
        jobs=(
            FlowJob(queue="a", job=NewJob(payload=b"p")),
            FlowJob(queue="b", job=NewJob(payload=b"q"), depends_on=(7,), depends_on_new=(0,)),
        ),
    ),
    CreateBatch(
        now_ms=1_700_000_000_014,
        jobs=(FlowJob(queue="a", job=NewJob(payload=b"x"), run_on_failure=True),),
        on_success=BatchCallback(queue="done", payload=b"cb"),
    ),
]
V3_FLOW_RESULTS: list[Result] = [BatchCreated(3, (4, 5))]


def test_flow_commands_are_version_3_and_round_trip() -> None:
    raw = encode_entry(V3_FLOW_COMMANDS)
    assert raw[:2] == b"\x92\x03"
    assert decode_entry(raw) == V3_FLOW_COMMANDS
    assert decode_results(encode_results(V3_FLOW_RESULTS)) == V3_FLOW_RESULTS
    # In an entry that declares version 2, a flow command is malformed (older nodes: unknown).
    assert_malformed(msgpack.packb([2, [encode_command(V3_FLOW_COMMANDS[0])]]), Reason.MALFORMED)


def test_a_lease_with_parents_round_trips_and_one_without_keeps_its_bytes() -> None:
    plain = Lease(1, "q", b"p", 0, 1, 9, 100)
    with_parents = Lease(2, "q", b"p", 0, 1, 10, 100, ((1, "succeeded", b"r"), (3, "dead", None)))
    results: list[Result] = [Claimed((plain, with_parents))]
    assert decode_results(encode_results(results)) == results
    assert encode_result(Claimed((plain,))) == [2, [[1, "q", b"p", 0, 1, 9, 100]]]


# Log version 4: a job given back unstarted.
V4_COMMANDS: list[Command] = [
    Release(now_ms=1_700_000_000_015, request_id="r-1", job_id=7, token=42),
]
V4_RESULTS: list[Result] = [Released(7)]
GOLDEN_V4_ENTRY = bytes.fromhex("9204919510a3722d31cf0000018bcfe5680f072a")
GOLDEN_V4_RESULTS = bytes.fromhex("920191920f07")


def test_golden_v4_entry_bytes() -> None:
    assert encode_entry(V4_COMMANDS) == GOLDEN_V4_ENTRY
    assert decode_entry(GOLDEN_V4_ENTRY) == V4_COMMANDS
    assert encode_results(V4_RESULTS) == GOLDEN_V4_RESULTS
    assert decode_results(GOLDEN_V4_RESULTS) == V4_RESULTS
    assert codec.command_version(V4_COMMANDS[0]) == 4
    # In an entry that declares version 3, a release is malformed (older nodes: unknown).
    assert_malformed(msgpack.packb([3, [encode_command(V4_COMMANDS[0])]]), Reason.MALFORMED)
    assert_malformed(msgpack.packb([4, [[16, None, 1, 7]]]), Reason.MALFORMED)


def test_every_command_and_result_type_is_covered() -> None:
    commands = [
        *ONE_OF_EACH_COMMAND,
        *V2_COMMANDS,
        *V3_COMMANDS,
        *V3L_COMMANDS,
        *V3_FLOW_COMMANDS,
        *V4_COMMANDS,
    ]
    results = [
        *ONE_OF_EACH_RESULT,
        *V2_RESULTS,
        *V3_RESULTS,
        *V3L_RESULTS,
        *V3_FLOW_RESULTS,
        *V4_RESULTS,
    ]
    assert {type(c) for c in commands} == set(Command.__args__)  # type: ignore[attr-defined]
    assert {type(r) for r in results} == set(Result.__args__)  # type: ignore[attr-defined]


@pytest.mark.parametrize("cmd", ONE_OF_EACH_COMMAND, ids=lambda c: type(c).__name__)
def test_each_command_round_trips_alone_and_with_defaults(cmd: Command) -> None:  # noqa: C901
    assert decode_entry(encode_entry([cmd])) == [cmd]
    # The same command with every optional field at its default.
    bare: Command
    match cmd:
        case Enqueue():
            bare = Enqueue(now_ms=0, queue="q", jobs=(NewJob(payload=b"x"),))
        case Claim():
            bare = Claim(now_ms=0, queues=("q",), worker="w")
        case Heartbeat():
            bare = Heartbeat(now_ms=0, job_id=1, token=1)
        case Ack():
            bare = Ack(now_ms=0, job_id=1, token=1)
        case Nack():
            bare = Nack(now_ms=0, job_id=1, token=1)
        case Cancel():
            bare = Cancel(now_ms=0, job_id=1)
        case RequeueDead():
            bare = RequeueDead(now_ms=0, queue="q")
        case Purge():
            bare = Purge(now_ms=0, queue="q")
        case Pause():
            bare = Pause(now_ms=0, queue="q")
        case Resume():
            bare = Resume(now_ms=0, queue="q")
        case Configure():
            bare = Configure(now_ms=0, queue="q")
        case Tick():
            bare = Tick(now_ms=0)
        case EnableVersion():
            bare = EnableVersion(now_ms=0, version=1)
        case SetLimits():
            bare = SetLimits(now_ms=0, queue="q")
    assert decode_entry(encode_entry([bare])) == [bare]


@pytest.mark.parametrize("result", ONE_OF_EACH_RESULT, ids=lambda r: type(r).__name__)
def test_each_result_round_trips(result: Result) -> None:
    assert decode_results(encode_results([result])) == [result]


def test_every_reason_round_trips() -> None:
    results: list[Result] = [Refusal(reason, f"because {reason}") for reason in Reason]
    assert decode_results(encode_results(results)) == results


# hypothesis: any well-typed command round-trips (msgpack ints are at most 64 bits)
i64 = st.integers(-(2**63), 2**63 - 1)
opt_i64 = st.none() | i64
text = st.text(max_size=12)
opt_text = st.none() | text
opt_bytes = st.none() | st.binary(max_size=12)


def commands(
    ints: st.SearchStrategy[int], now: st.SearchStrategy[int], names: st.SearchStrategy[str]
) -> st.SearchStrategy[Command]:
    """Any well-typed command, its integers from ``ints`` and its queue names from ``names``."""
    opt_ints = st.none() | ints
    heads: dict[str, Any] = {"now_ms": now, "request_id": st.none() | st.sampled_from("abc")}
    new_job = st.builds(
        NewJob,
        payload=st.binary(max_size=12),
        priority=ints,
        delay_ms=opt_ints,
        run_at_ms=opt_ints,
        key=st.none() | names,
        max_attempts=opt_ints,
        lease_ms=opt_ints,
        group=st.none() | names,
    )
    return st.one_of(
        st.builds(Enqueue, queue=names, jobs=st.lists(new_job, max_size=3).map(tuple), **heads),
        st.builds(
            Claim,
            queues=st.lists(names, max_size=3).map(tuple),
            worker=names,
            max=ints,
            lease_ms=opt_ints,
            **heads,
        ),
        st.builds(
            Heartbeat,
            job_id=ints,
            token=ints,
            lease_ms=opt_ints,
            progress=opt_bytes,
            checkpoint=opt_bytes,
            **heads,
        ),
        st.builds(Ack, job_id=ints, token=ints, result=opt_bytes, **heads),
        st.builds(Nack, job_id=ints, token=ints, error=opt_text, retry_in_ms=opt_ints, **heads),
        st.builds(Cancel, job_id=ints, **heads),
        st.builds(
            RequeueDead,
            queue=names,
            job_ids=st.none() | st.lists(ints, max_size=3).map(tuple),
            **heads,
        ),
        st.builds(Purge, queue=names, **heads),
        st.builds(Pause, queue=names, **heads),
        st.builds(Resume, queue=names, **heads),
        st.builds(Configure, queue=names, dedup_window_ms=opt_ints, retention_ms=opt_ints, **heads),
        st.builds(Tick, **heads),
        st.builds(
            SetLimits,
            queue=names,
            concurrency=opt_ints,
            rate_limit=opt_ints,
            rate_period_ms=opt_ints,
            group_concurrency=opt_ints,
            group_rate_limit=opt_ints,
            group_rate_period_ms=opt_ints,
            **heads,
        ),
    )


command_st = commands(i64, i64, text)
# Values a busy machine knows (small ids, tokens, priorities, its clock) mixed with any.
BUSY_T0 = 1_700_000_000_000
near_ints = st.integers(-2, 40) | st.sampled_from([0, 1, 1000, 30_000, 86_400_000]) | i64
near_now = st.integers(BUSY_T0 - 10_000, BUSY_T0 + 3_600_000) | i64
near_names = st.sampled_from(["a", "b", "c", "k0", "k3", "", "bad name"]) | text
busy_command_st = commands(near_ints, near_now, near_names)


@settings(max_examples=300)
@given(st.lists(command_st, max_size=5))
def test_any_well_typed_entry_round_trips(cmds: list[Command]) -> None:
    raw = encode_entry(cmds)
    assert decode_entry(raw) == cmds
    results = Machine().apply_entry(raw)  # and the machine answers every one of them
    assert len(results) == len(cmds)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(busy_command_st, min_size=1, max_size=12))
def test_any_well_typed_commands_on_a_busy_machine(snapshot: bytes, cmds: list[Command]) -> None:
    """Domain logic is total too: any values, on a machine with jobs in every state, give
    answers (never exceptions) and keep the invariants."""
    m = Machine.restore(snapshot)
    for cmd in cmds:
        (result,) = m.apply_entry(encode_entry([cmd]))
        assert isinstance(result, Result.__args__)  # type: ignore[attr-defined]
        m.check_invariants()


lease_st = st.builds(Lease, i64, text, st.binary(max_size=8), i64, i64, i64, i64)
result_st: st.SearchStrategy[Result] = st.one_of(
    st.builds(Refusal, st.sampled_from(Reason), text),
    st.lists(st.tuples(i64, st.booleans()), max_size=3).map(
        lambda xs: Enqueued(tuple(x for x, _ in xs), tuple(b for _, b in xs))
    ),
    st.lists(lease_st, max_size=3).map(lambda xs: Claimed(tuple(xs))),
    st.builds(Extended, i64),
    st.builds(Acked, i64),
    st.builds(Nacked, i64, text, opt_i64),
    st.builds(Cancelled, i64),
    st.builds(Requeued, i64),
    st.builds(Purged, i64),
    st.builds(Paused, text),
    st.builds(Resumed, text),
    st.builds(Configured, text, i64, i64),
    st.builds(Ticked, i64),
)


@settings(max_examples=200)
@given(st.lists(result_st, max_size=5))
def test_any_result_list_round_trips(results: list[Result]) -> None:
    assert decode_results(encode_results(results)) == results


# -- malformed input: apply is total ----------------------------------------------------------

# msgpack-encodable garbage: every type msgpack has, nested
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=6)
    | st.binary(max_size=6)
)
garbage = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def assert_total(raw: bytes) -> list[Result]:
    """apply_entry and apply answer (never raise); answers have the documented shapes."""
    m = Machine()
    results = m.apply_entry(raw)
    assert all(isinstance(r, Result.__args__) for r in results)  # type: ignore[attr-defined]
    encoded = Machine().apply(raw)
    assert decode_results(encoded) == results
    return results


def assert_malformed(raw: bytes, reason: Reason = Reason.MALFORMED) -> None:
    m = Machine()
    results = m.apply_entry(raw)
    assert len(results) == 1
    assert isinstance(results[0], Refusal)
    assert results[0].reason is reason, results[0]
    assert m.applied == 1 and not m.jobs and not m.queues and m.clock_ms == 0
    with pytest.raises(CodecError) as info:
        decode_entry(raw)
    assert info.value.reason is reason


@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert_total(raw)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(garbage)
def test_nested_garbage_never_raises(value: Any) -> None:
    for shaped in (value, [FORMAT_VERSION, value], [FORMAT_VERSION, [value]]):
        assert_total(msgpack.packb(shaped))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 12), st.lists(garbage, max_size=8))
def test_garbage_fields_never_raise(tag: int, fields: list[Any]) -> None:
    """Right tag, any fields: whatever decodes is then a domain question for the machine."""
    assert_total(msgpack.packb([FORMAT_VERSION, [[tag, *fields]]]))


def test_every_truncation_of_a_valid_entry_is_malformed() -> None:
    for n in range(len(GOLDEN_ENTRY)):
        assert_malformed(GOLDEN_ENTRY[:n])


def test_trailing_bytes_after_an_entry_are_malformed() -> None:
    assert_malformed(GOLDEN_ENTRY + b"\x00")


def test_versions_and_envelopes() -> None:
    assert_malformed(msgpack.packb([LOG_VERSION + 1, []]), Reason.UNSUPPORTED_VERSION)
    assert_malformed(msgpack.packb([0, []]), Reason.UNSUPPORTED_VERSION)
    assert_malformed(msgpack.packb([2**40, [[12, None, 0]]]), Reason.UNSUPPORTED_VERSION)
    for envelope in ([True, []], ["1", []], [1], [1, [], []], {"v": 1}, [1, {}], 1, None, []):
        assert_malformed(msgpack.packb(envelope))
    assert Machine().apply_entry(msgpack.packb([1, []])) == []  # an empty batch: no answers


def test_unknown_and_badly_typed_tags_are_malformed() -> None:
    for tag in (0, 13, 99, -1, 2**64 - 1, True, False, "1", 1.0, None, b"\x01"):
        assert_malformed(msgpack.packb([1, [[tag, None, 0]]]))


def test_a_bad_command_rejects_its_whole_batch() -> None:
    good = encode_command(Tick(now_ms=5))
    raw = msgpack.packb([1, [good, [12, None, "5"], good]])
    assert_malformed(raw)


# Field kinds of each command after [tag, request_id, now_ms], in wire order.
_JOB_KINDS = ["bytes", "int", "opt_int", "opt_int", "opt_str", "opt_int", "opt_int"]
_KINDS: dict[type, list[str]] = {
    Enqueue: ["str", "jobs"],
    Claim: ["list_str", "str", "int", "opt_int"],
    Heartbeat: ["int", "int", "opt_int"],
    Ack: ["int", "int", "opt_bytes"],
    Nack: ["int", "int", "opt_str", "opt_int"],
    Cancel: ["int"],
    RequeueDead: ["str", "opt_list_int"],
    Purge: ["str"],
    Pause: ["str"],
    Resume: ["str"],
    Configure: ["str", "opt_int", "opt_int"],
    Tick: [],
}


def conforms(kind: str, v: Any) -> bool:
    """The codec's type rules, restated: exact types, so a bool is not an int."""
    if kind.startswith("opt_") and v is None:
        return True
    base = kind.removeprefix("opt_")
    if base == "int":
        return type(v) is int
    if base == "str":
        return type(v) is str
    if base == "bytes":
        return type(v) is bytes
    if base == "list_str":
        return type(v) is list and all(type(x) is str for x in v)
    if base == "list_int":
        return type(v) is list and all(type(x) is int for x in v)
    if base == "job":
        return (
            type(v) is list
            and len(v) == 7
            and all(conforms(k, x) for k, x in zip(_JOB_KINDS, v, strict=True))
        )
    assert base == "jobs"
    return type(v) is list and all(conforms("job", j) for j in v)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(ONE_OF_EACH_COMMAND), garbage)
def test_decoding_accepts_exactly_the_declared_types(
    data: st.DataObject, cmd: Command, value: Any
) -> None:
    """Replace one field (or one field of one job) by any value: the entry decodes iff the
    value has the declared type; else it is malformed, never an exception."""
    wire = encode_command(cmd)
    kinds = ["opt_str", "int", *_KINDS[type(cmd)]]  # request_id, now_ms, fields
    i = data.draw(st.integers(0, len(kinds) - 1))
    kind = kinds[i]
    if kind == "jobs" and data.draw(st.booleans()):
        jobs = wire[1 + i]
        j = data.draw(st.integers(0, len(jobs) - 1))
        k = data.draw(st.integers(0, len(_JOB_KINDS) - 1))
        jobs[j][k] = value
        ok = conforms(_JOB_KINDS[k], value)
    else:
        wire[1 + i] = value
        ok = conforms(kind, value)
    raw = msgpack.packb([FORMAT_VERSION, [wire]])
    if ok:
        (decoded,) = decode_entry(raw)
        assert type(decoded) is type(cmd)
        assert encode_command(decoded) == msgpack.unpackb(msgpack.packb(wire))
        assert_total(raw)
    else:
        assert_malformed(raw)


@pytest.mark.parametrize("cmd", ONE_OF_EACH_COMMAND, ids=lambda c: type(c).__name__)
def test_wrong_field_counts_are_malformed(cmd: Command) -> None:
    wire = encode_command(cmd)
    assert_malformed(msgpack.packb([1, [[*wire, None]]]))
    assert_malformed(msgpack.packb([1, [wire[:-1]]]))


def test_bool_is_not_an_int() -> None:
    assert_malformed(msgpack.packb([1, [[12, None, True]]]))  # now_ms
    assert_malformed(msgpack.packb([1, [[6, None, 0, False]]]))  # cancel job_id
    job = [b"x", True, None, None, None, None, None]  # priority
    assert_malformed(msgpack.packb([1, [[1, None, 0, "q", [job]]]]))


def test_decode_results_raises_only_codec_error() -> None:
    for bad in (b"", b"\xc1", msgpack.packb([1, [[99]]]), msgpack.packb([1, [[0, "nope", "x"]]])):
        with pytest.raises(CodecError):
            decode_results(bad)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(garbage)
def test_decode_results_on_garbage_raises_only_codec_error(value: Any) -> None:
    for shaped in (value, [FORMAT_VERSION, value], [FORMAT_VERSION, [value]]):
        with contextlib.suppress(CodecError):
            decode_results(msgpack.packb(shaped))


def test_encode_result_is_the_wire_array() -> None:
    assert encode_result(Acked(7)) == [4, 7]


# -- snapshots --------------------------------------------------------------------------------


def _busy_machine() -> Machine:
    """A small state with every job state, keys, a paused queue and remembered requests."""
    m = Machine()
    t = 1_700_000_000_000
    jobs = tuple(
        NewJob(payload=bytes([i]) * i, priority=i % 10, key=f"k{i}" if i % 3 == 0 else None)
        for i in range(12)
    )
    m.apply_entry(
        encode_entry(
            [
                Enqueue(now_ms=t, request_id="e1", queue="a", jobs=jobs),
                Enqueue(now_ms=t, queue="b", jobs=(NewJob(payload=b"d", delay_ms=60_000),)),
                Enqueue(now_ms=t, queue="c", jobs=(NewJob(payload=b"x", max_attempts=1),)),
                Pause(now_ms=t, queue="b"),
            ]
        )
    )
    (claimed,) = m.apply_entry(
        encode_entry([Claim(now_ms=t, queues=("a", "c"), worker="w", max=5)])
    )
    assert isinstance(claimed, Claimed)
    first, second, third, *_ = claimed.jobs
    m.apply_entry(
        encode_entry(
            [
                Ack(now_ms=t + 1, request_id="a1", job_id=first.id, token=first.token, result=b"r"),
                Nack(now_ms=t + 2, job_id=second.id, token=second.token, error="e"),
                Cancel(now_ms=t + 3, job_id=third.id),
            ]
        )
    )
    (dead,) = m.apply_entry(encode_entry([Claim(now_ms=t + 4, queues=("c",), worker="w")]))
    assert isinstance(dead, Claimed)
    m.apply_entry(encode_entry([Tick(now_ms=t + 40_000)]))  # c's only job dies by expiry
    m.apply_entry(encode_entry([Claim(now_ms=t + 40_000, queues=("a",), worker="w2")]))
    states = {j.state.value for j in m.jobs.values()}
    assert states == {"queued", "delayed", "leased", "succeeded", "dead", "cancelled"}
    return m


@pytest.fixture(scope="module")
def snapshot() -> bytes:
    return snapshot_bytes(_busy_machine())


def test_snapshot_round_trips(snapshot: bytes) -> None:
    m = _busy_machine()
    restored = Machine.restore(snapshot)
    restored.check_invariants()
    assert restored.state_digest() == m.state_digest()
    assert snapshot_bytes(restored) == snapshot
    assert snapshot_bytes(Machine.restore(io.BytesIO(snapshot))) == snapshot


def test_every_truncation_of_a_snapshot_is_refused(snapshot: bytes) -> None:
    for n in range(len(snapshot)):
        with pytest.raises(CodecError):
            Machine.restore(snapshot[:n])


def test_trailing_bytes_after_a_snapshot_are_refused(snapshot: bytes) -> None:
    for extra in (b"\x00", b"\xc0", msgpack.packb([1, 2, 3])):
        with pytest.raises(CodecError):
            Machine.restore(snapshot + extra)


@settings(max_examples=300)
@given(st.data())
def test_damaged_snapshots_are_refused(snapshot: bytes, data: st.DataObject) -> None:
    damaged = bytearray(snapshot)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(damaged) - 1))
        damaged[i] = data.draw(st.integers(0, 255))
    assume(bytes(damaged) != snapshot)
    with pytest.raises(CodecError):
        Machine.restore(bytes(damaged))


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes_are_not_a_snapshot(raw: bytes) -> None:
    with pytest.raises(CodecError):
        Machine.restore(raw)


def _records(snapshot: bytes) -> list[Any]:
    return list(msgpack.Unpacker(io.BytesIO(snapshot[:-32]), raw=False))


def _resealed(records: list[Any]) -> bytes:
    """Records packed into a snapshot with a valid checksum: damage the checksum can't see."""
    body = b"".join(msgpack.packb(r) for r in records)
    return body + hashlib.sha256(body).digest()


def test_resealing_an_intact_snapshot_is_identity(snapshot: bytes) -> None:
    assert _resealed(_records(snapshot)) == snapshot


def test_structurally_wrong_snapshots_are_refused(snapshot: bytes) -> None:
    records = _records(snapshot)
    header, counts = records[0], records[1]
    n_queues, n_jobs = counts[5], counts[6]
    first_job = 2 + n_queues
    variants: list[list[Any]] = [
        [["raftq-snapshot", 999], *records[1:]],  # unknown version
        [["not-raftq", header[1]], *records[1:]],
        [header, counts[:-1], *records[2:]],  # short header record
        [header, [*counts[:6], n_jobs + 1, counts[7]], *records[2:]],  # a job missing
        [header, [*counts[:6], n_jobs - 1, counts[7]], *records[2:]],  # a job too many
        records[:-1],  # a request missing
        [*records[:first_job], records[first_job][:5], *records[first_job + 1 :]],
        [
            *records[:first_job],
            [*records[first_job][:4], 99, *records[first_job][5:]],  # unknown state code
            *records[first_job + 1 :],
        ],
        [*records[:2], "queue", *records[3:]],
        [*records, [1, 2, 3]],
    ]
    for variant in variants:
        with pytest.raises(CodecError):
            Machine.restore(_resealed(variant))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), garbage)
def test_garbage_in_any_record_field_raises_only_codec_error(
    snapshot: bytes, data: st.DataObject, value: Any
) -> None:
    """Damage behind a valid checksum (a writer bug): restore may not notice a well-typed
    change, but it never raises anything but CodecError."""
    records = _records(snapshot)
    i = data.draw(st.integers(0, len(records) - 1))
    record = records[i]
    if isinstance(record, list) and record:
        j = data.draw(st.integers(0, len(record) - 1))
        record[j] = value
    else:
        records[i] = value
    with contextlib.suppress(CodecError):
        Machine.restore(_resealed(records))


def _checked_or_error(wire: list[Any]) -> Command | CodecError:
    try:
        return codec._decode_command(wire)
    except CodecError as e:
        return e


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(command_st | st.builds(list, st.lists(garbage, max_size=8)), st.integers(1, 12))
def test_fast_decoders_agree_with_the_checked_path(value: Any, tag: int) -> None:
    """codec_fast exists only for speed: it must build exactly what the checked path builds,
    and decline (None) whatever the checked path refuses."""
    wire = encode_command(value) if not isinstance(value, list) else [tag, *value]
    wire = msgpack.unpackb(msgpack.packb(wire))  # what decode_entry really sees
    checked = _checked_or_error(wire)
    for table in (codec._FAST_DECODERS, codec._FAST_DECODERS_V3):
        fast = table.get(wire[0])
        if fast is None:
            continue
        got = fast(wire)
        if isinstance(checked, CodecError):
            assert got is None
        else:
            assert got is None or got == checked
        # Below log version 3 a job with a group takes the checked path (which refuses it).
        if table is codec._FAST_DECODERS and isinstance(got, Enqueue):
            assert all(j.group is None for j in got.jobs)
