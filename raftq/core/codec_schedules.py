"""Wire format of the schedule commands (log version 3): tags 20..24, fields in the order of
their dataclasses, as every command of ``codec.py`` (the golden-bytes test guards them)."""

from __future__ import annotations

from typing import Any

from raftq.core.codec_checks import (
    check_bool,
    check_bytes,
    check_fields,
    check_int,
    check_opt_int,
    check_opt_str,
    check_str,
)
from raftq.core.commands import (
    Command,
    DeleteSchedule,
    Fire,
    PutSchedule,
    SetSchedulePaused,
    TriggerSchedule,
)

__all__ = ["SCHEDULE_TAGS", "decode_schedule_command", "encode_schedule_command"]

_PUT, _DELETE, _FIRE, _TRIGGER, _PAUSED = 20, 21, 22, 23, 24
SCHEDULE_TAGS = frozenset({_PUT, _DELETE, _FIRE, _TRIGGER, _PAUSED})

ScheduleCommand = PutSchedule | DeleteSchedule | Fire | TriggerSchedule | SetSchedulePaused


def encode_schedule_command(cmd: ScheduleCommand, head: list[Any]) -> list[Any]:
    """``[tag, request_id, now_ms, *fields]`` (``head``: request_id, now_ms)."""
    match cmd:
        case PutSchedule():
            c = cmd
            fields = [c.name, c.queue, c.every_ms, c.cron, c.tz, c.payload, c.priority]
            fields += [c.max_attempts, c.lease_ms, c.overlap, c.catchup_ms, c.paused]
            return [_PUT, *head, *fields]
        case DeleteSchedule():
            return [_DELETE, *head, cmd.name]
        case Fire():
            return [_FIRE, *head, cmd.name, cmd.slot_ms]
        case TriggerSchedule():
            return [_TRIGGER, *head, cmd.name]
        case SetSchedulePaused():
            return [_PAUSED, *head, cmd.name, cmd.paused]


def decode_schedule_command(tag: int, rid: str | None, now: int, f: list[Any]) -> Command:
    """The command of a schedule tag (``SCHEDULE_TAGS``) from its fields; ``CodecError``."""
    if tag == _PUT:
        name, queue, every, cron, tz, payload, prio, attempts, lease, overlap, catchup, paused = (
            check_fields(f, 12, "put_schedule")
        )
        return PutSchedule(
            now_ms=now,
            request_id=rid,
            name=check_str(name, "name"),
            queue=check_str(queue, "queue"),
            every_ms=check_opt_int(every, "every_ms"),
            cron=check_opt_str(cron, "cron"),
            tz=check_opt_str(tz, "tz"),
            payload=check_bytes(payload, "payload"),
            priority=check_int(prio, "priority"),
            max_attempts=check_opt_int(attempts, "max_attempts"),
            lease_ms=check_opt_int(lease, "lease_ms"),
            overlap=check_str(overlap, "overlap"),
            catchup_ms=check_int(catchup, "catchup_ms"),
            paused=check_bool(paused, "paused"),
        )
    if tag == _FIRE:
        name, slot = check_fields(f, 2, "fire")
        name, slot = check_str(name, "name"), check_int(slot, "slot")
        return Fire(now_ms=now, request_id=rid, name=name, slot_ms=slot)
    if tag == _PAUSED:
        name, paused = check_fields(f, 2, "schedule_paused")
        return SetSchedulePaused(
            now_ms=now,
            request_id=rid,
            name=check_str(name, "name"),
            paused=check_bool(paused, "paused"),
        )
    (name,) = check_fields(f, 1, "schedule command")
    if tag == _DELETE:
        return DeleteSchedule(now_ms=now, request_id=rid, name=check_str(name, "name"))
    return TriggerSchedule(now_ms=now, request_id=rid, name=check_str(name, "name"))
