"""Determinism: the same log gives the same state, results and digests everywhere.

A seeded random log (thousands of commands over many queues, with keys, delays, nacks, lease
expiries, clocks going backwards, request ids and malformed entries) is replayed into fresh
machines: one straight through, one snapshotted and restored midway, and the same log in
subprocesses started with different ``PYTHONHASHSEED`` values.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest

from raftq.core import (
    Ack,
    BatchCallback,
    Cancel,
    Claim,
    Claimed,
    Command,
    Configure,
    CreateBatch,
    DeleteSchedule,
    EnableVersion,
    Enqueue,
    EnqueueFlow,
    Fire,
    FlowJob,
    Heartbeat,
    Machine,
    Nack,
    NewJob,
    Pause,
    Purge,
    PutSchedule,
    Release,
    RequeueDead,
    Resume,
    SetSchedulePaused,
    Tick,
    TriggerSchedule,
    encode_entry,
    snapshot_bytes,
)

QUEUES = [f"q{i}" for i in range(12)]
KEYS = [f"k{i}" for i in range(40)]


# A random command generator: one branch per command kind and its stale/valid variants.
def build_log(seed: int, n_entries: int = 2500) -> list[bytes]:  # noqa: C901
    """A random log of entries, generated against a live machine so that acks, nacks and
    heartbeats mostly carry real (and sometimes stale) tokens."""
    rng = random.Random(seed)
    m = Machine()
    now = 1_700_000_000_000
    leases: list[tuple[int, int]] = []  # (job id, token), current and stale mixed
    ids: list[int] = []
    entries: list[bytes] = []
    rid_n = 0

    def rid() -> str | None:
        nonlocal rid_n
        r = rng.random()
        if r < 0.15:
            rid_n += 1
            return f"r{rid_n}"
        if r < 0.2 and rid_n:  # a retry of an earlier request id
            return f"r{rng.randint(max(1, rid_n - 20), rid_n)}"
        return None

    def new_job() -> NewJob:
        delay = rng.choice([None, None, None, 0, 500, 5_000, 60_000])
        run_at = None
        if delay is None and rng.random() < 0.1:
            run_at = now + rng.randint(-10_000, 20_000)
        return NewJob(
            payload=rng.randbytes(rng.randint(0, 40)),
            priority=rng.choice([0, 0, 1, 5, 9, rng.randint(0, 9)]),
            delay_ms=delay,
            run_at_ms=run_at,
            key=rng.choice(KEYS) if rng.random() < 0.3 else None,
            max_attempts=rng.choice([None, 1, 2, 3]),
            lease_ms=rng.choice([None, 1_000, 10_000]),
        )

    def command() -> Command:  # noqa: C901 - one branch per kind of command
        r = rng.random()
        q = rng.choice(QUEUES)
        if r < 0.3:
            jobs = tuple(new_job() for _ in range(rng.choice([1, 1, 1, 2, 5])))
            return Enqueue(now_ms=now, request_id=rid(), queue=q, jobs=jobs)
        if r < 0.5:
            qs = tuple(rng.sample(QUEUES, rng.randint(1, 3)))
            return Claim(
                now_ms=now,
                request_id=rid(),
                queues=qs,
                worker=f"w{rng.randint(0, 5)}",
                max=rng.choice([1, 1, 2, 10]),
                lease_ms=rng.choice([None, None, 2_000, 30_000]),
            )
        if r < 0.75 and leases:
            job_id, token = rng.choice(leases)
            kind = rng.random()
            if kind < 0.45:
                return Ack(now_ms=now, request_id=rid(), job_id=job_id, token=token, result=b"ok")
            if kind < 0.5:  # a worker giving an unstarted job back (log version 4)
                return Release(now_ms=now, request_id=rid(), job_id=job_id, token=token)
            if kind < 0.85:
                return Nack(
                    now_ms=now,
                    request_id=rid(),
                    job_id=job_id,
                    token=token,
                    error=rng.choice([None, "boom"]),
                    retry_in_ms=rng.choice([None, None, 0, 1_500]),
                )
            return Heartbeat(
                now_ms=now,
                request_id=rid(),
                job_id=job_id,
                token=token,
                lease_ms=rng.choice([None, 5_000]),
            )
        if r < 0.8 and ids:
            return Cancel(now_ms=now, request_id=rid(), job_id=rng.choice(ids))
        if r < 0.84:
            ids_opt = None if rng.random() < 0.5 or not ids else tuple(rng.sample(ids, 3))
            return RequeueDead(now_ms=now, request_id=rid(), queue=q, job_ids=ids_opt)
        if r < 0.85:
            return Purge(now_ms=now, request_id=rid(), queue=q)
        if r < 0.87:
            return Pause(now_ms=now, request_id=rid(), queue=q)
        if r < 0.9:
            return Resume(now_ms=now, request_id=rid(), queue=q)
        if r < 0.92:
            return Configure(
                now_ms=now,
                request_id=rid(),
                queue=q,
                dedup_window_ms=rng.choice([None, 0, 3_000, 600_000]),
                retention_ms=rng.choice([None, 0, 5_000, 3_600_000]),
            )
        if r < 0.94:
            return schedule_command()
        if r < 0.965:
            return flow_command(r)
        return Tick(now_ms=now, request_id=rid())

    def schedule_command() -> Command:
        name = rng.choice(("s1", "s2"))
        r = rng.random()
        if r < 0.2:
            return PutSchedule(
                now_ms=now,
                request_id=rid(),
                name=name,
                queue=rng.choice(QUEUES),
                every_ms=rng.choice([500, 1_000]),
                payload=rng.randbytes(4),
                overlap=rng.choice(["allow", "skip"]),
                paused=rng.random() < 0.1,
            )
        if r < 0.75:  # slots near now, some stale, some in the future: refused
            slot = now - now % 500 - 500 * rng.randint(-1, 4)
            return Fire(now_ms=now, request_id=rid(), name=name, slot_ms=slot)
        if r < 0.85:
            return TriggerSchedule(now_ms=now, request_id=rid(), name=name)
        if r < 0.95:
            paused = rng.random() < 0.5
            return SetSchedulePaused(now_ms=now, request_id=rid(), name=name, paused=paused)
        return DeleteSchedule(now_ms=now, request_id=rid(), name=name)

    def flow_command(r: float) -> Command:
        if r < 0.955:
            return EnqueueFlow(now_ms=now, request_id=rid(), jobs=flow_jobs())
        cb = BatchCallback(queue=rng.choice(QUEUES), payload=b"cb")
        return CreateBatch(
            now_ms=now,
            request_id=rid(),
            jobs=flow_jobs(keys=False),
            on_complete=rng.choice([None, cb]),
            on_success=rng.choice([None, cb]),
            on_death=rng.choice([None, cb]),
        )

    def flow_jobs(keys: bool = True) -> tuple[FlowJob, ...]:
        """Jobs of several queues depending on recent ids and on each other (a cycle now
        and then: refused)."""
        n = rng.choice([1, 2, 3])
        out = []
        for i in range(n):
            nj = new_job()
            out.append(
                FlowJob(
                    queue=rng.choice(QUEUES),
                    job=nj if keys else replace(nj, key=None),
                    depends_on=tuple(rng.sample(ids, min(len(ids), rng.choice([0, 1, 2])))),
                    depends_on_new=tuple(k for k in range(n) if k != i and rng.random() < 0.3),
                    run_on_failure=rng.random() < 0.3,
                )
            )
        return tuple(out)

    entries.append(encode_entry([EnableVersion(now_ms=now, version=4)]))  # version-4 commands on
    m.apply_entry(entries[0])
    for _ in range(n_entries):
        step = rng.random()
        if step < 0.05:
            now -= rng.randint(1, 5_000)  # a proposer with a slow clock
        elif step < 0.1:
            now += rng.randint(10_000, 200_000)  # long pause: leases expire, windows pass
        else:
            now += rng.randint(0, 400)
        if rng.random() < 0.01:
            raw = rng.choice([b"\xc1", b"", msgpack.packb([2, []]), rng.randbytes(12)])
        else:
            raw = encode_entry([command() for _ in range(rng.choice([1, 1, 1, 2, 4]))])
        entries.append(raw)
        for res in m.apply_entry(raw):
            if isinstance(res, Claimed):
                for lease in res.jobs:
                    leases.append((lease.id, lease.token))
                    ids.append(lease.id)
            elif hasattr(res, "ids"):
                ids.extend(res.ids)
        leases = leases[-60:]
        ids = ids[-200:]
    return entries


def replay(entries: list[bytes], m: Machine | None = None) -> tuple[Machine, list[bytes]]:
    m = Machine() if m is None else m
    out = [m.apply(raw) for raw in entries]
    return m, out


@pytest.fixture(scope="module")
def log() -> list[bytes]:
    return build_log(seed=20240601)


def test_replay_twice_gives_equal_state(log: list[bytes]) -> None:
    a, ra = replay(log)
    b, rb = replay(log)
    assert ra == rb
    assert a.digest == b.digest
    assert a.state_digest() == b.state_digest()
    assert snapshot_bytes(a) == snapshot_bytes(b)
    a.check_invariants()
    # The log is rich enough to mean something.
    assert len(a.queues) >= 10
    assert any(q.dead for q in a.queues.values())
    assert sum(len(q.finished) for q in a.queues.values()) > 10


@pytest.mark.parametrize("cut", [0.13, 0.5, 0.87])
def test_snapshot_restore_midway(log: list[bytes], cut: float) -> None:
    straight, results = replay(log)
    k = int(len(log) * cut)
    first, head = replay(log[:k])
    restored = Machine.restore(snapshot_bytes(first))
    assert restored.state_digest() == first.state_digest()
    restored.check_invariants()
    second, tail = replay(log[k:], restored)
    assert head + tail == results
    assert second.digest == straight.digest
    assert second.applied == straight.applied
    assert second.state_digest() == straight.state_digest()
    second.check_invariants()


def test_snapshot_restore_snapshot_is_identical(log: list[bytes]) -> None:
    for k in (1, 700, len(log)):
        m, _ = replay(log[:k])
        raw = snapshot_bytes(m)
        again = snapshot_bytes(Machine.restore(raw))
        assert again == raw
        streamed = Machine.restore(io.BytesIO(raw))
        assert snapshot_bytes(streamed) == raw


def test_restored_copy_answers_like_the_original(log: list[bytes]) -> None:
    """At every step of a prefix, a restored copy gives the same answer as the original."""
    m = Machine()
    for raw in log[:300]:
        copy = Machine.restore(snapshot_bytes(m))
        assert copy.apply(raw) == m.apply(raw)
        assert copy.state_digest() == m.state_digest()


_CHILD = """
import sys, msgpack
from raftq.core import Machine, snapshot_bytes
entries = msgpack.unpackb(open(sys.argv[1], "rb").read())
m = Machine()
k = len(entries) // 2
for raw in entries[:k]:
    m.apply(raw)
m = Machine.restore(snapshot_bytes(m))
for raw in entries[k:]:
    m.apply(raw)
print(m.state_digest(), m.digest.hex(), m.applied)
"""


def assert_replays_equal_under_other_hash_seeds(
    log: list[bytes], tmp_path: Path, seeds: tuple[str, ...] = ("0", "12345")
) -> None:
    """``log`` replayed in fresh interpreters under other ``PYTHONHASHSEED`` values ends in
    the state this process reaches."""
    path = tmp_path / "log.msgpack"
    path.write_bytes(msgpack.packb(log))
    m, _ = replay(log)
    expected = f"{m.state_digest()} {m.digest.hex()} {m.applied}"
    for seed in seeds:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert out.stdout.strip() == expected, f"PYTHONHASHSEED={seed}"


@pytest.mark.integration
def test_replay_under_other_hash_seeds(log: list[bytes], tmp_path: Path) -> None:
    assert_replays_equal_under_other_hash_seeds(log, tmp_path)
