"""The replicated counters and histograms (raftq/core/tally.py) say exactly what happened."""

from __future__ import annotations

from raftq.core import (
    Ack,
    Cancel,
    Claim,
    Claimed,
    Command,
    Enqueue,
    Enqueued,
    Machine,
    Nack,
    NewJob,
    Purge,
    RequeueDead,
    Result,
    Tick,
    encode_entry,
    snapshot_bytes,
)
from raftq.core.tally import BUCKETS_MS, OUTCOMES, WORKER_WINDOW_MS


def _apply(m: Machine, cmd: Command) -> Result:
    (result,) = m.apply_entry(encode_entry([cmd]))
    return result


def _enqueue(m: Machine, now: int, n: int, **kw: object) -> list[int]:
    jobs = tuple(NewJob(payload=b"x", **kw) for _ in range(n))  # type: ignore[arg-type]
    r = _apply(m, Enqueue(now_ms=now, queue="q", jobs=jobs))
    assert isinstance(r, Enqueued)
    return list(r.ids)


def _claim(m: Machine, now: int, n: int, worker: str = "w1") -> list[tuple[int, int]]:
    r = _apply(m, Claim(now_ms=now, queues=("q",), worker=worker, max=n))
    assert isinstance(r, Claimed)
    return [(x.id, x.token) for x in r.jobs]


def _totals(m: Machine) -> dict[str, int]:
    s = m.queue_stats("q")
    assert s is not None
    return s.totals


def test_a_known_sequence_gives_exact_totals_and_histograms() -> None:
    m = Machine()
    _enqueue(m, 1_000, 10)
    _enqueue(m, 1_000, 2, max_attempts=1)  # ids 11, 12: die on their first failure
    leases = _claim(m, 1_020, 4)  # waited 20 ms each
    for job_id, token in leases:
        _apply(m, Ack(now_ms=1_520, job_id=job_id, token=token))  # ran 500 ms each
    (a, ta), (b, _) = _claim(m, 2_000, 2, worker="w2")  # waited 1000 ms each
    _apply(m, Nack(now_ms=2_100, job_id=a, token=ta, retry_in_ms=0))  # retried
    _apply(m, Cancel(now_ms=2_100, job_id=b))
    # Left: 7..12 (ready since 1000, never claimed) and a (ready again at 2100).
    rest = _claim(m, 3_000, 10, worker="w3")
    assert len(rest) == 7
    t = _totals(m)
    assert t["enqueued"] == 12
    assert t["succeeded"] == 4
    assert t["failed"] == 1 and t["retried"] == 1
    assert t["cancelled"] == 1
    assert t["claimed"] == 4 + 2 + 7
    mm = m.queue_metrics("q")
    assert mm is not None
    assert mm.run.count == 4 and mm.run.sum_ms == 4 * 500
    # First claims only: 4 waited 20 ms, 2 waited 1000 ms, 6 waited 2000 ms (the retried
    # job's second claim is not a wait).
    assert mm.wait.count == 4 + 2 + 6
    assert mm.wait.sum_ms == 4 * 20 + 2 * 1_000 + 6 * 2_000
    assert mm.wait.counts[BUCKETS_MS.index(25)] == 4
    assert mm.workers == 3
    assert sum(mm.leased_by_worker.values()) == 7 and mm.leased_by_worker == {"w3": 7}


def test_expiry_dead_requeue_and_purge_are_counted() -> None:
    m = Machine()
    (job,) = _enqueue(m, 0, 1, max_attempts=2, lease_ms=100)
    _claim(m, 0, 1)
    _apply(m, Tick(now_ms=200))  # expired, retried
    _claim(m, 300, 1)
    _apply(m, Tick(now_ms=500))  # expired, dead
    t = _totals(m)
    assert (t["expired"], t["retried"], t["dead"], t["claimed"]) == (2, 1, 1, 2)
    _apply(m, RequeueDead(now_ms=600, queue="q", job_ids=(job,)))
    _enqueue(m, 600, 3)
    _apply(m, Purge(now_ms=700, queue="q"))
    t = _totals(m)
    assert t["requeued"] == 1 and t["purged"] == 4
    assert set(t) == set(OUTCOMES)


def test_workers_leave_the_window_after_a_minute() -> None:
    m = Machine()
    _enqueue(m, 0, 1)
    _claim(m, 0, 1, worker="old")
    _claim(m, 10_000, 1, worker="new")  # nothing left: still a worker polling the queue
    mm = m.queue_metrics("q")
    assert mm is not None and mm.workers == 2
    _apply(m, Tick(now_ms=WORKER_WINDOW_MS + 5_000))
    mm = m.queue_metrics("q")
    assert mm is not None and mm.workers == 1
    assert m.queues["q"].tally.workers == {"new": 10_000}


def test_the_tally_survives_a_snapshot_and_is_part_of_the_digest() -> None:
    m = Machine()
    _enqueue(m, 0, 3)
    for job_id, token in _claim(m, 7, 2):
        _apply(m, Ack(now_ms=40, job_id=job_id, token=token))
    restored = Machine.restore(snapshot_bytes(m))
    assert restored.queue_metrics("q") == m.queue_metrics("q")
    assert restored.state_digest() == m.state_digest()
    assert snapshot_bytes(restored) == snapshot_bytes(m)
    before = m.state_digest()
    m.queues["q"].tally.totals[0] += 1  # a state that differs only in a counter
    assert m.state_digest() != before


def test_workers_remembered_are_bounded() -> None:
    from raftq.core.tally import MAX_WORKERS, Tally  # noqa: PLC0415

    t = Tally()
    for i in range(MAX_WORKERS + 5):
        t.saw_worker(f"w{i}", i)
    assert len(t.workers) == MAX_WORKERS
    assert next(iter(t.workers)) == "w5"  # the least recent went first
    t.saw_worker("w5", 10**6)  # seen again: now the most recent
    assert list(t.workers)[-1] == "w5" and next(iter(t.workers)) == "w6"
