"""A rolling restart on three real ``raftq serve`` processes under load: every node in turn,
followers first, is drained (``raftq node drain``), exits 0, and is started again; producers
and workers talk to random nodes throughout. Afterwards no acknowledged enqueue is lost, no
job was completed twice, every node has the same digest, and the term went up by exactly one:
the only leader change is the drained leader's own handover."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.integration.cluster import Cluster, http_json
from tests.integration.load import Load, check_ledger


def _terms(c: Cluster) -> list[int]:
    views = [c.view(nid) for nid in c.ids if c.alive(nid)]
    return [v["self"]["term"] for v in views if v is not None]


def _wait_ready(c: Cluster, nid: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status, _ = http_json(c.url(nid, "/readyz"), timeout=2)
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"{nid} not ready after a restart; log:\n{c.log_tail(nid)}")


async def test_rolling_restart_under_load_loses_nothing(tmp_path: Path) -> None:
    with Cluster.generate(tmp_path) as c:
        leader = await asyncio.to_thread(c.wait_ready)
        term = max(await asyncio.to_thread(_terms, c))
        apis = [c.api[nid] for nid in c.ids]
        steps: list[tuple[str, list[int]]] = []  # each node restarted: the terms after it
        async with Load(apis, producers=3, workers=2, pause_s=0.02, seed=19) as load:
            await load.wait_acked(20, 30)
            for nid in [*(n for n in c.ids if n != leader), leader]:
                drained = await asyncio.to_thread(c.drain, nid)
                assert drained.returncode == 0, (drained.stdout, drained.stderr, c.log_tail(nid))
                assert await asyncio.to_thread(c.procs[nid].wait, 30) == 0
                c.start(nid)
                await asyncio.to_thread(_wait_ready, c, nid)
                await load.wait_acked(10, 30)  # writes go on after each step
                steps.append((nid, await asyncio.to_thread(_terms, c)))
        # A write through the leader, then every node has applied everything acknowledged.
        new = await asyncio.to_thread(c.leader)
        assert new != leader
        status, _ = await asyncio.to_thread(
            http_json, c.url(new, "/v1/queues/after/jobs"), {"payload": 1}
        )
        assert status == 201
        await asyncio.to_thread(c.wait_converged)
        await check_ledger(load.ledger, apis)
        assert len(load.ledger.acked) >= 50
        assert set(await asyncio.to_thread(_terms, c)) == {term + 1}, (leader, term, steps)
