"""``raftq.contrib.django.convert``: what a Django task becomes in raftq and back (no Django
needed; the backend on a real cluster is tests/integration/test_django_tasks.py)."""

from __future__ import annotations

import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from raftq.contrib.django.convert import (
    STATUS_OF_STATE,
    JobError,
    error_text,
    from_ms,
    parse_error,
    raftq_priority,
    to_ms,
)
from raftq.core.job import JobState


def test_priorities_map_in_order_onto_ten_even_bands() -> None:
    levels = [raftq_priority(p) for p in range(-100, 101)]
    assert levels == sorted(levels)
    assert set(Counter(levels)) == set(range(10))
    assert set(Counter(levels).values()) == {20, 21}
    assert (raftq_priority(-100), raftq_priority(0), raftq_priority(100)) == (0, 4, 9)
    for bad in (-101, 101):
        with pytest.raises(ValueError, match=r"-100\.\.100"):
            raftq_priority(bad)


def test_times_are_integer_ms_of_aware_datetimes() -> None:
    when = datetime(2026, 12, 7, 16, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=2)))
    ms = to_ms(when)
    assert ms == 1_796_652_000_123
    assert from_ms(ms) == when - timedelta(microseconds=456)
    assert from_ms(ms).tzinfo is UTC
    assert to_ms(datetime(1969, 1, 1, tzinfo=UTC)) == 0
    with pytest.raises(ValueError, match="aware"):
        to_ms(datetime(2026, 1, 1))  # naive on purpose


def test_every_job_state_has_a_task_status() -> None:
    assert set(STATUS_OF_STATE) == {s.value for s in JobState}
    assert set(STATUS_OF_STATE.values()) == {"READY", "RUNNING", "SUCCESSFUL", "FAILED"}


def _raised() -> BaseException:
    try:
        raise KeyError("missing")
    except KeyError as e:
        return e


def test_a_task_error_reads_back_as_written() -> None:
    exc = _raised()
    tb = "".join(traceback.format_exception(exc))
    assert parse_error(error_text("builtins.KeyError", tb)) == ("builtins.KeyError", tb)


def test_errors_raftq_wrote_itself_are_job_errors() -> None:
    path = f"{JobError.__module__}.JobError"
    for text in (
        "JobTimeout: the handler ran longer than 100 ms",
        "WorkerStopped: the worker stopped before the job finished",
        "Outer.Inner: a nested class's qualname, then no traceback",
        "Outer.Inner\nnot a traceback",
    ):
        assert parse_error(text) == (path, text)


def test_a_long_traceback_keeps_its_beginning_and_end() -> None:
    tb = "Traceback (most recent call last):\n" + "x" * 50_000 + "\nValueError: the end"
    path, kept = parse_error(error_text("builtins.ValueError", tb))
    assert path == "builtins.ValueError" and len(kept) < 17_000
    assert kept.startswith("Traceback (most recent call last):")
    assert kept.endswith("ValueError: the end") and "... (truncated)" in kept
