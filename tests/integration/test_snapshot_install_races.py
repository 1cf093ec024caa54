"""Snapshot installs that meet logs which moved past them, with real `raftq serve` processes
(finding 2 of the safety issue "an acknowledged job is never lost").

Every node compacts about once a second, each in its own slot (PySyncObj's split), so the
nodes' snapshots sit at different indexes. Under a load of producers and workers, one node at
a time (a follower mostly, sometimes the leader) is stopped with SIGSTOP while the others go
on and compact past it, then continued: the leader sends it a snapshot, and the answers the
stopped node sends for the backlog of messages it then reads are stale ("reset" to its old log
end), so the leader may send it a snapshot again after its own compaction went past it.

Checked: no node ever loads a snapshot at or below an entry it had applied (read from each
node's log, in order: a snapshot it wrote or loaded up to entry M means it had applied M),
every acknowledged job is there and the replicas converge to the same digest.

``RAFTQ_INSTALL_RACE_ROUNDS`` (default 8) sets the number of stops, ``RAFTQ_INSTALL_RACE_SEED``
replays one schedule (the test prints the seed it used).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import uuid
from pathlib import Path

import pytest

from raftq.client import Client
from tests.integration.cluster import Cluster
from tests.integration.load import Load, check_ledger

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("RAFTQ_INSTALL_RACE_ROUNDS", "8"))
COMPACT = "log_compaction_min_entries = 30\nlog_compaction_min_time_s = 1"
READY_S = 90.0
PROGRESS_S = 60.0

_WRITING = re.compile(r"snapshot: writing entries up to (\d+) \(pid \d+\)")
_WRITTEN = "snapshot: written in"
_LOADED = re.compile(r"snapshot: loaded entries up to (\d+)")
_IGNORED = "snapshot from the leader up to entry"


def _rollbacks(log: str) -> tuple[list[str], int, int]:
    """The snapshots this node loaded at or below an entry it had already applied (the
    process runs from the start of its log to its end: no restart in this test), the number
    of loads, and the number of snapshots it ignored as older than its commit index. A
    snapshot it wrote up to entry M, or loaded up to M, means it had applied M."""
    found: list[str] = []
    applied = 0  # the highest entry known applied here, from this node's own log lines
    writing: int | None = None
    loads = ignored = 0
    for line in log.splitlines():
        if m := _WRITING.search(line):
            writing = int(m.group(1))
        elif _WRITTEN in line and writing is not None:
            applied, writing = max(applied, writing), None
        elif m := _LOADED.search(line):
            loads += 1
            if int(m.group(1)) <= applied:
                found.append(f"loaded a snapshot up to {m.group(1)}, had applied {applied}+")
            applied = max(applied, int(m.group(1)))
        elif _IGNORED in line:
            ignored += 1
    return found, loads, ignored


@pytest.mark.timeout(300 + 40 * ROUNDS)
def test_installs_that_meet_logs_moved_past_them_lose_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("RAFTQ_INSTALL_RACE_SEED", random.randrange(2**32)))
    print(f"RAFTQ_INSTALL_RACE_SEED={seed}")
    rng = random.Random(seed)
    cluster = Cluster.generate(tmp_path, extra_raft=COMPACT, secret=f"races-{uuid.uuid4().hex}")
    apis = [cluster.api[n] for n in cluster.ids]
    with cluster:
        cluster.wait_ready(READY_S)

        async def run() -> None:
            async with Load(apis, seed=rng.randrange(2**32), producers=6) as load:
                await load.wait_acked(100, PROGRESS_S)
                for _ in range(ROUNDS):
                    leader = await asyncio.to_thread(cluster.leader, READY_S)
                    followers = [n for n in cluster.ids if n != leader]
                    victim = leader if rng.random() < 0.25 else rng.choice(followers)
                    cluster.kill(victim, signal.SIGSTOP)
                    await asyncio.sleep(rng.uniform(1.5, 4.0))  # the others compact past it
                    cluster.kill(victim, signal.SIGCONT)
                    await asyncio.sleep(rng.uniform(0.5, 2.0))
                    await asyncio.to_thread(cluster.wait_ready, READY_S)
                    await load.wait_acked(30, PROGRESS_S)
            dead = [n for n in cluster.ids if not cluster.alive(n)]
            assert not dead, "exited: " + "".join(f"\n--- {n}\n{cluster.log_tail(n)}" for n in dead)
            await asyncio.to_thread(cluster.wait_ready, READY_S)
            async with Client(apis, retry_ms=60_000) as client:
                await client.enqueue("barrier", None)
            await asyncio.to_thread(cluster.wait_converged, READY_S)
            ledger = load.ledger
            print(f"acked {len(ledger.acked)} enqueues, completed {len(ledger.completed)}")
            await check_ledger(ledger, apis)
            assert len(ledger.acked) > 200, "the load hardly ran"

        asyncio.run(run())

    problems: list[str] = []
    for nid in cluster.ids:
        log = (cluster.root / f"{nid}.log").read_text(errors="replace")
        found, loads, ignored = _rollbacks(log)
        print(f"{nid}: {loads} snapshots loaded, {ignored} ignored as older than its commit")
        problems += [f"{nid}: {p}" for p in found]
    assert not problems, "\n".join(problems)
    assert list((cluster.root / "data").glob("*/raft.dump")), "compaction did not run"
