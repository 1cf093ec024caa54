"""raftq.server: the HTTP API of a node (aiohttp), as specified in DESIGN.md section 4.

``create_app(node, settings)`` builds a standalone application; ``add_routes(app, node,
settings, prefix)`` mounts the same routes on an application the caller owns. ``node`` is any
``raftq.raft.api.NodeAPI`` (the real ``RaftNode``, or ``tests.support.local_node.LocalNode`` in
tests). The wire format is described in ``raftq.server.wire`` and ``docs/http-api.md``.
"""

from raftq.server.app import add_routes, create_app
from raftq.server.settings import ServerSettings

__all__ = ["ServerSettings", "add_routes", "create_app"]
