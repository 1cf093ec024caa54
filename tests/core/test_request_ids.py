"""Request ids: a repeat of the same command gets the first answer, another command under a
known id is refused (``request_id_reused``), and the memory keeps claims as references
(job id, token), not their payloads (issue 17, findings 5 and 7).
"""

from __future__ import annotations

import gc
import hashlib
import sys
from dataclasses import replace

import pytest

from raftq.core import (
    Ack,
    Acked,
    Cancel,
    Cancelled,
    Claim,
    Claimed,
    CodecError,
    Command,
    Configure,
    Enqueue,
    Enqueued,
    Heartbeat,
    JobState,
    Lease,
    Machine,
    Nack,
    NewJob,
    Reason,
    Refusal,
    Result,
    Tick,
    Ticked,
    encode_entry,
    snapshot_bytes,
)
from raftq.core.requests import LEGACY_DIGEST, ClaimRefs, command_digest
from raftq.core.snapshot import SNAPSHOT_VERSION

T0 = 1_700_000_000_000


class H:
    def __init__(self) -> None:
        self.m = Machine()
        self.now = T0

    def one(self, cmd: Command) -> Result:
        (result,) = self.m.apply_entry(encode_entry([cmd]))
        self.m.check_invariants()
        return result

    def enqueue(self, queue: str, *payloads: bytes, rid: str | None = None) -> tuple[int, ...]:
        jobs = tuple(NewJob(payload=p) for p in payloads)
        r = self.one(Enqueue(now_ms=self.now, request_id=rid, queue=queue, jobs=jobs))
        assert isinstance(r, Enqueued), r
        return r.ids

    def claim_cmd(self, queue: str, rid: str | None, mx: int = 1, worker: str = "w") -> Claim:
        return Claim(
            now_ms=self.now, request_id=rid, queues=(queue,), worker=worker, max=mx, lease_ms=10_000
        )


def _reused(r: Result) -> bool:
    return isinstance(r, Refusal) and r.reason is Reason.REQUEST_ID_REUSED


# -- same id, different command: refused ----------------------------------------------------


def test_same_id_other_enqueue_is_refused_and_applies_nothing() -> None:
    h = H()
    first = h.one(Enqueue(now_ms=h.now, request_id="x", queue="q", jobs=(NewJob(payload=b"a"),)))
    other = Enqueue(now_ms=h.now, request_id="x", queue="q", jobs=(NewJob(payload=b"b"),))
    assert _reused(h.one(other))
    assert len(h.m.jobs) == 1
    # the id still answers its own command, whatever now_ms the retry carries
    h.now += 5000
    retry = Enqueue(now_ms=h.now, request_id="x", queue="q", jobs=(NewJob(payload=b"a"),))
    assert h.one(retry) == first


def test_same_id_claim_of_another_queue_gets_no_lease_of_the_first() -> None:
    """The finding: another caller's claim with a known id got that id's first answer, i.e.
    another queue's payload and fencing token."""
    h = H()
    h.enqueue("secret", b"A's payload")
    h.enqueue("mine", b"B's payload")
    first = h.one(h.claim_cmd("secret", "x"))
    assert isinstance(first, Claimed) and first.jobs[0].payload == b"A's payload"
    r = h.one(h.claim_cmd("mine", "x"))
    assert _reused(r), r
    assert h.m.queues["mine"].counts[JobState.QUEUED] == 1  # nothing leased either


def test_same_id_other_lease_commands_are_refused() -> None:
    h = H()
    h.enqueue("q", b"p")
    claimed = h.one(h.claim_cmd("q", None))
    assert isinstance(claimed, Claimed)
    (lease,) = claimed.jobs
    ack = Ack(now_ms=h.now, request_id="a", job_id=lease.id, token=lease.token)
    assert h.one(ack) == Acked(lease.id)
    assert _reused(h.one(replace(ack, token=lease.token + 1)))
    assert _reused(h.one(replace(ack, result=b"other")))
    assert _reused(h.one(Tick(now_ms=h.now, request_id="a")))
    assert h.one(ack) == Acked(lease.id)


