"""``raftq.Node.start`` takes the data dir's lock and checks the raft port before it touches the
data dir (raftq.node.claim), raising ``DataDirLocked`` / ``PortUnavailable``; the PySyncObj
engine refuses a raft port it could not bind instead of retrying it forever."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftq import Node
from raftq.config import ClusterConfig, NodeConfig
from raftq.errors import DataDirLocked, PortUnavailable, StartRefused
from raftq.node.claim import claim_node
from raftq.raft.pysyncobj import new_pysyncobj_engine
from tests.embed.conftest import make_config


@pytest.fixture
def holder() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        yield sock


def _raft_port_taken(tmp_path: Path, holder: socket.socket) -> tuple[ClusterConfig, NodeConfig]:
    """A one-node config whose raft port ``holder`` listens on."""
    config = make_config(tmp_path, 1)
    me = config.node("n1")
    holder.bind((me.raft_host, me.raft_port))
    holder.listen()
    return config, me


async def test_a_taken_raft_port_raises_before_the_data_dir_is_made(
    tmp_path: Path, holder: socket.socket
) -> None:
    config, me = _raft_port_taken(tmp_path, holder)
    node = Node(config, "n1")
    with pytest.raises(PortUnavailable) as e:
        await node.start()
    assert (e.value.which, e.value.address) == ("raft", me.raft)
    assert "Address already in use" in str(e.value)
    assert isinstance(e.value, StartRefused)
    assert not (tmp_path / "data").exists()


async def test_the_engine_refuses_a_raft_port_it_could_not_bind(
    tmp_path: Path, holder: socket.socket
) -> None:
    # A given engine skips the claim's port probe (it brings its own transport): the engine
    # itself finds PySyncObj's transport unbound, as when another process takes the port
    # between the probe and PySyncObj's bind.
    config, me = _raft_port_taken(tmp_path, holder)
    node = Node(config, "n1", engine=new_pysyncobj_engine(config, "n1"))
    with warnings.catch_warnings():
        # PySyncObj's TcpServer.bind leaks the socket of each failed attempt (the engine
        # waits through two retries before it gives up): collected here.
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(PortUnavailable, match=f"cannot bind its raft port {me.raft}"):
            await node.start()
        await node.stop()  # nothing left running
        gc.collect()


async def test_the_engine_waits_for_a_raft_port_busy_for_a_moment(
    tmp_path: Path, holder: socket.socket
) -> None:
    # The port is released 0.3 s after the start begins (a socket of the node's previous run
    # in this process not yet collected, or another client's ephemeral port): the node binds
    # it at PySyncObj's next retry and starts, instead of refusing a port that is free again.
    config, _me = _raft_port_taken(tmp_path, holder)
    node = Node(config, "n1", engine=new_pysyncobj_engine(config, "n1"))
    asyncio.get_running_loop().call_later(0.3, holder.close)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # as above: the failed attempt's socket
        try:
            await node.start()
            await node.wait_for_leader(10_000)
        finally:
            await node.stop()
            gc.collect()


async def test_a_second_node_on_the_same_data_dir_is_refused_until_the_first_stops(
    tmp_path: Path,
) -> None:
    # Short elections: a node restarted on a log waits two maximum election timeouts first.
    config = make_config(tmp_path, 1, "[raft]\nelection_min_ms = 150\nelection_max_ms = 300")
    first, second = Node(config, "n1"), Node(config, "n1")
    lock = config.node_data_dir("n1") / "raftq.lock"
    async with first:
        await first.wait_for_leader(10_000)
        with pytest.raises(DataDirLocked) as e:
            await second.start()
        assert e.value.pid == os.getpid()
        assert str(e.value).startswith(f"node n1: data dir {config.node_data_dir('n1')} is in use")
        assert lock.read_text() == f"{os.getpid()}\n"
        assert first.status().ready  # the first node still runs
    with warnings.catch_warnings():
        # PySyncObj's MetaStorer.getMeta reads the term/vote file of a restarted node without
        # closing it (see tests/raft/test_snapshot_hooks.py): collected here.
        warnings.simplefilter("ignore", ResourceWarning)
        await second.start()  # the first released the lock when it stopped
        gc.collect()
    try:
        await second.wait_for_leader(10_000)
    finally:
        await second.stop()


def test_a_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    # The snapshot writer is a forked child: if it outlives a node killed with -9, its copy of
    # the lock's fd must not hold the lock against the node's restart.
    config = make_config(tmp_path, 1)
    claim = claim_node(config, "n1", api=False, raft=False)
    read_end, write_end = os.pipe()
    started_read, started_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: says it runs (past the fork hooks), waits for the parent
        os.close(write_end)
        os.write(started_write, b"x")
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    os.close(started_write)
    try:
        assert os.read(started_read, 1) == b"x"
        os.close(started_read)
        claim.release()  # the parent's fd closed, the child alive
        again = claim_node(config, "n1", api=False, raft=False)
        again.release()
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)
