"""The two ways a node is assembled from its parts, side by side.

- ``process``: ``raftq serve``, one node as a process (raft node, HTTP API, signals).
- ``embedded``: ``raftq.Node``, a node running on the caller's asyncio loop, with the client's
  operations as coroutines and the HTTP API mountable on the caller's aiohttp application.
"""
