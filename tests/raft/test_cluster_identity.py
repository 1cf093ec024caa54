"""The cluster identity in the raft handshake (raftq/raft/pysyncobj/identity.py): real nodes in
this process over PySyncObj's TCP transport on loopback, plus the gate's reporting rules.

Issue 20: nodes of two configs on the same addresses exchanged raft traffic, and a node of one
cluster followed the other cluster's leader."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from pysyncobj.transport import TCPTransport

from raftq.config import ClusterConfig, parse_config
from raftq.core import Enqueue, Enqueued, NewJob
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.pysyncobj.identity import ClusterIdentity, PeerGate
from tests.embed.conftest import make_config
from tests.support.memory_cluster import until

_REFUSED = "refused raft connection with"
_LEGACY = "sent no cluster identity"


def _renamed(config: ClusterConfig, name: str, root: Path) -> ClusterConfig:
    """Another cluster on exactly the same addresses (data under ``root``)."""
    lines = ["[cluster]", f'name = "{name}"', 'data_dir = "data"', ""]
    for n in config.nodes:
        lines += ["[[nodes]]", f'id = "{n.id}"', f'raft = "{n.raft}"', f'api = "{n.api}"', ""]
    return parse_config("\n".join(lines), root)


@contextlib.asynccontextmanager
async def _started(nodes: Sequence[RaftNode]) -> AsyncIterator[None]:
    started: list[RaftNode] = []
    try:
        for node in nodes:
            await node.start()
            started.append(node)
        yield
    finally:
        for node in started:
            await node.stop()


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_a_node_of_another_cluster_on_a_members_address_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="raftq.raft.pysyncobj.identity")
    caplog.set_level(logging.INFO, logger="raftq.raft.pysyncobj.events")
    alpha = _renamed(make_config(tmp_path, 3), "alpha", tmp_path / "alpha")
    beta = _renamed(alpha, "beta", tmp_path / "beta")
    # alpha's n1 and n2 (a majority), and in n3's place a node of beta, configured with the
    # same three addresses: what two example configs on the same ports amount to.
    a1, a2 = (RaftNode(alpha, new_pysyncobj_engine(alpha, i)) for i in ("n1", "n2"))
    b3 = RaftNode(beta, new_pysyncobj_engine(beta, "n3"))
    stray = alpha.node("n3").raft

    def refusals() -> int:
        return sum(n.stats.snapshot().peer_connections_refused for n in (a1, a2, b3))

    async with _started([a1, a2, b3]):
        await until(lambda: a1.leader_id() is not None and a2.leader_id() == a1.leader_id())
        # Each pair meets at least twice (connections are retried every second), or beta's
        # node follows alpha's leader, as it did before the identity frame.
        await until(lambda: refusals() >= 4 or b3.leader_id() is not None)
        assert b3.leader_id() is None, "a node of cluster beta followed cluster alpha's leader"
        assert not any(n.engine.peer_connected(stray) for n in (a1, a2))
        # Nor does beta's node count them as peers, even for a moment (no connected / lost
        # line every time it retries).
        assert not any(b3.engine.peer_connected(alpha.node(i).raft) for i in ("n1", "n2"))
        assert _lines(caplog, "node n3: raft peer") == []
        # alpha's nodes still replicate to each other.
        leader = a1 if a1.is_leader() else a2
        result = await leader.submit(
            Enqueue(now_ms=leader.now_ms(), queue="q", jobs=(NewJob(payload=b"x"),))
        )
        assert isinstance(result, Enqueued)
        assert b3.status().applied_index <= 1  # nothing of alpha's log reached it

    lines = _lines(caplog, _REFUSED)
    # At most once per peer address on each node, however often the connection was retried:
    # the accepting side always refuses; the connecting side logs too when the acceptor's
    # answer reached it before the connection closed.
    addresses = Counter(line.removeprefix(_REFUSED).split()[0].rstrip(":") for line in lines)
    assert len(lines) >= 2
    assert addresses[stray] <= 2  # alpha's n1 and n2
    assert addresses[alpha.node("n1").raft] <= 1 and addresses[alpha.node("n2").raft] <= 1
    assert set(addresses) <= {stray, alpha.node("n1").raft, alpha.node("n2").raft}
    assert all("'alpha'" in line and "'beta'" in line for line in lines)
    assert all("give each cluster its own ports" in line for line in lines)


@pytest.mark.parametrize("side", ["connecting", "accepting"])
async def test_a_node_of_an_earlier_version_is_accepted_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, side: str
) -> None:
    """A rolling upgrade: a node with PySyncObj's plain handshake (no identity frame) is taken
    as before, with one warning on each node that talks to it, and receives our frames
    unharmed."""
    caplog.set_level(logging.WARNING, logger="raftq.raft.pysyncobj.identity")
    config = make_config(tmp_path, 3)
    # The node with the higher address opens the connection (PySyncObj's rule): the highest
    # connects to both others, the lowest is connected to by both.
    pick = max if side == "connecting" else min
    old = pick(config.nodes, key=lambda n: n.raft)
    nodes = {
        n.id: RaftNode(
            config,
            new_pysyncobj_engine(
                config, n.id, transport_class=TCPTransport if n.id == old.id else None
            ),
        )
        for n in config.nodes
    }
    old_node = nodes[old.id]
    async with _started(list(nodes.values())):
        await until(
            lambda: (
                len({n.leader_id() for n in nodes.values()}) == 1
                and nodes[old.id].leader_id() is not None
            )
        )
        leader = next(n for n in nodes.values() if n.is_leader())
        result = await leader.submit(
            Enqueue(now_ms=leader.now_ms(), queue="q", jobs=(NewJob(payload=b"x"),))
        )
        assert isinstance(result, Enqueued)
        job_id = result.ids[0]

        def old_has_job() -> bool:
            with nodes[old.id].read() as m:
                return job_id in m.jobs

        await until(old_has_job)
        # Between two followers nothing is sent: taken after LEGACY_WAIT_S.
        await until(lambda: len(_lines(caplog, _LEGACY)) >= 2)
        assert all(n.engine.peer_connected(old.raft) for n in nodes.values() if n is not old_node)
    lines = _lines(caplog, _LEGACY)
    assert lines == [lines[0]] * 2
    assert lines[0].startswith(f"raft peer {old.raft} sent no cluster identity")
    assert _lines(caplog, _REFUSED) == []


def test_the_gate_reports_a_refused_address_once_until_it_is_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="raftq.raft.pysyncobj.identity")
    refused: list[None] = []
    gate = PeerGate(ClusterIdentity("three-node", "aaa"), lambda: refused.append(None))
    other = ClusterIdentity("five-node", "bbb")
    assert not gate.admit("127.0.0.1:7103", other)
    assert not gate.admit("127.0.0.1:7103", other)
    assert not gate.admit("127.0.0.1:7104", other)
    assert len(refused) == 3
    assert len(_lines(caplog, _REFUSED)) == 2
    # Accepted once (the stray node was stopped and the right one started), then refused
    # again: that is news.
    assert gate.admit("127.0.0.1:7103", ClusterIdentity("three-node", "aaa"))
    assert not gate.admit("127.0.0.1:7103", other)
    assert len(_lines(caplog, _REFUSED)) == 3
    line = _lines(caplog, _REFUSED)[0]
    assert "cluster 'five-node' (id bbb), this node to cluster 'three-node' (id aaa)" in line


def test_same_cluster_compares_ids_and_names_only_without_an_id() -> None:
    assert ClusterIdentity("renamed", "aaa").same_cluster(ClusterIdentity("old", "aaa"))
    assert not ClusterIdentity("same", "aaa").same_cluster(ClusterIdentity("same", "bbb"))
    assert ClusterIdentity("same", "").same_cluster(ClusterIdentity("same", "bbb"))
    assert not ClusterIdentity("one", "").same_cluster(ClusterIdentity("two", "bbb"))
