"""An in-process, partitionable transport for PySyncObj: the real Raft without sockets.

``MemoryNetwork`` joins the nodes of one process; ``network.transport_class()`` is what
``new_pysyncobj_engine(..., transport_class=...)`` hands to PySyncObj as its ``transportClass``.
A message sent to a reachable node is pickled (as the TCP transport does: the receiver gets
its own copy) and queued to it; the receiver's tick thread is woken through a pipe on its poller
and handles its queue there, the only thread PySyncObj's callbacks may run on. ``partition``
cuts a node off from all the others (both directions; each side sees the others disconnect,
and messages already queued across the cut are dropped, as a closed connection drops them);
``heal`` joins it again.

Relies on PySyncObj 0.3.17 private behaviour: the ``Transport`` base class's callback helpers
(``_onMessageReceived``, ``_onNodeConnected``, ``_onNodeDisconnected``), ``SyncObj._poller``
and ``pysyncobj.pipe_notifier.PipeNotifier``: guarded by ``tests/raft/test_memory_cluster.py``
(elections, replication and partitions through this transport) and
``tests/raft/test_pysyncobj_private.py``.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from collections import deque
from typing import Any

from pysyncobj.pipe_notifier import PipeNotifier
from pysyncobj.transport import Transport

__all__ = ["MemoryNetwork"]


class MemoryNetwork:
    """The nodes of one in-process cluster, by raft address, and which of them are cut off."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, _MemoryTransport] = {}
        self._isolated: set[str] = set()

    def transport_class(self) -> type[Transport]:
        """A ``Transport`` subclass whose instances join this network (PySyncObj builds it)."""
        network = self

        class MemoryTransport(_MemoryTransport):
            def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:  # noqa: N803
                super().__init__(network, syncObj, selfNode, otherNodes)

        return MemoryTransport

    def partition(self, address: str) -> None:
        """Cut the node at raft ``address`` off from every other node."""
        with self._lock:
            self._isolated.add(address)
            for other in self._nodes.values():
                if other.address != address:
                    other.post(("down", address))
            node = self._nodes.get(address)
            if node is not None:
                for other_address in self._nodes:
                    if other_address != address:
                        node.post(("down", other_address))

    def heal(self, address: str) -> None:
        """Join the node at raft ``address`` to the others again."""
        with self._lock:
            self._isolated.discard(address)
            self._announce(address)

    def reachable(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` can talk (both on the same side of every cut)."""
        return a != b and a not in self._isolated and b not in self._isolated

    def _announce(self, address: str) -> None:
        """Tell ``address`` and the nodes it can reach that they are connected (under lock)."""
        node = self._nodes.get(address)
        if node is None:
            return
        for other in self._nodes.values():
            if self.reachable(address, other.address):
                other.post(("up", address))
                node.post(("up", other.address))

    def _connect(self, a: str, b: str) -> None:
        """Tell ``a`` and ``b`` they are connected, if both are on the network and reachable."""
        with self._lock:
            node_a, node_b = self._nodes.get(a), self._nodes.get(b)
            if node_a is not None and node_b is not None and self.reachable(a, b):
                node_a.post(("up", b))
                node_b.post(("up", a))

    def _join(self, node: _MemoryTransport) -> None:
        with self._lock:
            self._nodes[node.address] = node
            self._announce(node.address)

    def _leave(self, node: _MemoryTransport) -> None:
        with self._lock:
            if self._nodes.get(node.address) is node:
                del self._nodes[node.address]
            for other in self._nodes.values():
                other.post(("down", node.address))

    def _send(self, source: str, target: str, message: Any) -> bool:
        raw = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            node = self._nodes.get(target)
            if node is None or not self.reachable(source, target):
                return False
            node.post(("message", source, raw))
            return True


class _MemoryTransport(Transport):  # type: ignore[misc]  # pysyncobj ships no type hints
    def __init__(
        self,
        network: MemoryNetwork,
        syncObj: Any,  # noqa: N803  # PySyncObj's argument names
        selfNode: Any,  # noqa: N803
        otherNodes: Any,  # noqa: N803
    ) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self._network = network
        self.address: str = selfNode.id
        self._peers = {node.id: node for node in otherNodes}
        self._connected: set[str] = set()
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._notifier = PipeNotifier(syncObj._poller, self._drain)
        self._ready = False

    # -- PySyncObj's side (tick thread) -------------------------------------------------------

    def tryGetReady(self) -> None:  # noqa: N802
        if not self._ready:
            self._ready = True
            self._network._join(self)

    @property
    def ready(self) -> bool:
        return self._ready

    def waitReady(self) -> None:  # noqa: N802
        self.tryGetReady()

    def send(self, node: Any, message: Any) -> bool:
        if node.id not in self._connected:
            return False
        return self._network._send(self.address, node.id, message)

    def addNode(self, node: Any) -> None:  # noqa: N802  # a membership change added a voter
        self._peers[node.id] = node
        self._network._connect(self.address, node.id)

    def dropNode(self, node: Any) -> None:  # noqa: N802  # a membership change removed one
        self._peers.pop(node.id, None)
        self._connected.discard(node.id)

    def destroy(self) -> None:
        if self._ready:
            self._ready = False
            self._network._leave(self)

    # -- the network's side (any thread) ------------------------------------------------------

    def post(self, event: tuple[Any, ...]) -> None:
        self._inbox.append(event)
        # A full pipe means the tick thread has a wake-up pending anyway.
        with contextlib.suppress(OSError):
            self._notifier.notify()

    def _drain(self) -> None:
        """Tick thread: handle what was posted, in order."""
        while self._inbox:
            event = self._inbox.popleft()
            kind, address = event[0], event[1]
            node = self._peers.get(address)
            if node is None:
                continue
            if kind == "up" and address not in self._connected:
                self._connected.add(address)
                self._onNodeConnected(node)
            elif kind == "down" and address in self._connected:
                self._connected.discard(address)
                self._onNodeDisconnected(node)
            elif (
                kind == "message"
                and address in self._connected
                and self._network.reachable(address, self.address)  # not cut since it was sent
            ):
                self._onMessageReceived(node, pickle.loads(event[2]))
