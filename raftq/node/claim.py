"""What a node takes before it touches its data dir: its ports and the data dir's lock.

``claim_node`` runs first in ``raftq serve`` and in ``raftq.Node.start``, in this order:

1. If the data dir has a lock file, it is locked now (``flock``, without creating or writing
   anything): a live node holding it is ``DataDirLocked`` naming its pid, not a failure on a
   port the live node holds too.
2. The API port (``raftq serve`` only) is bound for good: the socket is handed to the HTTP
   server (``aiohttp.web.SockSite``), so no other process can take it in between.
3. The raft port is bound and closed again. PySyncObj's ``TcpServer`` creates its own socket,
   so this is a probe with the same options it binds with (``SO_REUSEADDR``): a port another
   process listens on fails both; a port left in TIME_WAIT by a previous run passes both. If
   another process takes it in the moment between, the engine finds PySyncObj's transport
   not bound and raises the same ``PortUnavailable`` (``raftq.raft.pysyncobj.engine``).
4. Only then is the data dir created if missing, its lock file created if missing, locked,
   and the pid written into it.

A failure in 1-3 raises ``StartRefused`` before anything in the data dir was created or
written. The lock is an ``flock`` on the open file, held for the life of the process (or until
``release``): the kernel drops it when the process dies, even by ``kill -9``, so a lock file
left behind never blocks a restart. Its content (the pid) only names the holder in the
message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from raftq.config import ClusterConfig
from raftq.errors import DataDirLocked, PortUnavailable

__all__ = ["LOCK_FILE", "NodeClaim", "bind_port", "claim_node"]

# In the node's data dir, next to raft.dump and raft.journal.
LOCK_FILE = "raftq.lock"

# The lock fds this process holds. A forked child (the snapshot writer) closes its copies at
# once: an flock belongs to the open file, so a child still running after its parent was
# killed would otherwise keep the lock and refuse the node's restart.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class NodeClaim:
    """The lock of a node's data dir, and its bound API socket (``None`` when not asked for).
    ``take_api_socket`` hands the socket over (the HTTP server closes it from then on);
    ``release`` closes whatever is still held, the lock last."""

    def __init__(self, node_id: str, data_dir: Path) -> None:
        self.node_id = node_id
        self.lock_path = data_dir / LOCK_FILE
        self.api_socket: socket.socket | None = None
        self._lock_fd: int | None = None

    def lock_if_present(self) -> None:
        """Lock the lock file if it exists; creates and writes nothing."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        self._hold(fd)

    def lock(self) -> None:
        """Create the data dir and the lock file if missing, lock it (if not already) and write
        this process's pid into it."""
        if self._lock_fd is None:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._hold(os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644))
        assert self._lock_fd is not None
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)

    def _hold(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirLocked(self.node_id, str(self.lock_path.parent), pid) from None
            raise
        self._lock_fd = fd
        _HELD.add(fd)

    def take_api_socket(self) -> socket.socket:
        sock, self.api_socket = self.api_socket, None
        if sock is None:
            raise RuntimeError("the API socket was not claimed, or was already taken")
        return sock

    def release(self) -> None:
        if self.api_socket is not None:
            self.api_socket.close()
            self.api_socket = None
        if self._lock_fd is not None:
            # The file stays: removing it would race with a process that opened it to lock.
            _HELD.discard(self._lock_fd)
            os.close(self._lock_fd)
            self._lock_fd = None


def claim_node(config: ClusterConfig, node_id: str, *, api: bool, raft: bool) -> NodeClaim:
    """Take node ``node_id``'s data dir lock and check (``raft``) or bind (``api``) its ports,
    in the order of the module docstring.

    Raises:
        DataDirLocked: another process holds the data dir.
        PortUnavailable: a port cannot be bound.
    """
    me = config.node(node_id)
    claim = NodeClaim(node_id, config.node_data_dir(node_id))
    try:
        claim.lock_if_present()
        if api:
            claim.api_socket = bind_port(node_id, "API", me.api_host, me.api_port)
        if raft:
            bind_port(node_id, "raft", me.raft_host, me.raft_port).close()
        claim.lock()
    except BaseException:
        claim.release()
        raise
    return claim


def bind_port(node_id: str, which: str, host: str, port: int) -> socket.socket:
    """A TCP socket bound (not listening) to ``host:port`` with ``SO_REUSEADDR``, as PySyncObj
    and aiohttp bind theirs.

    Raises:
        PortUnavailable: the address does not resolve or cannot be bound.
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise PortUnavailable(node_id, which, address, str(e.strerror), in_use=False) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
    except OSError as e:
        sock.close()
        in_use = e.errno == errno.EADDRINUSE
        raise PortUnavailable(node_id, which, address, e.strerror or str(e), in_use) from None
    return sock


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None
