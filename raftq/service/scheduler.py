"""The leader's firing task: every ``PASS_MS``, on the leader only, propose ``Fire(name, slot)``
for each due slot of each schedule (``raftq.service.slots.due_slots``).

Where exactly-once comes from: the progress of a schedule is its replicated ``last_slot_ms``,
read from this node's state before every pass, never kept in this task's memory; the machine
accepts a slot only above it and records it in the entry that enqueues the job. So a new leader
resumes where the log says the old one stopped (no gap: every slot after it within the catch-up
window is still due; no duplicate: a slot the old leader fired is refused ``stale_slot`` even
if this node has not applied that entry yet when it computes the slot). Each Fire carries a
request id derived from (name, slot), so a retry after an unknown outcome is answered with the
first answer, not applied again.

A pass that fails (no leader, leadership lost, deadline) changes nothing: the next pass reads
the state again and proposes whatever is still due.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from raftq.core import Fire, Fired, Refusal, Result
from raftq.errors import ClusterError
from raftq.raft.api import NodeAPI
from raftq.service.slots import PASS_MS, SlotSpec, due_slots, next_slot

__all__ = ["Scheduler", "fire_request_id"]

logger = logging.getLogger(__name__)

_SCHEDULES_VERSION = 3  # the log version of Fire: no pass before the cluster enabled it


def fire_request_id(name: str, slot_ms: int) -> str:
    """The request id of the fire of ``slot_ms`` of ``name`` (36 characters whatever the name's
    length; no client id looks like it: they are scoped or chosen by clients, and a clash could
    only refuse a client's retry, never fire a slot twice)."""
    h = hashlib.blake2b(f"{name}\0{slot_ms}".encode(), digest_size=16, person=b"raftq-fire")
    return f"fire:{h.hexdigest()}"


class Scheduler:
    """The firing task of one node (it fires only while the node leads).

    Args:
        node: the local raft node.
        submit_timeout_ms: the deadline of one pass's proposals.
    """

    def __init__(self, node: NodeAPI, submit_timeout_ms: int) -> None:
        self.node = node
        self.submit_timeout_ms = submit_timeout_ms
        self._task: asyncio.Task[None] | None = None
        # (name, spec, last_slot_ms) -> the slot after last_slot_ms: most passes find nothing
        # due without computing a cron slot again.
        self._next: dict[tuple[str, SlotSpec, int], int] = {}
        self.fired = 0  # jobs this node's passes made (for logs and tests)
        self.skipped = 0  # slots recorded without a job (overlap = skip)

    def start(self) -> None:
        if self._task is None:
            name = f"raftq-scheduler-{self.node.node_id}"
            self._task = asyncio.create_task(self._loop(), name=name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(PASS_MS / 1000)
            if not self.node.is_leader():
                self._next.clear()
                continue
            try:
                await self.fire_due()
            except ClusterError as e:  # definite or not, the next pass reads the state again
                logger.debug("schedule pass not applied: %s", e)
            except Exception:  # a bug must not end the task: log it, try again next pass
                logger.exception("schedule pass failed")

    def due(self, now_ms: int) -> list[Fire]:
        """The fires due at ``now_ms`` as this node's state says (any node; the leader
        proposes them)."""
        with self.node.read() as m:
            if m.enabled_version < _SCHEDULES_VERSION or not m.schedules:
                return []
            specs = [
                (s.name, (s.every_ms, s.cron, s.tz), s.last_slot_ms, s.catchup_ms)
                for s in m.schedules.values()
                if not s.paused
            ]
        fires: list[Fire] = []
        cache: dict[tuple[str, SlotSpec, int], int] = {}
        for name, spec, last_ms, catchup_ms in specs:
            key = (name, spec, last_ms)
            try:
                first = self._next.get(key)
                if first is None:
                    first = next_slot(spec, last_ms)
                cache[key] = first
                slots = [] if first > now_ms else due_slots(spec, last_ms, catchup_ms, now_ms)
            except ValueError as e:  # a cron with no next date: the other schedules go on
                logger.warning("schedule %s has no next slot: %s", name, e)
                continue
            for slot in slots:
                fires.append(
                    Fire(
                        now_ms=now_ms,
                        request_id=fire_request_id(name, slot),
                        name=name,
                        slot_ms=slot,
                    )
                )
        self._next = cache
        return fires

    async def fire_due(self) -> int:
        """One pass: propose every due fire; the number of jobs made."""
        fires = self.due(self.node.now_ms())
        if not fires:
            return 0
        results = await self.node.submit_many(fires, self.submit_timeout_ms)
        made = 0
        for cmd, result in zip(fires, results, strict=True):
            made += self._count(cmd, result)
        return made

    def _count(self, cmd: Fire, result: Result) -> int:
        if isinstance(result, Fired):
            if result.job_id:
                self.fired += 1
                return 1
            self.skipped += 1
        elif isinstance(result, Refusal):
            # stale_slot: another leader (or an earlier pass) fired it; paused or deleted
            # meanwhile: nothing to do. Each is the rule working, not an error.
            logger.debug("fire %s@%d refused: %s", cmd.name, cmd.slot_ms, result.message)
        return 0
