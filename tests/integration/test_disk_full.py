"""A node whose disk fills up stops itself, and no acknowledged job is lost (real fault).

Each node's data dir is its own small tmpfs, mounted by the test (root). While producers and
workers run, the disk of one node (a follower, or the leader) is filled with a filler file.
Bug fixed: the node used to carry on after a failed journal write (PySyncObj's tick thread
logs the error), acknowledging entries its disk did not hold, or, as the leader, counting
appends it had dropped. Now it must exit 74 with the one-line reason in its log; the other
two keep serving (a new leader if it was the leader); every acknowledged enqueue is still
there; once the filler is deleted and the node restarted, it catches up and every node
reports the same digest.
"""

from __future__ import annotations

import asyncio
import errno
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftq.client import Client
from tests.integration.cluster import Cluster
from tests.integration.load import Load, check_ledger

pytestmark = pytest.mark.slow

READY_S = 90.0
PROGRESS_S = 60.0
STOP_S = 60.0  # a full disk must stop the node within this (it writes every few ms)
DISK = "32m"  # each node's tmpfs: far more than the test writes, until it is filled
REASON = re.compile(
    r"raftq: stopping: (journal|term/vote file) write failed on \S+: \[Errno 28\] No space "
    r"left on device; free space on that disk and restart the node \(nothing acknowledged "
    r"was lost; exit 74\)"
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A 3-node cluster, each node's data dir on its own tmpfs (unmounted at teardown)."""
    c = Cluster.generate(tmp_path, secret=f"disk-full-{uuid.uuid4().hex}")
    mounted: list[Path] = []
    try:
        for nid in c.ids:
            data = tmp_path / "data" / nid
            data.mkdir(parents=True)
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(data)], check=True
            )
            mounted.append(data)
        with c:
            c.wait_ready(READY_S)
            yield c
    finally:
        for data in mounted:
            subprocess.run(["umount", "-l", str(data)], check=False)


def _fill(data: Path) -> Path:
    """Fill the file system of ``data`` to the last byte; returns the filler."""
    filler = data / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        while True:  # and the last partial chunk's worth
            try:
                f.write(b"\0" * 512)
            except OSError:
                break
    return filler


def _wait_exit(cluster: Cluster, nid: str) -> int:
    proc = cluster.procs[nid]
    deadline = time.monotonic() + STOP_S
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{nid} kept running on a full disk for {STOP_S}s; log:\n"
                + cluster.log_tail(nid, 30)
            )
        time.sleep(0.1)
    return int(proc.returncode)


def _apis(cluster: Cluster, ids: list[str]) -> list[str]:
    return [cluster.api[n] for n in ids]


@pytest.mark.timeout(420)
@pytest.mark.parametrize("role", ["follower", "leader"])
def test_bug_fixed_a_full_disk_stops_the_node_and_loses_nothing(
    cluster: Cluster, role: str
) -> None:
    leader = cluster.leader(READY_S)
    victim = leader if role == "leader" else next(n for n in cluster.ids if n != leader)
    others = [n for n in cluster.ids if n != victim]
    data = cluster.root / "data" / victim

    async def run() -> Load:
        async with Load(_apis(cluster, cluster.ids), seed=7) as load:
            await load.wait_acked(50, PROGRESS_S)
            filler = await asyncio.to_thread(_fill, data)
            code = await asyncio.to_thread(_wait_exit, cluster, victim)
            log = (cluster.root / f"{victim}.log").read_text(errors="replace")
            assert code == 74, f"{victim} exited {code}; log:\n{cluster.log_tail(victim)}"
            reason = REASON.search(log)
            assert reason, f"no one-line reason in the log:\n{log[-3000:]}"
            print(f"{victim} ({role}) exited 74: {reason.group(0)}")
            # The other two keep serving (after electing a new leader if needed).
            await load.wait_acked(100, PROGRESS_S)
        filler.unlink()  # the operator frees space
        return load

    load = asyncio.run(run())
    ledger = load.ledger
    # Every acknowledged enqueue is on the two nodes still running.
    new_leader = cluster.leader(READY_S, among=others)
    assert new_leader in others

    async def check(ids: list[str]) -> None:
        async with Client(_apis(cluster, ids), retry_ms=60_000) as client:
            await client.enqueue("barrier", None)
        await asyncio.to_thread(cluster.wait_converged, READY_S)
        await check_ledger(ledger, _apis(cluster, ids))

    asyncio.run(check(others))
    # Restarted once the disk has room: it catches up, the same digest everywhere.
    cluster.start(victim)
    cluster.wait_ready(READY_S)
    asyncio.run(check(cluster.ids))
    assert all(cluster.alive(n) for n in cluster.ids)
    assert len(ledger.acked) > 150, "the load hardly ran"
    print(f"acked {len(ledger.acked)} enqueues ({ledger.unknown} unknown), victim {victim}")
