"""Durability under crashes (issue 4 §4): kill -9 at random moments, all nodes at once, and a
node restarted on an older copy of its data dir, all under a load of producers and workers.

test_faults.py covers one leader kill and all-nodes kills with producers only, each on a fresh
cluster. Here the load also claims, acks and nacks (so acknowledged *completions* must
survive too, and at most once), every request goes to a random node, the crashes repeat on
one cluster whose state keeps growing, and some runs compact the log every few hundred
entries so snapshots are written, loaded and shipped while nodes die.

After the faults: heal (every node running), one write through the leader, wait until every
node reports the same applied index and digest, then check the ledger of what clients were
told (``tests/integration/load.py``): every acknowledged enqueue still exists, no job was
completed with two different tokens, every acknowledged ack is still ``succeeded``.

``RAFTQ_DURABILITY_ITERATIONS`` (default 5) sets the number of random kills per run, and
``RAFTQ_DURABILITY_ROUNDS`` (default 3) the all-nodes rounds, for longer soak runs;
``RAFTQ_DURABILITY_SEED`` replays one schedule (each test prints the seed it used).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest

from raftq.client import Client
from raftq.raft.datadir import check_journal
from raftq.raft.snapshot_file import verify_file
from tests.integration.cluster import Cluster
from tests.integration.load import Load, check_ledger

pytestmark = pytest.mark.slow

ITERATIONS = int(os.environ.get("RAFTQ_DURABILITY_ITERATIONS", "5"))
ROUNDS = int(os.environ.get("RAFTQ_DURABILITY_ROUNDS", "3"))

# Compact every 200 entries (or 2 s): with the load below, several snapshots per iteration.
COMPACT = "log_compaction_min_entries = 200\nlog_compaction_min_time_s = 2"
COMPACT_EACH_SECOND = "log_compaction_min_entries = 200\nlog_compaction_min_time_s = 1"

# Generous: a loaded 2-core machine running other tests must not fail these on time alone.
READY_S = 90.0
PROGRESS_S = 60.0
# pytest-timeout's 300 s is too short for a soak run: scale it with the number of faults (an
# iteration takes 5-12 s on a loaded 2-core machine).
KILL_TIMEOUT_S = 240 + 40 * ITERATIONS
ROUNDS_TIMEOUT_S = 240 + 60 * ROUNDS


def _rng() -> random.Random:
    seed = int(os.environ.get("RAFTQ_DURABILITY_SEED", random.randrange(2**32)))
    print(f"RAFTQ_DURABILITY_SEED={seed}")
    return random.Random(seed)


def _generate(root: Path, extra_raft: str) -> Cluster:
    # A secret of its own: another test's cluster on this machine that happened to get one of
    # these ports (free_ports can race) cannot join it as a peer.
    return Cluster.generate(root, extra_raft=extra_raft, secret=f"durability-{uuid.uuid4().hex}")


def _apis(cluster: Cluster) -> list[str]:
    return [cluster.api[n] for n in cluster.ids]


async def _settle_and_check(cluster: Cluster, load: Load) -> None:
    """Every node running; one write through the leader (so the leader has applied all it
    acknowledged before); same digest everywhere; then the ledger's checks."""
    # wait_ready and wait_converged look at live nodes only: a node that died on its own (a
    # fail-stop on a corrupt state, a refused start) must fail the test, not shrink it.
    dead = [nid for nid in cluster.ids if not cluster.alive(nid)]
    assert not dead, "nodes exited: " + "".join(f"\n--- {n}\n{cluster.log_tail(n)}" for n in dead)
    await asyncio.to_thread(cluster.wait_ready, READY_S)
    async with Client(_apis(cluster), retry_ms=60_000) as client:
        await client.enqueue("barrier", None)
    await asyncio.to_thread(cluster.wait_converged, READY_S)
    assert all(cluster.alive(nid) for nid in cluster.ids), "a node exited while converging"
    ledger = load.ledger
    print(
        f"acked {len(ledger.acked)} enqueues ({ledger.unknown} unknown), claimed "
        f"{ledger.claimed}, completed {len(ledger.completed)}, nacked {ledger.nacked}, "
        f"stale {ledger.stale}"
    )
    await check_ledger(ledger, _apis(cluster))
    assert len(ledger.acked) > 200, "the load hardly ran"
    assert ledger.completed, "no job was completed: the workers did not run"


