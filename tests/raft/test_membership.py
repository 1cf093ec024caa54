"""The membership a node starts with is the replicated one, never its TOML's
(raftq/raft/pysyncobj/membership.py): in-process nodes over the in-memory transport, and the
data-dir rules on real files."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import pickle
import shutil
import threading
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pysyncobj.node import TCPNode

from raftq.config import ClusterConfig, parse_config
from raftq.core import Enqueue, Enqueued, Machine, NewJob, write_snapshot
from raftq.errors import NotLeader
from raftq.node.join import JoinError, check_cluster_id
from raftq.raft.datadir import DUMP_FILE, JOURNAL_FILE, MEMBERS_FILE
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.pysyncobj.engine import PySyncObjEngine
from raftq.raft.pysyncobj.journal import DurableFileJournal
from raftq.raft.pysyncobj.membership import (
    RemovedNodeError,
    derive_cluster_id,
    membership_change,
    start_membership,
    write_members,
)
from raftq.raft.pysyncobj.memory_transport import MemoryNetwork
from raftq.raft.snapshot_file import RaftHeader, write_file
from tests.integration.cluster import free_ports
from tests.support.memory_cluster import MemoryCluster, memory_cluster, until


def _grown(config: ClusterConfig, root: Path, extra: int) -> ClusterConfig:
    """``config`` with ``extra`` more nodes: what an operator gets by editing the TOML."""
    ports = free_ports(2 * extra)
    lines = ["[cluster]", 'name = "embed"', 'data_dir = "data"', ""]
    specs = [(n.id, n.raft, n.api) for n in config.nodes]
    n = len(specs)
    specs += [
        (f"n{n + i + 1}", f"127.0.0.1:{ports[i]}", f"127.0.0.1:{ports[extra + i]}")
        for i in range(extra)
    ]
    for node_id, raft, api in specs:
        lines += ["[[nodes]]", f'id = "{node_id}"', f'raft = "{raft}"', f'api = "{api}"', ""]
    return parse_config("\n".join(lines), root)


async def _enqueue(node: RaftNode, payload: bytes) -> int:
    result = await node.submit(
        Enqueue(now_ms=node.now_ms(), queue="q", jobs=(NewJob(payload=payload),))
    )
    assert isinstance(result, Enqueued)
    return result.ids[0]


async def test_a_node_restarted_with_a_grown_toml_keeps_the_cluster_s_three_voters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 19's failure, at its mechanism: n1 restarted with a five-node TOML, next to two
    new nodes started with it, while n2 and n3 are down. Counting five voters, n1 got the
    votes of the two empty nodes and led a majority the other two never heard of (two
    leaders at once, acknowledged jobs lost). Keeping the persisted three voters, n1 cannot
    be elected without n2 or n3."""
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        await _enqueue(leader, b"acked")
        config = cluster.config
    grown = _grown(config, tmp_path, 2)
    caplog.set_level(logging.WARNING, logger="raftq.raft.pysyncobj.engine")
    async with _running(grown, ["n1", "n4", "n5"]) as rolled:
        n1 = _engine(rolled.nodes["n1"])
        assert n1.members() == tuple(sorted(n.raft for n in config.nodes))
        assert n1.membership_mismatch() is not None
        assert grown.node("n4").raft in (n1.membership_mismatch() or "")
        warnings_ = [r.getMessage() for r in caplog.records if "differ" in r.getMessage()]
        assert len(warnings_) == 1 and grown.node("n5").raft in warnings_[0]
        # Several election timeouts (election_max_ms 1400 by default): nobody may lead.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * config.raft.election_max_ms / 1000
        while loop.time() < deadline:
            assert not rolled.nodes["n1"].is_leader(), "n1 led with the votes of non-members"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _running(
    config: ClusterConfig, ids: list[str] | None = None
) -> AsyncIterator[MemoryCluster]:
    """Start the nodes ``ids`` (default all) of ``config`` on a new in-memory network."""
    network = MemoryNetwork()
    transport = network.transport_class()
    nodes = {
        i: RaftNode(config, new_pysyncobj_engine(config, i, transport_class=transport))
        for i in (ids or [n.id for n in config.nodes])
    }
    started: list[RaftNode] = []
    try:
        with warnings.catch_warnings():
            # PySyncObj's MetaStorer.getMeta reads the term/vote file of a restarted node
            # without closing it (see tests/raft/test_snapshot_hooks.py): collected here.
            warnings.simplefilter("ignore", ResourceWarning)
            for node in nodes.values():
                await node.start()
                started.append(node)
            gc.collect()
        yield MemoryCluster(config, network, nodes)
    finally:
        for node in started:
            await node.stop()


