"""The machine keeps equal values as one object where that saves memory per queued job
(docs/benchmark-log.md, "Memory at 1M queued jobs"): on the apply path and after a restore.

These check object identity, not sizes: identity is what the memory saving rests on, and it
must hold without changing any value, answer or snapshot byte.
"""

from __future__ import annotations

from raftq.core import Enqueue, Enqueued, Machine, NewJob, encode_entry, snapshot_bytes

NOW = 1_700_000_000_000


def _load(
    m: Machine, batches: int, size: int, delay_ms: int | None = None, tag: str = "r"
) -> list[Enqueued]:
    answers = []
    for b in range(batches):
        jobs = tuple(NewJob(payload=b"p%d" % i, delay_ms=delay_ms) for i in range(size))
        cmd = Enqueue(now_ms=NOW + b, request_id=f"{tag}{b}", queue="q", jobs=jobs)
        (result,) = m.apply_entry(encode_entry([cmd]))
        assert isinstance(result, Enqueued)
        answers.append(result)
    return answers


def test_a_job_due_now_shares_its_created_time() -> None:
    m = Machine()
    _load(m, 2, 50)
    _load(m, 1, 10, delay_ms=5_000, tag="d")
    due = [j for j in m.jobs.values() if j.ready_at_ms == j.created_ms]
    delayed = [j for j in m.jobs.values() if j.ready_at_ms != j.created_ms]
    assert len(due) == 100 and len(delayed) == 10
    assert all(j.ready_at_ms is j.created_ms for j in due)
    assert all(j.ready_at_ms == j.created_ms + 5_000 for j in delayed)


def test_all_new_answers_share_one_flags_tuple() -> None:
    m = Machine()
    a, b = _load(m, 2, 1000)
    assert a.existing == (False,) * 1000
    assert a.existing is b.existing
    assert a.ids != b.ids


def test_restore_keeps_equal_values_shared_and_the_bytes_equal() -> None:
    m = Machine()
    _load(m, 3, 200)
    _load(m, 1, 10, delay_ms=5_000, tag="d")
    raw = snapshot_bytes(m)
    r = Machine.restore(raw)
    assert snapshot_bytes(r) == raw
    jobs = list(r.jobs.values())
    assert all(j.ready_at_ms is j.created_ms for j in jobs if j.ready_at_ms == j.created_ms)
    first_batch = [j for j in jobs if j.created_ms == NOW]
    assert len(first_batch) == 200
    assert all(j.created_ms is first_batch[0].created_ms for j in first_batch)
    assert all(j.lease_ms is jobs[0].lease_ms for j in jobs)
    # The request-id memory's answers name the jobs' own id objects.
    for _, _, answer in r.requests.values():
        assert isinstance(answer, Enqueued)
        assert all(i is r.jobs[i].id for i in answer.ids)
    answers = [a for _, _, a in r.requests.values() if isinstance(a, Enqueued)]
    assert answers[0].existing is answers[1].existing