def _assert_compacted(cluster: Cluster) -> None:
    dumps = list((cluster.root / "data").glob("*/raft.dump"))
    assert dumps, "no snapshot was written: compaction did not run"


@pytest.mark.timeout(KILL_TIMEOUT_S)
@pytest.mark.parametrize("compact", [False, True], ids=["journal", "compaction"])
def test_random_kill9_under_load_then_restart(tmp_path: Path, compact: bool) -> None:
    """kill -9 one node at a random moment (the leader about 40% of the time), leave it down
    for a random while, restart it; repeat while producers and workers run."""
    rng = _rng()
    with _generate(tmp_path, COMPACT if compact else "") as cluster:
        cluster.wait_ready()

        async def run() -> None:
            async with Load(_apis(cluster), seed=rng.randrange(2**32)) as load:
                await load.wait_acked(50, PROGRESS_S)
                for _ in range(ITERATIONS):
                    leader = await asyncio.to_thread(cluster.leader, READY_S)
                    others = [n for n in cluster.ids if n != leader]
                    victim = leader if rng.random() < 0.4 else rng.choice(others)
                    await asyncio.sleep(rng.uniform(0.1, 1.5))
                    cluster.kill(victim)
                    await asyncio.sleep(rng.uniform(0.0, 1.5))
                    cluster.start(victim)
                    t0 = time.monotonic()
                    await asyncio.to_thread(cluster.wait_ready, READY_S)
                    t1 = time.monotonic()
                    # The cluster takes writes again before the next crash.
                    await load.wait_acked(20, PROGRESS_S)
                    print(
                        f"killed {victim} ({'leader' if victim == leader else 'follower'}): "
                        f"ready after {t1 - t0:.1f}s, writes after {time.monotonic() - t1:.1f}s"
                    )
            await _settle_and_check(cluster, load)
            if compact:
                _assert_compacted(cluster)

        asyncio.run(run())


@pytest.mark.timeout(ROUNDS_TIMEOUT_S)
def test_kill9_all_nodes_under_load_rounds(tmp_path: Path) -> None:
    """kill -9 every node at once under load, restart them all, carry on; several rounds on
    one cluster with compaction, so later rounds restart from snapshot + journal."""
    rng = _rng()
    with _generate(tmp_path, COMPACT) as cluster:
        cluster.wait_ready()

        async def run() -> None:
            async with Load(_apis(cluster), seed=rng.randrange(2**32)) as load:
                for _ in range(ROUNDS):
                    await load.wait_acked(60, PROGRESS_S)
                    await asyncio.sleep(rng.uniform(0.0, 2.0))
                    _kill_all(cluster)
                    await asyncio.sleep(rng.uniform(0.0, 1.0))
                    cluster.start()
                    await asyncio.to_thread(cluster.wait_ready, READY_S)
                await load.wait_acked(50, PROGRESS_S)
            await _settle_and_check(cluster, load)
            _assert_compacted(cluster)

        asyncio.run(run())


