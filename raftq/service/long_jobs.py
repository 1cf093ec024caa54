"""The heartbeat of a long job, written once (``Service`` inherits it): ``progress`` and
``checkpoint`` (any JSON value, or bytes; at most ``MAX_PROGRESS_BYTES`` each once encoded,
413 beyond) ride on the heartbeat, and its answer says whether the job was cancelled
(``cancel_requested``: the worker should stop). ``null`` or absent leaves the job's value as
it is. A heartbeat with either field needs log version 3 (409 ``version_not_enabled`` before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raftq.core import Extended, Heartbeat
from raftq.core.limits import MAX_LEASE_MS, MAX_PROGRESS_BYTES
from raftq.raft.api import NodeAPI
from raftq.service.fields import Fields
from raftq.service.values import Format, pack_value

if TYPE_CHECKING:
    from raftq.service.operations import Op

__all__ = ["LongJobOps"]


class LongJobOps:
    """The heartbeat of ``Service`` (``node`` is the service's)."""

    node: NodeAPI

    def heartbeat(self, job_id: int, args: Fields, fmt: Format = "msgpack") -> Op:
        """``{token, lease_ms?, progress?, checkpoint?}``; answers ``{id, lease_expires_ms,
        cancel_requested}``."""
        from raftq.service.operations import Op, _expect  # noqa: PLC0415 - cycle

        token = args.req_int("token")
        lease_ms = args.opt_int("lease_ms", 1, MAX_LEASE_MS)
        progress, checkpoint = (_value(args, name, fmt) for name in ("progress", "checkpoint"))
        args.done()

        async def run(rid: str | None) -> dict[str, Any]:
            await self._require_job(job_id)  # type: ignore[attr-defined]
            cmd = Heartbeat(
                now_ms=self.node.now_ms(),
                request_id=rid,
                job_id=job_id,
                token=token,
                lease_ms=lease_ms,
                progress=progress,
                checkpoint=checkpoint,
            )
            result = _expect(Extended, await self.submit(cmd))  # type: ignore[attr-defined]
            return {
                "id": job_id,
                "lease_expires_ms": result.lease_expires_ms,
                "cancel_requested": result.cancel_requested,
            }

        return Op(run)


def _value(args: Fields, name: str, fmt: Format) -> bytes | None:
    value = args.raw(name)
    return None if value is None else pack_value(value, fmt, name, MAX_PROGRESS_BYTES)
