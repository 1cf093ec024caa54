"""`raftq limits`: the rate argument, and the text it prints for an answer."""

from __future__ import annotations

import argparse

import pytest

from raftq.cli.admin import _limits_text, rate_arg


def test_rate_is_limit_over_a_duration() -> None:
    assert rate_arg("10/1s") == (10, 1000)
    assert rate_arg("100/1m") == (100, 60_000)
    for bad in ("10", "x/1s", "10/1", "/1s"):
        with pytest.raises(argparse.ArgumentTypeError):
            rate_arg(bad)


def test_the_text_names_each_limit_and_the_use() -> None:
    answer = {
        "queue": "reports",
        "concurrency": 2,
        "rate": None,
        "group_concurrency": 1,
        "group_rate": {"limit": 5, "period_ms": 1000},
        "usage": {
            "slots_used": 2,
            "starts_in_window": 0,
            "rate_blocked": False,
            "groups": 3,
            "groups_ready": 1,
            "groups_waiting": 1,
            "at_ms": 1,
        },
    }
    assert _limits_text(answer) == (
        "reports: concurrency 2, rate none, group concurrency 1, group rate 5/1s\n"
        "  slots used 2, starts in window 0, groups 3 (1 ready, 1 waiting)"
    )