def test_command_digest_sees_every_field_but_not_the_clock_or_the_id() -> None:
    base: list[Command] = [
        Enqueue(now_ms=1, request_id="r", queue="q", jobs=(NewJob(payload=b"p", key="k"),)),
        Claim(now_ms=1, request_id="r", queues=("q",), worker="w", max=2, lease_ms=5),
        Heartbeat(now_ms=1, request_id="r", job_id=1, token=2, lease_ms=3),
        Ack(now_ms=1, request_id="r", job_id=1, token=2, result=b"x"),
        Nack(now_ms=1, request_id="r", job_id=1, token=2, error="e", retry_in_ms=4),
        Cancel(now_ms=1, request_id="r", job_id=1),
        Configure(now_ms=1, request_id="r", queue="q", dedup_window_ms=1, retention_ms=2),
        Tick(now_ms=1, request_id="r"),
    ]
    digests = {command_digest(c) for c in base}
    assert len(digests) == len(base)  # the kind of command counts
    for c in base:
        assert command_digest(replace(c, now_ms=99, request_id="other.7")) == command_digest(c)
    variants: list[Command] = [
        Enqueue(now_ms=1, request_id="r", queue="q2", jobs=(NewJob(payload=b"p", key="k"),)),
        Enqueue(now_ms=1, request_id="r", queue="q", jobs=(NewJob(payload=b"P", key="k"),)),
        Enqueue(now_ms=1, request_id="r", queue="q", jobs=(NewJob(payload=b"p"),)),
        Claim(now_ms=1, request_id="r", queues=("q2",), worker="w", max=2, lease_ms=5),
        Claim(now_ms=1, request_id="r", queues=("q",), worker="w2", max=2, lease_ms=5),
        Claim(now_ms=1, request_id="r", queues=("q",), worker="w", max=1, lease_ms=5),
        Claim(now_ms=1, request_id="r", queues=("q",), worker="w", max=2, lease_ms=None),
        Heartbeat(now_ms=1, request_id="r", job_id=1, token=3, lease_ms=3),
        Ack(now_ms=1, request_id="r", job_id=2, token=2, result=b"x"),
        Ack(now_ms=1, request_id="r", job_id=1, token=2, result=None),
        Nack(now_ms=1, request_id="r", job_id=1, token=2, error="f", retry_in_ms=4),
    ]
    for v in variants:
        assert command_digest(v) not in digests, v


# -- same id, same command: the first answer -----------------------------------------------


def test_long_poll_rounds_and_retries_of_a_claim_get_the_first_answer() -> None:
    h = H()
    h.enqueue("q", b"one", b"two")
    first = h.one(h.claim_cmd("q", "c"))
    h.now += 100
    assert h.one(h.claim_cmd("q", "c")) == first  # now_ms differs: still a retry
    assert h.m.queues["q"].counts[JobState.LEASED] == 1


def test_two_scoped_ids_are_independent() -> None:
    """The HTTP edge scopes ids by principal (``<scope>:<id>``): two callers sending the same
    header claim independently, each its own job and token."""
    h = H()
    h.enqueue("qa", b"A")
    h.enqueue("qb", b"B")
    a = h.one(h.claim_cmd("qa", "aaaa:x", worker="a"))
    b = h.one(h.claim_cmd("qb", "bbbb:x", worker="b"))
    assert isinstance(a, Claimed) and isinstance(b, Claimed)
    assert [x.payload for x in a.jobs] == [b"A"] and [x.payload for x in b.jobs] == [b"B"]
    assert a.jobs[0].token != b.jobs[0].token


# -- claims are remembered as references ----------------------------------------------------


