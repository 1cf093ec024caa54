"""Wire format of the limits command (log version 3): ``SetLimits`` under command tag 14 and
its result ``LimitsSet`` under result tag 14, fields in the order of their dataclasses, as
every command of ``codec.py`` (the golden-bytes test guards them)."""

from __future__ import annotations

from typing import Any

from raftq.core.codec_checks import check_fields, check_opt_int, check_str
from raftq.core.commands import SetLimits
from raftq.core.results import LimitsSet

__all__ = ["SET_LIMITS", "decode_set_limits", "encode_limits_set", "encode_set_limits"]

SET_LIMITS = 14  # the command's tag, and its result's


def _limit_fields(c: SetLimits | LimitsSet) -> list[int | None]:
    return [
        c.concurrency,
        c.rate_limit,
        c.rate_period_ms,
        c.group_concurrency,
        c.group_rate_limit,
        c.group_rate_period_ms,
    ]


def encode_set_limits(cmd: SetLimits, head: list[Any]) -> list[Any]:
    """``[tag, request_id, now_ms, queue, *limits]`` (``head``: request_id, now_ms)."""
    return [SET_LIMITS, *head, cmd.queue, *_limit_fields(cmd)]


def decode_set_limits(rid: str | None, now: int, f: list[Any]) -> SetLimits:
    queue, c, rl, rp, gc, grl, grp = check_fields(f, 7, "set_limits")
    return SetLimits(
        now_ms=now,
        request_id=rid,
        queue=check_str(queue, "queue"),
        concurrency=check_opt_int(c, "concurrency"),
        rate_limit=check_opt_int(rl, "rate_limit"),
        rate_period_ms=check_opt_int(rp, "rate_period_ms"),
        group_concurrency=check_opt_int(gc, "group_concurrency"),
        group_rate_limit=check_opt_int(grl, "group_rate_limit"),
        group_rate_period_ms=check_opt_int(grp, "group_rate_period_ms"),
    )


def encode_limits_set(r: LimitsSet) -> list[Any]:
    return [SET_LIMITS, r.queue, *_limit_fields(r)]
