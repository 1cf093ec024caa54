"""The schedule operations (``PUT/GET/DELETE /v1/schedules/{name}``, ``GET /v1/schedules``,
``POST /v1/schedules/{name}/trigger|pause|resume``), written once for HTTP and the embedded node
(``Service.schedules``).

Cron expressions and time zones are checked here, where they are read (``raftq.service.slots``):
the machine keeps them as text. A schedule belongs to its queue for access: a token may put,
trigger, pause, delete or see a schedule only if it may use that queue.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from raftq.core import (
    DeleteSchedule,
    Fired,
    PutSchedule,
    Result,
    ScheduleDeleted,
    ScheduleInfo,
    SchedulePaused,
    SchedulePut,
    SetSchedulePaused,
    TriggerSchedule,
)
from raftq.core.limits import (
    MAX_DELAY_MS,
    MAX_LEASE_MS,
    MAX_MAX_ATTEMPTS,
    MAX_SCHEDULE_TEXT_CHARS,
)
from raftq.errors import Rejected
from raftq.service.access import allowed_queue, require_queues
from raftq.service.fields import Fields, check_queue, invalid
from raftq.service.slots import check_cron, check_tz, next_fire
from raftq.service.values import Format, pack_value, unpack_value

if TYPE_CHECKING:
    from raftq.service.operations import Answer, Op, Service

__all__ = ["MIN_EVERY_MS", "ScheduleOps", "render_schedule"]

MIN_EVERY_MS = 100  # a shorter period would fill the log with fires, not run jobs
DEFAULT_CATCHUP_MS = 60_000


def check_name(v: Any) -> str:
    """``v`` as a schedule name (the queue names' alphabet)."""
    try:
        return check_queue(v, "name")
    except Rejected:
        message = f"schedule names match [A-Za-z0-9_.:-]{{1,128}}, got {v!r:.140}"
        raise invalid("name", message) from None


def render_schedule(s: ScheduleInfo, now_ms: int | None) -> dict[str, Any]:
    """``GET /v1/schedules/{name}``; ``next_fire_ms`` is computed on the serving node at
    ``now_ms`` (``None`` while paused, or before this node knows cluster time)."""
    spec = (s.every_ms, s.cron, s.tz)
    upcoming = None
    if not s.paused and now_ms is not None:
        with contextlib.suppress(ValueError):  # a cron with no next date shows none
            upcoming = next_fire(spec, s.last_slot_ms, s.catchup_ms, now_ms)
    return {
        "name": s.name,
        "queue": s.queue,
        "every_ms": s.every_ms,
        "cron": s.cron,
        "tz": s.tz,
        "payload": unpack_value(s.payload),
        "priority": s.priority,
        "max_attempts": s.max_attempts,
        "lease_ms": s.lease_ms,
        "overlap": s.overlap,
        "catchup_ms": s.catchup_ms,
        "paused": s.paused,
        "created_ms": s.created_ms,
        "last_slot_ms": s.last_slot_ms,
        "last_fire_ms": s.last_fire_ms or None,
        "last_job_id": s.last_job_id or None,
        "next_fire_ms": upcoming,
        "fires": s.fires,
        "skipped": s.skipped,
    }


class ScheduleOps:
    """The schedule operations of one ``Service``."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.node = service.node

    def _op(self, build: Any) -> Op:
        from raftq.service.operations import Op  # noqa: PLC0415 - operations imports this module

        return Op(build)

    async def _submit(self, cmd: Any, kind: type[Result]) -> Any:
        result = await self.service.submit(cmd)
        if not isinstance(result, kind):
            raise TypeError(f"unexpected result {type(result).__name__} from the state machine")
        return result

    def put(self, name: str, args: Fields, fmt: Format) -> Op:
        """``{queue, every_ms | cron, tz?, payload, priority?, max_attempts?, lease_ms?,
        overlap?, catchup_ms?, paused?}``; answers the schedule as applied."""
        name = check_name(name)
        queue = check_queue(args.required("queue"), args.name("queue"))
        every_ms = args.opt_int("every_ms", MIN_EVERY_MS, MAX_DELAY_MS)
        cron = args.opt_str("cron", MAX_SCHEDULE_TEXT_CHARS)
        tz = args.opt_str("tz", MAX_SCHEDULE_TEXT_CHARS)
        if (every_ms is None) == (cron is None):
            raise invalid(args.name("every_ms"), "give every_ms or cron, one of them")
        if cron is not None and (problem := check_cron(cron)) is not None:
            raise invalid(args.name("cron"), problem)
        if tz is not None:
            if cron is None:
                raise invalid(args.name("tz"), "a time zone goes with cron, not every_ms")
            if (problem := check_tz(tz)) is not None:
                raise invalid(args.name("tz"), problem)
        max_bytes = self.service.limits.max_payload_bytes
        payload = pack_value(args.required("payload"), fmt, args.name("payload"), max_bytes)
        priority = args.int_default("priority", 0, 9, default=0)
        max_attempts = args.opt_int("max_attempts", 1, MAX_MAX_ATTEMPTS)
        lease_ms = args.opt_int("lease_ms", 1, MAX_LEASE_MS)
        overlap = args.opt_str("overlap", 8) or "allow"
        if overlap not in ("allow", "skip"):
            raise invalid(args.name("overlap"), f"must be allow or skip, got {overlap!r}")
        catchup_ms = args.int_default("catchup_ms", 0, MAX_DELAY_MS, default=DEFAULT_CATCHUP_MS)
        paused = args.raw("paused")
        if paused is not None and type(paused) is not bool:
            raise invalid(args.name("paused"), "expected a boolean")
        args.done()
        require_queues((queue,))

        async def run(rid: str | None) -> Answer:
            self._require_own(name)
            cmd = PutSchedule(
                now_ms=self.node.now_ms(),
                request_id=rid,
                name=name,
                queue=queue,
                every_ms=every_ms,
                cron=cron,
                tz=tz,
                payload=payload,
                priority=priority,
                max_attempts=max_attempts,
                lease_ms=lease_ms,
                overlap=overlap,
                catchup_ms=catchup_ms,
                paused=bool(paused),
            )
            result: SchedulePut = await self._submit(cmd, SchedulePut)
            return {**self.get(name), "created": result.created}

        return self._op(run)

    def _require_own(self, name: str) -> None:
        """403 unless the caller may use the queue of the existing schedule ``name`` (a
        restricted token must not replace or touch another queue's schedule)."""
        with self.node.read() as m:
            s = m.schedule_info(name)
        if s is not None:
            require_queues((s.queue,))

    def delete(self, name: str, args: Fields) -> Op:
        """No fields; answers ``{name, deleted: true}``."""
        name = check_name(name)
        args.done()

        async def run(rid: str | None) -> Answer:
            self._require_own(name)
            cmd = DeleteSchedule(now_ms=self.node.now_ms(), request_id=rid, name=name)
            await self._submit(cmd, ScheduleDeleted)
            return {"name": name, "deleted": True}

        return self._op(run)

    def trigger(self, name: str, args: Fields) -> Op:
        """No fields; enqueues one job now: answers ``{name, id, fire_ms}``."""
        name = check_name(name)
        args.done()

        async def run(rid: str | None) -> Answer:
            self._require_own(name)
            cmd = TriggerSchedule(now_ms=self.node.now_ms(), request_id=rid, name=name)
            result: Fired = await self._submit(cmd, Fired)
            return {"name": name, "id": result.job_id, "fire_ms": result.fire_ms}

        return self._op(run)

    def set_paused(self, name: str, args: Fields, *, paused: bool) -> Op:
        """No fields; answers ``{name, paused}``."""
        name = check_name(name)
        args.done()

        async def run(rid: str | None) -> Answer:
            self._require_own(name)
            cmd = SetSchedulePaused(
                now_ms=self.node.now_ms(), request_id=rid, name=name, paused=paused
            )
            await self._submit(cmd, SchedulePaused)
            return {"name": name, "paused": paused}

        return self._op(run)

    # -- reads (this node's replica) --------------------------------------------------------

    def get(self, name: str) -> Answer:
        """The schedule ``name`` (``not_found`` if unknown; 403 outside the caller's queues)."""
        name = check_name(name)
        with self.node.read() as m:
            s = m.schedule_info(name)
        if s is None:
            raise Rejected("not_found", f"no schedule {name}", 404)
        require_queues((s.queue,))
        return render_schedule(s, self.node.cluster_time_ms())

    def list(self) -> list[Answer]:
        """Every schedule the caller may see, by name."""
        visible = allowed_queue()
        with self.node.read() as m:
            infos = [m.schedule_info(n) for n in m.schedule_names()]
        now_ms = self.node.cluster_time_ms()
        return [render_schedule(s, now_ms) for s in infos if s is not None and visible(s.queue)]
