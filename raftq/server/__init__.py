"""raftq.server: the HTTP API of a node (aiohttp), as specified in DESIGN.md section 4.

``create_app(node, settings)`` builds a standalone application; ``add_routes(app, node,
settings, prefix)`` mounts the same routes on an application the caller owns. ``node`` is any
``raftq.raft.api.NodeAPI`` (the real ``RaftNode``, or ``tests.support.local_node.LocalNode`` in
tests). The wire format is described in ``raftq.server.wire`` and ``docs/http-api.md``.
Both take ``security=Security(...)`` (tokens, cluster secret, rate limit; ``raftq.server.auth``,
``docs/security.md``); without it auth is off.
"""

from raftq.server.app import add_routes, application, create_app
from raftq.server.auth import Security
from raftq.server.settings import ServerSettings

__all__ = ["Security", "ServerSettings", "add_routes", "application", "create_app"]