@pytest.mark.timeout(ROUNDS_TIMEOUT_S + 60 * ROUNDS)
def test_kill9_all_nodes_the_moment_a_snapshot_lands(tmp_path: Path) -> None:
    """Bug fixed (raftq/raft/pysyncobj/journal.py, "A snapshot at start and entries of older
    terms"; it failed the rounds test above once in CI: a job id handed out twice). A node puts
    its new snapshot in place and truncates its journal up to it a tick later; kill -9 in between
    leaves a journal that starts before the snapshot, and at the next start the node dropped
    the journal entries after the snapshot that were older than its current term,
    acknowledged ones included. On the code before the fix this test failed in 4 of 6 runs
    (that PySyncObj line); tests/raft/test_snapshot_hooks.py shows the bug every time.

    Each round kills every node the moment one of them renames a new snapshot into place,
    until a node was caught in that window six times (its journal starts before its
    snapshot's previous entry). A node that dropped committed entries at start says so
    (PySyncObj: "raftCommitIndex (c) exceeds journal end (e) after loading dump")."""
    rng = _rng()
    caught: list[str] = []
    with _generate(tmp_path, COMPACT_EACH_SECOND) as cluster:
        cluster.wait_ready()

        async def run() -> None:
            async with Load(_apis(cluster), seed=rng.randrange(2**32)) as load:
                await load.wait_acked(60, PROGRESS_S)
                for _ in range(6 * ROUNDS):
                    # The first snapshot after a start: a second in, while the entries of the
                    # term before the crash may not all be applied yet (after the snapshot).
                    await asyncio.to_thread(_kill_all_when_a_snapshot_lands, cluster)
                    caught.extend(_untruncated(cluster))
                    cluster.start()
                    await asyncio.to_thread(cluster.wait_ready, READY_S)
                    if len(caught) >= 6:
                        break
                await load.wait_acked(200, PROGRESS_S)  # the rounds are short
            await _settle_and_check(cluster, load)

        asyncio.run(run())
        print(f"killed inside the window: {caught}")
        assert len(caught) >= 6, "too few rounds killed a node between its snapshot and truncation"
        cut = [
            f"{nid}: {line}"
            for nid in cluster.ids
            for line in (tmp_path / f"{nid}.log").read_text(errors="replace").splitlines()
            if "exceeds journal end" in line
        ]
        assert not cut, "\n".join(cut)