def _engine(node: RaftNode) -> PySyncObjEngine:
    assert isinstance(node.engine, PySyncObjEngine)
    return node.engine


async def test_a_change_in_the_journal_outlives_a_restart_with_the_old_toml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PySyncObj replays no membership entry of its journal at start: the data dir's
    membership does. A voter added through the log stays one across a full restart with the
    unchanged TOML, and the node says that its TOML lacks it."""
    async with memory_cluster(tmp_path) as cluster:
        config = cluster.config
        leader = await cluster.leader()
        await _enqueue(leader, b"before")
        spare = _grown(config, tmp_path, 1).node("n4").raft
        await leader.change_member("add", spare)
        await _enqueue(leader, b"after")  # three of four voters are up: still a majority
        voters = tuple(sorted([*(n.raft for n in config.nodes), spare]))
        await until(lambda: all(_engine(n).members() == voters for n in cluster.nodes.values()))
    caplog.set_level(logging.WARNING, logger="raftq.raft.pysyncobj.engine")
    async with _running(config) as again:
        for node in again.nodes.values():
            assert _engine(node).members() == voters
            assert spare in (_engine(node).membership_mismatch() or "")
        leader = await again.leader()
        await leader.change_member("remove", spare)
        await _enqueue(leader, b"shrunk")
        three = tuple(sorted(n.raft for n in config.nodes))
        await until(lambda: all(_engine(n).members() == three for n in again.nodes.values()))
    assert len([r for r in caplog.records if "differ" in r.getMessage()]) == 3
    caplog.clear()
    async with _running(config) as third:
        for node in third.nodes.values():
            assert _engine(node).members() == three
            assert _engine(node).membership_mismatch() is None
        await _enqueue(await third.leader(), b"again")
    assert not [r for r in caplog.records if "differ" in r.getMessage()]


def _journal(path: Path, entries: list[tuple[bytes, int, int]]) -> None:
    journal = DurableFileJournal(str(path), sync=False)
    for entry in entries:
        journal.add(*entry)
    journal._destroy()


def _member_entry(kind: str, address: str) -> bytes:
    return bytes([2]) + pickle.dumps([kind, address, TCPNode(address)])


def test_a_new_dir_takes_the_toml_and_records_it(tmp_path: Path) -> None:
    got = start_membership(str(tmp_path), "h:1", ["h:1", "h:2", "h:3"])
    assert got.members == ("h:1", "h:2", "h:3") and not got.persisted and got.mismatch is None
    assert json.loads((tmp_path / MEMBERS_FILE).read_text()) == {
        "members": ["h:1", "h:2", "h:3"],
        "caught_up": False,
        "cluster_id": "",
        "directory": {},
    }
    assert got.fresh
    again = start_membership(str(tmp_path), "h:1", ["h:1", "h:2", "h:3", "h:4", "h:5"])
    assert again.members == ("h:1", "h:2", "h:3") and again.persisted
    assert again.mismatch == "the config lists h:4, h:5 which the cluster does not have"


def test_the_snapshot_s_cluster_then_the_journal_s_later_changes_win(tmp_path: Path) -> None:
    write_members(str(tmp_path), ["h:1", "h:2", "h:3"])
    header = RaftHeader(
        last=(b"\x00", 11, 2), prev=(b"\x00", 10, 2), cluster=("h:1", "h:2", "h:3", "h:4")
    )
    write_file(str(tmp_path / DUMP_FILE), header, lambda w: write_snapshot(Machine(), w))
    _journal(
        tmp_path / JOURNAL_FILE,
        [
            (_member_entry("add", "h:9"), 10, 2),  # inside the snapshot: already counted
            (b"\x00", 11, 2),
            (_member_entry("rem", "h:2"), 12, 2),
            (_member_entry("add", "h:5"), 13, 3),
        ],
    )
    got = start_membership(str(tmp_path), "h:1", ["h:1", "h:2", "h:3"])
    assert got.members == ("h:1", "h:3", "h:4", "h:5")
    assert got.mismatch == (
        "the config lists h:2 which the cluster does not have; "
        "the cluster has h:4, h:5 which the config does not list"
    )


def test_a_dir_seeded_from_a_backup_of_another_cluster_takes_the_toml(tmp_path: Path) -> None:
    """`raftq data restore` seeds a new cluster: a snapshot (whose cluster is the old one's)
    and no journal. Its nodes start with their TOML and vote (they all hold that snapshot)."""
    header = RaftHeader(last=(b"\x00", 11, 2), prev=(b"\x00", 10, 2), cluster=("o:1", "o:2"))
    write_file(str(tmp_path / DUMP_FILE), header, lambda w: write_snapshot(Machine(), w))
    got = start_membership(str(tmp_path), "h:1", ["h:1", "h:2", "h:3"])
    assert got.members == ("h:1", "h:2", "h:3")
    assert not got.persisted and not got.fresh and got.mismatch is None


def test_a_node_the_cluster_removed_does_not_start(tmp_path: Path) -> None:
    write_members(str(tmp_path), ["h:1", "h:2", "h:3"])
    _journal(tmp_path / JOURNAL_FILE, [(b"\x00", 1, 0), (_member_entry("rem", "h:3"), 2, 1)])
    with pytest.raises(RemovedNodeError, match=r"\(h:3\) was removed from the cluster"):
        start_membership(str(tmp_path), "h:3", ["h:1", "h:2", "h:3"])


def test_the_cluster_id_is_fixed_at_bootstrap_and_checked_at_join(tmp_path: Path) -> None:
    cluster_id = derive_cluster_id("prod", ["h:2", "h:1", "h:3"])
    assert cluster_id == derive_cluster_id("prod", ["h:1", "h:2", "h:3"])  # every node alike
    assert cluster_id != derive_cluster_id("test", ["h:1", "h:2", "h:3"])
    got = start_membership(str(tmp_path), "h:1", ["h:1", "h:2", "h:3"], cluster_id)
    assert got.cluster_id == cluster_id
    again = start_membership(str(tmp_path), "h:1", ["h:1", "h:4"], "another")
    assert again.cluster_id == cluster_id  # kept, whatever the config says now
    check_cluster_id(cluster_id, cluster_id, "h:9")
    with pytest.raises(JoinError, match=r"belongs to cluster .* to cluster another"):
        check_cluster_id(cluster_id, "another", "h:9")


def test_only_membership_entries_are_changes() -> None:
    assert membership_change(_member_entry("add", "h:4")) == ("add", "h:4")
    assert membership_change(b"\x00") is None
    assert membership_change(b"") is None


def _has(node: RaftNode, payload: bytes) -> bool:
    with node.read() as m:
        return any(job.payload == payload for job in m.jobs.values())


async def test_a_wiped_voter_does_not_elect_a_leader_that_lacks_an_acknowledged_job(
    tmp_path: Path,
) -> None:
    """An enqueue acknowledged by n1 (leader) and n3; n2 missed it. n3's disk is wiped and n1
    dies. With an empty log n3 would vote for n2, and n2 would lead without the job: lost
    although acknowledged. A new data dir votes for no candidate with history before it has
    caught up, so n2 cannot lead until n1 is back; then nothing is lost."""
    async with memory_cluster(tmp_path) as cluster:
        config = cluster.config
        leader = await cluster.leader()
        await _enqueue(leader, b"first")
        await until(lambda: all(_has(n, b"first") for n in cluster.nodes.values()))
        lead_id = leader.node_id
        lagging, wiped = [i for i in cluster.nodes if i != lead_id]
        cluster.partition(lagging)
        await _enqueue(leader, b"acked")  # committed on the leader and `wiped` only
    shutil.rmtree(config.node_data_dir(wiped))
    async with _running(config, [lagging, wiped]) as rest:
        assert _engine(rest.nodes[wiped]).syncobj.raftq_vote_hold  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * config.raft.election_max_ms / 1000
        while loop.time() < deadline:
            assert not rest.nodes[lagging].is_leader(), "a leader without the acknowledged job"
            await asyncio.sleep(0.05)
        assert _engine(rest.nodes[wiped]).syncobj.raftq_held_votes > 0  # type: ignore[union-attr]
    async with _running(config) as whole:
        await whole.leader()
        await until(lambda: all(_has(n, b"acked") for n in whole.nodes.values()))
        await until(lambda: not _engine(whole.nodes[wiped]).syncobj.raftq_vote_hold)  # type: ignore[union-attr]
        marker = json.loads((config.node_data_dir(wiped) / MEMBERS_FILE).read_text())
        assert marker["caught_up"] is True


async def test_the_leader_stops_counting_entries_a_wiped_follower_lost(tmp_path: Path) -> None:
    """A follower that lost its disk answers the leader with a log that ends before what it
    had acknowledged: the leader's match index for it goes back (PySyncObj only raises it), so
    that an entry is not counted as stored on a node that no longer has it."""
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        for i in range(5):
            await _enqueue(leader, f"job {i}".encode())
        so = _engine(leader).syncobj
        assert so is not None
        follower = next(i for i in cluster.nodes if i != leader.node_id)
        address = cluster.config.node(follower).raft
        match = so._SyncObj__raftMatchIndex

        def of_follower() -> int:
            return next(v for n, v in list(match.items()) if n.id == address)

        await until(lambda: of_follower() >= so.raftCommitIndex)
        acknowledged = of_follower()
        seen: list[int] = []
        so.addOnTickCallback(lambda: seen.append(of_follower()))  # every tick, in its thread
        node = cluster.nodes[follower]
        await node.stop()
        shutil.rmtree(cluster.config.node_data_dir(follower))
        again = RaftNode(
            cluster.config,
            new_pysyncobj_engine(
                cluster.config, follower, transport_class=cluster.network.transport_class()
            ),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            await again.start()
        try:
            await until(lambda: _has(again, b"job 4"))
            assert min(seen) < acknowledged, (acknowledged, min(seen))
        finally:
            await again.stop()


async def test_a_removed_node_that_keeps_running_does_not_raise_the_term(tmp_path: Path) -> None:
    """PySyncObj has no pre-vote: a removed node that goes on campaigning would depose the
    leader at every higher term it reaches. The members ignore it."""
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        await _enqueue(leader, b"one")
        gone = next(i for i in cluster.nodes if i != leader.node_id)
        await leader.change_member("remove", cluster.config.node(gone).raft)
        stayed = [i for i in cluster.nodes if i != gone]
        await until(lambda: len(_engine(cluster.nodes[stayed[1]]).members()) == 2)
        term = leader.status().term
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * cluster.config.raft.election_max_ms / 1000
        while loop.time() < deadline:  # the removed node times out and campaigns meanwhile
            await asyncio.sleep(0.05)
        assert cluster.nodes[gone].status().term > term  # it did campaign
        assert leader.is_leader() and leader.status().term == term
        await _enqueue(leader, b"two")


async def test_removing_the_leader_of_five_voters_hands_over_and_the_new_leader_removes_it(
    tmp_path: Path,
) -> None:
    """Removing the leader: it hands leadership over and answers ``NotLeader`` naming the new
    leader, which then removes it (what the HTTP edge does on that answer)."""
    async with memory_cluster(tmp_path, 5) as cluster:
        leader = await cluster.leader()
        await _enqueue(leader, b"one")
        gone = leader.node_id
        with pytest.raises(NotLeader) as handed:
            await leader.change_member("remove", cluster.config.node(gone).raft)
        new_id = handed.value.leader
        assert new_id is not None and new_id != gone and new_id in cluster.nodes
        new = cluster.nodes[new_id]
        await new.change_member("remove", cluster.config.node(gone).raft)
        stayed = [i for i in cluster.nodes if i != gone]
        await until(lambda: all(len(_engine(cluster.nodes[i]).members()) == 4 for i in stayed))
        await _enqueue(new, b"two")


async def test_a_leader_just_elected_waits_for_its_followers_before_judging_a_quorum(
    tmp_path: Path,
) -> None:
    """The mechanism under the test above, made certain: two followers stall (their tick
    threads busy) across a handover, so the new leader knows neither's match index when it
    is asked to remove its predecessor. Judged at once that was 409 ``no_quorum`` (two of
    four voters known to be caught up); the change waits for them and is made."""
    async with memory_cluster(tmp_path, 5) as cluster:
        old = await cluster.leader()
        await _enqueue(old, b"one")
        followers = [i for i in cluster.nodes if i != old.node_id]
        target, stalled = followers[0], followers[2:]
        release = threading.Event()

        def stall() -> None:  # tick thread of a stalled follower
            release.wait(5.0)

        for i in stalled:
            so = _engine(cluster.nodes[i]).syncobj
            assert so is not None
            so.addOnTickCallback(stall)
        try:
            assert await old.transfer_leadership(target) == target
            new = cluster.nodes[target]
            asyncio.get_running_loop().call_later(0.5, release.set)
            await new.change_member("remove", cluster.config.node(old.node_id).raft)
        finally:
            release.set()
        await until(lambda: all(len(_engine(cluster.nodes[i]).members()) == 4 for i in followers))
        await _enqueue(new, b"two")


_COMPACT = "[raft]\nlog_compaction_min_entries = 5\nlog_compaction_min_time_s = 1"


async def _add(leader: RaftNode, raft: str, node_id: str, api: str) -> int:
    """Add the voter at ``raft`` with its id and API (what `raftq members add` proposes),
    past the edge's quorum check; the index of the applied membership entry."""
    engine = _engine(leader)
    so = engine.syncobj
    assert so is not None
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()

    def changed(error: object) -> None:  # tick thread, once the entry is applied
        assert error is None, error
        loop.call_soon_threadsafe(done.set_result, so.raftLastApplied)

    engine.change_member("add", raft, changed, node_id=node_id, api=api)
    return await asyncio.wait_for(done, 10)


def _joining_n4(
    cluster: MemoryCluster, leader: RaftNode, root: Path
) -> tuple[ClusterConfig, RaftNode]:
    """The grown config and a node n4 built to join ``cluster`` (``--join``), not started."""
    grown = _grown(cluster.config, root, 1)
    engine = new_pysyncobj_engine(
        grown,
        "n4",
        transport_class=cluster.network.transport_class(),
        join=[(n.raft, n.id, n.api) for n in cluster.config.nodes],
        join_cluster_id=_engine(leader).cluster_id(),
    )
    return grown, RaftNode(grown, engine)


async def test_a_node_caught_up_by_snapshot_knows_the_id_and_api_of_a_runtime_member(
    tmp_path: Path,
) -> None:
    """Issue 19 (jepsen-style membership nemesis, members_disagree): a member added at runtime
    is known by its id and API only from its membership entry. A node that missed the entry
    and caught up by a snapshot knew it by its raft address alone: with it as the leader,
    leader_id() was None there, writes could not be forwarded to it (``api_address``), and
    GET /v1/cluster showed its raft address as its id. The snapshot header carries the
    directory once log version 2 is enabled, and a new cluster enables its own log version as
    its first entry (``PySyncObjEngine._enable_version_of_new_cluster``): before, a fresh
    cluster stayed at log version 1 until `raftq upgrade enable`."""
    async with memory_cluster(tmp_path, extra=_COMPACT) as cluster:
        leader = await cluster.leader()
        behind = next(i for i in cluster.nodes if i != leader.node_id)
        cluster.partition(behind)
        grown, joining = _joining_n4(cluster, leader, tmp_path)
        n4 = grown.node("n4")
        await joining.start()
        try:
            added_at = await _add(leader, n4.raft, "n4", n4.api)
            so = _engine(leader).syncobj
            assert so is not None

            def compacted() -> bool:  # the add is only in the leader's snapshot now
                log = so._SyncObj__raftLog  # type: ignore[attr-defined]  # PySyncObj 0.3.17
                return bool(len(log)) and log[0][1] > added_at

            while not compacted():
                await _enqueue(leader, b"more")
            cluster.heal(behind)
            node = cluster.nodes[behind]
            await until(lambda: _engine(node).members() == _engine(leader).members())
            await until(lambda: _engine(node).member_info(n4.raft) is not None, 15)
            assert _engine(node).member_info(n4.raft) == ("n4", n4.api)
            assert node.api_address("n4") == n4.api
            shown = {m.raft: (m.id, m.api) for m in node.status().members}  # GET /v1/cluster
            assert shown[n4.raft] == ("n4", n4.api)
        finally:
            await joining.stop()


async def test_leadership_moves_to_a_member_added_at_runtime(tmp_path: Path) -> None:
    """Issue 19: ``transfer_leadership(to=...)`` took only the config's ids; a member added at
    runtime is named by the id its membership entry carries."""
    async with memory_cluster(tmp_path) as cluster:
        leader = await cluster.leader()
        grown, joining = _joining_n4(cluster, leader, tmp_path)
        n4 = grown.node("n4")
        await joining.start()
        try:
            await _add(leader, n4.raft, "n4", n4.api)
            acked = await _enqueue(leader, b"before")
            assert await leader.transfer_leadership("n4") == "n4"
            assert joining.is_leader()
            assert await _enqueue(joining, b"after") > acked
            await until(lambda: leader.leader_id() == "n4")
        finally:
            await joining.stop()