def _claim_two(h: H) -> tuple[Claim, Lease, Lease]:
    h.enqueue("q", b"one", b"two")
    cmd = h.claim_cmd("q", "c", mx=2)
    first = h.one(cmd)
    assert isinstance(first, Claimed) and len(first.jobs) == 2
    return cmd, first.jobs[0], first.jobs[1]


def test_a_replayed_claim_is_rebuilt_from_the_jobs_with_the_current_lease_end() -> None:
    h = H()
    cmd, one, two = _claim_two(h)
    (_, _, answer) = h.m.requests["c"]
    assert answer == ClaimRefs((one.id, one.token, two.id, two.token))
    assert h.one(cmd) == Claimed((one, two))
    h.now += 1000
    ext = h.one(Heartbeat(now_ms=h.now, job_id=one.id, token=one.token))
    assert not isinstance(ext, Refusal)
    again = h.one(replace(cmd, now_ms=h.now))
    assert again == Claimed((replace(one, lease_expires_ms=h.now + 10_000), two))


def test_a_replayed_claim_leaves_out_leases_that_ended() -> None:
    """Acked, cancelled, expired and claimed again: none comes back, and never the newer
    holder's token."""
    h = H()
    cmd, one, two = _claim_two(h)
    assert h.one(Ack(now_ms=h.now, job_id=one.id, token=one.token)) == Acked(one.id)
    assert h.one(cmd) == Claimed((two,))
    h.now += 10_000  # two's lease ends in cluster time
    assert h.one(replace(cmd, now_ms=h.now)) == Claimed(())
    h.one(Tick(now_ms=h.now))
    newer = h.one(h.claim_cmd("q", "d", worker="other"))
    assert isinstance(newer, Claimed) and newer.jobs[0].id == two.id
    assert h.one(replace(cmd, now_ms=h.now)) == Claimed(())
    assert h.one(Cancel(now_ms=h.now, job_id=two.id)) == Cancelled(two.id)
    assert h.one(replace(cmd, now_ms=h.now)) == Claimed(())


def test_a_replayed_claim_of_a_collected_job_is_empty() -> None:
    h = H()
    h.one(Configure(now_ms=h.now, queue="q", retention_ms=0))
    cmd, one, two = _claim_two(h)
    for lease in (one, two):
        assert h.one(Ack(now_ms=h.now, job_id=lease.id, token=lease.token)) == Acked(lease.id)
    h.now += 1
    assert h.one(Tick(now_ms=h.now)) == Ticked(h.now)
    assert one.id not in h.m.jobs and two.id not in h.m.jobs  # collected
    assert h.one(replace(cmd, now_ms=h.now)) == Claimed(())


N_JOBS, PAYLOAD = 200, 100_000