def _kill_all_when_a_snapshot_lands(cluster: Cluster, timeout_s: float = PROGRESS_S) -> None:
    """SIGKILL every node as soon as one node's ``raft.dump`` is replaced (the snapshot
    writer's rename), polling every half millisecond."""
    dumps = [cluster.root / "data" / nid / "raft.dump" for nid in cluster.ids]

    def identity(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    before = [identity(p) for p in dumps]
    deadline = time.monotonic() + timeout_s
    while all(identity(p) == b for p, b in zip(dumps, before, strict=True)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no snapshot was written within {timeout_s}s")
        time.sleep(0.0005)
    _kill_all(cluster)


def _kill_all(cluster: Cluster) -> None:
    for nid in cluster.ids:  # as close to "at once" as signals allow
        cluster.procs[nid].send_signal(signal.SIGKILL)
    for nid in cluster.ids:
        cluster.procs[nid].wait(10)


def _untruncated(cluster: Cluster) -> list[str]:
    """The nodes whose journal starts before their snapshot's previous entry: killed between
    writing a snapshot and truncating the journal up to it (or after installing a leader's
    snapshot over a longer log, which then kept its entries: the same load at start)."""
    found = []
    for nid in cluster.ids:
        data = cluster.root / "data" / nid
        if not (data / "raft.dump").exists():
            continue
        prev_idx = verify_file(str(data / "raft.dump")).header.prev[1]
        first = check_journal(str(data / "raft.journal")).first_idx
        if first is not None and first < prev_idx:
            found.append(nid)
    return found


def _copy_data_dir(cluster: Cluster, nid: str, dest: Path) -> None:
    """A crash-consistent copy of a running node's data dir: frozen with SIGSTOP while it is
    copied, so it is exactly what a kill -9 at that moment would have left."""
    cluster.kill(nid, signal.SIGSTOP)
    try:
        shutil.copytree(cluster.root / "data" / nid, dest)
    finally:
        cluster.kill(nid, signal.SIGCONT)


@pytest.mark.parametrize(
    ("role", "compact"),
    [("follower", False), ("leader", True)],
    ids=["follower", "leader-compaction"],
)
def test_node_restarted_on_older_copy_of_its_data(tmp_path: Path, role: str, compact: bool) -> None:
    """A minority loses writes it had acknowledged: copy node X's data dir, keep loading (X
    acknowledges more entries to the leader), kill -9 X, put the old copy back, restart.
    The other two nodes still hold every committed entry, so nothing acknowledged is lost and
    X catches up (from the journal, or from a snapshot when the leader compacted past it)."""
    rng = _rng()
    with _generate(tmp_path, COMPACT if compact else "") as cluster:
        cluster.wait_ready()

        async def run() -> None:
            async with Load(_apis(cluster), seed=rng.randrange(2**32)) as load:
                await load.wait_acked(100, PROGRESS_S)
                leader = await asyncio.to_thread(cluster.leader, READY_S)
                x = (
                    leader
                    if role == "leader"
                    else rng.choice([n for n in cluster.ids if n != leader])
                )
                old = tmp_path / f"{x}.old"
                _copy_data_dir(cluster, x, old)
                applied_then = await asyncio.to_thread(_applied, cluster, x)
                # X takes part in committing writes the copy does not have.
                await load.wait_acked(150, PROGRESS_S)
                await asyncio.to_thread(_wait_applied_past, cluster, x, applied_then + 100)
                cluster.kill(x)
                shutil.rmtree(cluster.root / "data" / x)
                shutil.copytree(old, cluster.root / "data" / x)
                cluster.start(x)
                await asyncio.to_thread(cluster.wait_ready, READY_S)
                await load.wait_acked(50, PROGRESS_S)
            await _settle_and_check(cluster, load)
            if compact:
                _assert_compacted(cluster)

        asyncio.run(run())


def _applied(cluster: Cluster, nid: str) -> int:
    view = cluster.view(nid)
    assert view is not None, f"{nid} does not answer"
    return int(view["self"]["applied_index"])


def _wait_applied_past(cluster: Cluster, nid: str, index: int) -> None:
    end = time.monotonic() + PROGRESS_S
    while time.monotonic() < end:
        view = cluster.view(nid)
        if view is not None and view["self"]["applied_index"] >= index:
            return
        time.sleep(0.05)
    raise AssertionError(f"{nid} did not apply up to {index} within {PROGRESS_S}s")


def test_bug_fixed_a_follower_never_forgets_committed_entries(tmp_path: Path) -> None:
    """Bug fixed (raftq/raft/pysyncobj/journal.py, "Never forgetting an acknowledged entry"): a
    follower that pauses briefly under load (here SIGSTOP for half a second, like a long GC pause
    or a starved VM) then gets the leader's backlog and re-sends; PySyncObj's follower cut its own
    log below entries it had acknowledged and re-installed an older snapshot over a longer log,
    over and over (before the fix: 15 to 116 times per run of the restore test, in 8 of 8
    runs). PySyncObj says so when it happens: "raftCommitIndex (c) exceeds journal end (e)
    after loading dump". Nothing here loses data, so nothing can excuse a log that ends below
    its own commit index."""
    with _generate(tmp_path, COMPACT) as cluster:
        cluster.wait_ready()

        async def run() -> None:
            async with Load(_apis(cluster), seed=1) as load:
                await load.wait_acked(100, PROGRESS_S)
                for _ in range(3):
                    leader = await asyncio.to_thread(cluster.leader, READY_S)
                    follower = next(n for n in cluster.ids if n != leader)
                    cluster.kill(follower, signal.SIGSTOP)
                    await asyncio.sleep(0.5)  # the fault's duration, not a wait
                    cluster.kill(follower, signal.SIGCONT)
                    await load.wait_acked(100, PROGRESS_S)
            await _settle_and_check(cluster, load)
            _assert_compacted(cluster)

        asyncio.run(run())
        shrunk = [
            line
            for nid in cluster.ids
            for line in (tmp_path / f"{nid}.log").read_text(errors="replace").splitlines()
            if "exceeds journal end" in line
        ]
        assert not shrunk, "a node's log ended below its commit index:\n" + "\n".join(shrunk[:5])
