"""raftq.embed: run a raftq node inside an existing asyncio (aiohttp) service.

``Node(config, node_id)`` starts and stops on the caller's event loop, offers the client's
operations as coroutines (no HTTP hop on the leader; forwarded to the leader otherwise), and
mounts the HTTP API on the caller's aiohttp application (``node.mount(app, prefix)``). It is
also exported as ``raftq.Node``. See ``docs/guide.md`` and ``examples/embedded_service.py``.
"""

from raftq.node.embedded import Node

__all__ = ["Node"]
