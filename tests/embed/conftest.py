"""Fixtures of the embedding tests: real raft nodes in this process, on free loopback ports."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from aiohttp import web

from raftq.config import ClusterConfig, parse_config
from raftq.embed import Node
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.pysyncobj.memory_transport import MemoryNetwork
from tests.integration.cluster import free_ports


def make_config(root: Path, n: int, extra: str = "") -> ClusterConfig:
    """A config of ``n`` nodes ``n1..`` on free loopback ports, data under ``root``."""
    ports = free_ports(2 * n)
    lines = ["[cluster]", 'name = "embed"', 'data_dir = "data"', "", extra, ""]
    for i in range(n):
        lines += [
            "[[nodes]]",
            f'id = "n{i + 1}"',
            f'raft = "127.0.0.1:{ports[i]}"',
            f'api = "127.0.0.1:{ports[n + i]}"',
            "",
        ]
    return parse_config("\n".join(lines), root)


async def mounted_nodes(
    stack: AsyncExitStack, config: ClusterConfig, *, network: str = "tcp"
) -> dict[str, Node]:
    """Every node of ``config`` as an embedded ``Node`` mounted under ``/queue`` on its own
    served application, started (stopped by ``stack``). ``network``: Raft over PySyncObj's TCP
    transport (``"tcp"``) or over one in-memory network (``"memory"``: no raft sockets)."""
    transport = MemoryNetwork().transport_class() if network == "memory" else None
    nodes: dict[str, Node] = {}
    for spec in config.nodes:
        engine = new_pysyncobj_engine(config, spec.id, transport_class=transport)
        node = Node(config, spec.id, retry_ms=10_000, engine=engine)
        app = web.Application()
        node.mount(app, prefix="/queue")
        runner = web.AppRunner(app)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, spec.api_host, spec.api_port).start()
        await node.start()
        stack.push_async_callback(node.stop)
        nodes[spec.id] = node
    return nodes