def _claimed_big_jobs() -> Machine:
    """200 jobs of 100 kB enqueued and claimed, every command with a request id."""
    h = H()
    for i in range(N_JOBS // 20):
        payloads = [bytes([i * 20 + k]) * PAYLOAD for k in range(20)]
        h.enqueue("q", *payloads, rid=f"e{i}")
    for i in range(N_JOBS // 10):
        r = h.one(h.claim_cmd("q", f"c{i}", mx=10))
        assert isinstance(r, Claimed) and len(r.jobs) == 10
    return h.m


def test_a_snapshot_holds_each_payload_once() -> None:
    """Finding 7: the request memory kept claims with their payloads, and snapshots wrote
    them next to the jobs: 200 jobs of 100 kB made a 40 MB snapshot."""
    m = _claimed_big_jobs()
    size = len(snapshot_bytes(m))
    payloads = N_JOBS * PAYLOAD
    assert payloads <= size < payloads * 1.05, size
    restored = Machine.restore(snapshot_bytes(m))
    assert restored.state_digest() == m.state_digest()


def _reachable_bytes(root: object) -> int:
    """Bytes of every ``bytes`` object reachable from ``root``."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes):
            total += sys.getsizeof(obj)
            continue
        stack.extend(gc.get_referents(obj))
    return total


def test_the_request_memory_holds_no_payload() -> None:
    m = _claimed_big_jobs()
    held = _reachable_bytes(m.requests)
    assert held < 100_000, held  # digests only (49 bytes each), not 20 MB of payloads
    restored = Machine.restore(snapshot_bytes(m))
    assert _reachable_bytes(restored.requests) < 100_000


# -- snapshots of version 3 -----------------------------------------------------------------

# Written by the version-3 writer (the code before this change) from: Enqueue(now_ms=T0,
# request_id="e1", queue="q", jobs=(payload b"payload-1", payload b"payload-2")), then
# Claim(now_ms=T0 + 1, request_id="c1", queues=("q",), worker="w", max=2, lease_ms=60_000).
V3_SNAPSHOT = bytes.fromhex(
    "92ae72616674712d736e617073686f740398cf0000018bcfe5680102c410fba8fe8dd3708c7dd9d1db70881a"
    "0b7003020102029ea171c2ce000927c0ce0036ee80909090909a02020000000000000000dc00110200000000"
    "00000000000000000000000002dc001100000000000000000000000000000000000092a177cf0000018bcfe5"
    "6801dc00130100c4097061796c6f61642d3100020105cd7530cf0000018bcfe56800cf0000018bcfe56800c0"
    "01cf0000018bcfe65261a177c0c000cdea60cf0000018bcfe56801dc00130200c4097061796c6f61642d3200"
    "020105cd7530cf0000018bcfe56800cf0000018bcfe56800c002cf0000018bcfe65261a177c0c000cdea60cf"
    "0000018bcfe5680193a26531cf0000018bcfe73cc0930192010292c2c293a26331cf0000018bcfe73cc19202"
    "929701a171c4097061796c6f61642d31000101cf0000018bcfe652619702a171c4097061796c6f61642d3200"
    "0102cf0000018bcfe65261ff7bd54efbdbb8b8ae9fcd66cbc86f609a0b339baad7f870f2afbfe3b093145e"
)


def test_a_version_3_snapshot_is_read() -> None:
    assert V3_SNAPSHOT[2:16] == b"raftq-snapshot" and V3_SNAPSHOT[16] == 3
    m = Machine.restore(V3_SNAPSHOT)
    m.check_invariants()
    assert sorted(m.requests) == ["c1", "e1"]
    _, digest, answer = m.requests["c1"]
    assert digest == LEGACY_DIGEST
    assert answer == ClaimRefs((1, 1, 2, 2))  # the leases' payloads were dropped
    h = H()
    h.m = m
    claim = Claim(now_ms=T0 + 2, request_id="c1", queues=("q",), worker="w", max=2, lease_ms=60_000)
    expires = T0 + 1 + 60_000
    assert h.one(claim) == Claimed(
        (
            Lease(1, "q", b"payload-1", 0, 1, 1, expires),
            Lease(2, "q", b"payload-2", 0, 1, 2, expires),
        )
    )
    # No digest was recorded: the id answers any command with its first answer, as it did.
    assert h.one(Tick(now_ms=T0 + 2, request_id="e1")) == Enqueued((1, 2), (False, False))
    again = snapshot_bytes(m)
    # Written as version 4 (what the previous release reads) while no newer log version is
    # enabled; 5 or SNAPSHOT_VERSION 6 only once one is (tests/core/test_versions.py).
    assert again[16] == 4 and SNAPSHOT_VERSION == 6
    assert snapshot_bytes(Machine.restore(again)) == again


@pytest.mark.parametrize("version", [2, 7])
def test_other_snapshot_versions_are_refused(version: int) -> None:
    body = V3_SNAPSHOT[:-32]
    body = body[:16] + bytes([version]) + body[17:]
    with pytest.raises(CodecError, match="is not one this raftq reads"):
        Machine.restore(body + hashlib.sha256(body).digest())
