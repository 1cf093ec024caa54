"""Which cluster a raft peer belongs to: an identity frame in PySyncObj's TCP handshake.

PySyncObj's TCP handshake is one frame: the connecting node sends its own raft address, and
the accepting node takes the connection if the address is one of its peers. Two clusters
whose nodes share addresses (two example configs on the same ports, a node of an old cluster
left running) therefore exchanged raft traffic: a leader replicated its log to a node of
another cluster, whose digest then differed from the others' at the same index (issue 20).

Each node now sends a second frame right after its address, ``{"type": "raftq_identity",
"name": <cluster name>, "cluster_id": <cluster id>}`` (the id fixed at bootstrap or taken over
when joining, ``raftq.raft.pysyncobj.membership``), and the accepting node registers the
connection only once that frame names its own cluster; it answers with its own frame, so the
connecting node checks the acceptor too, and reports the peer connected to PySyncObj only
once that answer came (a refusing acceptor closes the connection instead). A node of another
cluster is refused: its connection is closed before any raft message of it is handled, a
WARNING naming both clusters is logged once per peer address (again only after that address
was accepted once), and ``on_refused`` counts every refusal
(``raftq_raft_peer_connections_refused_total``).

Two identities are the same cluster when their cluster ids are equal (the name may be edited
in the config of a running cluster; the id stays); an identity without an id (none is known)
compares by name.

Mixed versions (a rolling upgrade): a node of an earlier raftq sends no identity frame, as
the connecting side or as the acceptor. It is taken as before, at its first raft message or
after ``LEGACY_WAIT_S`` of silence (a follower sends nothing until it is asked), with a
WARNING once per address saying that this node cannot tell it from a node of another
cluster. An earlier node receiving our frame hands it to PySyncObj, which ignores a message
of an unknown type.

Without a cluster secret this is a guard against mistakes, not authentication: anyone who can
reach the raft port can claim any identity (and run code through PySyncObj's pickles, which
is why a secret is required once a raft address is not loopback). With a secret, every frame
travels inside PySyncObj's authenticated encryption, and two clusters with different secrets
never exchange a frame at all.

Relies on PySyncObj 0.3.17 private behaviour: ``TCPTransport``'s handshake methods
(``_sendSelfAddress``, ``_onIncomingMessageReceived``, ``_onMessageReceived``,
``_onNodeConnected``, ``_onDisconnected``, ``_onTick``,
``_connections``, ``_unknownConnections``, ``_nodeAddrToNode``, ``_connToNode``), the
connection's ``sendRandKey`` (set once the encrypted key exchange is done), and that
``SyncObj`` ignores a message whose ``type`` it does not know: guarded by
``tests/raft/test_cluster_identity.py`` (real TCP connections between in-process nodes) and
``tests/raft/test_pysyncobj_private.py`` (the names exist).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pysyncobj.transport import TCPTransport

__all__ = ["IDENTITY_TYPE", "LEGACY_WAIT_S", "ClusterIdentity", "PeerGate", "identified_transport"]

logger = logging.getLogger(__name__)

IDENTITY_TYPE: Final = "raftq_identity"
# How long an accepted connection that announced a peer's address may stay silent before it
# is taken as a node of an earlier raftq (which sends no identity frame). Ours sends the frame
# in the same write as its address, so only an earlier node ever waits this long.
LEGACY_WAIT_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    """A cluster as its nodes name it in the raft handshake."""

    name: str
    cluster_id: str

    def frame(self) -> dict[str, Any]:
        return {"type": IDENTITY_TYPE, "name": self.name, "cluster_id": self.cluster_id}

    def same_cluster(self, other: ClusterIdentity) -> bool:
        if self.cluster_id and other.cluster_id:
            return self.cluster_id == other.cluster_id
        return self.name == other.name

    def describe(self) -> str:
        return f"{self.name!r} (id {self.cluster_id or 'unknown'})"


def read_identity(message: Any) -> ClusterIdentity | None:
    """The identity a frame carries; ``None`` when ``message`` is not an identity frame. A
    frame with malformed fields names an unknown cluster (it never matches a named one)."""
    if not isinstance(message, dict) or message.get("type") != IDENTITY_TYPE:
        return None
    name, cluster_id = message.get("name"), message.get("cluster_id")
    return ClusterIdentity(
        name if isinstance(name, str) else "?",
        cluster_id if isinstance(cluster_id, str) else "?",
    )


class PeerGate:
    """Decides whether a peer's identity is this node's cluster, and reports what it refused
    (tick thread only: PySyncObj calls the transport there)."""

    def __init__(self, own: ClusterIdentity, on_refused: Callable[[], None]) -> None:
        self.own = own
        self._on_refused = on_refused
        self._reported: set[str] = set()  # peer addresses whose refusal was logged
        self._legacy: set[str] = set()  # peer addresses accepted without an identity

    def admit(self, address: str, theirs: ClusterIdentity) -> bool:
        """Whether the peer at raft ``address`` that sent ``theirs`` is of this cluster."""
        if self.own.same_cluster(theirs):
            self._reported.discard(address)  # a later refusal of it is news again
            return True
        self._on_refused()
        if address not in self._reported:
            self._reported.add(address)
            logger.warning(
                "refused raft connection with %s: it belongs to cluster %s, this node to "
                "cluster %s; two clusters share raft addresses: give each cluster its own "
                "ports, or stop the stray node at %s",
                address,
                theirs.describe(),
                self.own.describe(),
                address,
            )
        return False

    def admit_legacy(self, address: str) -> None:
        """The peer at ``address`` sent no identity (an earlier raftq): accepted, noted once."""
        if address not in self._legacy:
            self._legacy.add(address)
            logger.warning(
                "raft peer %s sent no cluster identity (a node of an earlier raftq): accepted; "
                "this node cannot tell it from a node of another cluster until it is upgraded",
                address,
            )


def identified_transport(gate: PeerGate) -> type[TCPTransport]:
    """PySyncObj's ``TCPTransport`` with the identity frame (see the module docstring); what
    the engine hands to PySyncObj as its ``transportClass``."""

    class IdentifiedTCPTransport(_IdentifiedTCPTransport):
        _gate = gate

    return IdentifiedTCPTransport


class _IdentifiedTCPTransport(TCPTransport):  # type: ignore[misc]  # pysyncobj has no hints
    _gate: PeerGate

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:  # noqa: N803
        # Incoming connections that announced a peer, awaiting its identity:
        # {connection: (the announcement, monotonic time it came)}.
        self._raftq_pending: dict[Any, tuple[Any, float]] = {}
        # Peers this node connected to, not yet reported connected to PySyncObj: until the
        # acceptor's identity came (or its first raft message, or LEGACY_WAIT_S passed).
        # {node: monotonic time the connection was made}
        self._raftq_unconfirmed: dict[Any, float] = {}
        super().__init__(syncObj, selfNode, otherNodes)

    # -- the connecting side ------------------------------------------------------------------

    def _sendSelfAddress(self, conn: Any) -> None:  # noqa: N802  # PySyncObj's names
        super()._sendSelfAddress(conn)
        conn.send(self._gate.own.frame())
        # PySyncObj reports the node connected right after this: hold that back until the
        # acceptor has named its cluster, so that a refusing acceptor (which closes the
        # connection at once) never shows as a peer connected, lost and back every second.
        node = self._connToNode(conn)
        if node is not None:
            self._raftq_unconfirmed[node] = time.monotonic()

    def _onNodeConnected(self, node: Any) -> None:  # noqa: N802
        if node not in self._raftq_unconfirmed:
            super()._onNodeConnected(node)

    def _confirm(self, node: Any) -> None:
        if self._raftq_unconfirmed.pop(node, None) is not None:
            super()._onNodeConnected(node)

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        theirs = read_identity(message)
        if theirs is None:
            if node in self._raftq_unconfirmed:  # an earlier raftq answered without one
                self._gate.admit_legacy(str(node.id))
                self._confirm(node)
            super()._onMessageReceived(node, message)
            return
        # The acceptor's answer on a connection we opened (or a late duplicate).
        if self._gate.admit(str(node.id), theirs):
            self._confirm(node)
            return
        self._raftq_unconfirmed.pop(node, None)
        conn = self._connections.get(node)
        if conn is not None:
            conn.disconnect()

    # -- the accepting side -------------------------------------------------------------------

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:  # noqa: N802
        pending = self._raftq_pending.pop(conn, None)
        if pending is not None:
            self._second_frame(conn, pending[0], message)
            return
        encrypting = self._syncObj.encryptor and not conn.sendRandKey
        known = message in self._nodeAddrToNode if isinstance(message, str) else False
        if encrypting or not (known or message == "readonly"):
            # The key exchange, a utility command, or an unknown address (refused by
            # PySyncObj): as before.
            super()._onIncomingMessageReceived(conn, message)
            return
        self._raftq_pending[conn] = (message, time.monotonic())

    def _second_frame(self, conn: Any, hello: Any, message: Any) -> None:
        theirs = read_identity(message)
        if theirs is None:
            # An earlier raftq: its first raft message came instead. Take the connection as
            # PySyncObj would have, then hand the message on.
            self._gate.admit_legacy(str(hello))
            super()._onIncomingMessageReceived(conn, hello)
            node = self._connToNode(conn)
            if node is not None:
                super()._onMessageReceived(node, message)
            return
        conn.send(self._gate.own.frame())  # the connecting node checks us too
        if self._gate.admit(str(hello), theirs):
            super()._onIncomingMessageReceived(conn, hello)
            return
        self._unknownConnections.discard(conn)
        conn.disconnect()

    def _onDisconnected(self, conn: Any) -> None:  # noqa: N802
        self._raftq_pending.pop(conn, None)
        node = self._connToNode(conn)
        if node is not None:
            self._raftq_unconfirmed.pop(node, None)
        super()._onDisconnected(conn)

    def _onTick(self) -> None:  # noqa: N802
        super()._onTick()
        if not (self._raftq_pending or self._raftq_unconfirmed):
            return
        now = time.monotonic()
        for conn, (hello, since) in list(self._raftq_pending.items()):
            if now - since >= LEGACY_WAIT_S:
                del self._raftq_pending[conn]
                self._gate.admit_legacy(str(hello))
                super()._onIncomingMessageReceived(conn, hello)
        for node, since in list(self._raftq_unconfirmed.items()):
            if now - since >= LEGACY_WAIT_S:  # an earlier raftq, with nothing to say yet
                self._gate.admit_legacy(str(node.id))
                self._confirm(node)
