"""``hand_back``: a job the worker will not start is released; a cluster that has not enabled
log version 4 refuses that (409 ``version_not_enabled``), a node of an older raftq has no such
route (404 ``no_route``), and the job is nacked for immediate redelivery instead. Any other
refusal is the caller's to handle."""

from __future__ import annotations

from typing import Any

import pytest

from raftq.errors import Rejected
from raftq.worker.source import hand_back


class Source:
    def __init__(self, refusal: Rejected | None) -> None:
        self.refusal = refusal
        self.calls: list[tuple[Any, ...]] = []

    async def release(self, job_id: int, token: int) -> dict[str, Any]:
        self.calls.append(("release", job_id, token))
        if self.refusal is not None:
            raise self.refusal
        return {"id": job_id, "state": "queued"}

    async def nack(
        self, job_id: int, token: int, *, error: str | None = None, retry_in_ms: int | None = None
    ) -> dict[str, Any]:
        self.calls.append(("nack", job_id, token, error, retry_in_ms))
        return {"id": job_id, "state": "queued", "run_at_ms": 5}


async def test_released_where_the_cluster_can() -> None:
    src = Source(None)
    assert await hand_back(src, 7, 3, "why") == {"id": 7, "state": "queued"}
    assert src.calls == [("release", 7, 3)]


@pytest.mark.parametrize(
    "refusal",
    [
        Rejected("version_not_enabled", "needs log version 4", 409),  # not enabled yet
        Rejected("no_route", "no route POST /v1/jobs/7/release", 404),  # an older node
    ],
)
async def test_nacked_at_once_where_the_cluster_cannot_release(refusal: Rejected) -> None:
    src = Source(refusal)
    assert (await hand_back(src, 7, 3, "why"))["run_at_ms"] == 5
    assert src.calls == [("release", 7, 3), ("nack", 7, 3, "why", 0)]


async def test_another_refusal_is_not_a_reason_to_nack() -> None:
    src = Source(Rejected("stale_token", "not this lease", 409))
    with pytest.raises(Rejected, match="not this lease"):
        await hand_back(src, 7, 3, "why")
    assert src.calls == [("release", 7, 3)]
