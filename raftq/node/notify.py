"""systemd's readiness protocol (``sd_notify``) for ``raftq serve`` under ``Type=notify``.

When systemd starts a service with ``Type=notify`` it sets ``NOTIFY_SOCKET`` to the path of an
``AF_UNIX`` datagram socket (a leading ``@`` names one in the abstract namespace) and waits for
a datagram ``READY=1`` before it counts the service as started. ``raftq serve`` sends:

- ``READY=1`` once the node would answer ``GET /readyz`` with 200 (``node_ready``: a leader
  known and the log caught up), with its HTTP API already serving; once, even if it stops
  being ready later (systemd reads readiness only at start);
- ``STOPPING=1`` when it begins to shut down (SIGTERM, SIGINT or a drain).

Without ``NOTIFY_SOCKET`` nothing is sent. A message that cannot be sent is logged once and
dropped: the node serves whether or not its supervisor listens. The protocol is a few bytes
over a socket, so no library is needed (``sd_notify(3)``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

__all__ = ["NOTIFY_SOCKET_ENV", "notify", "notify_when_ready"]

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def notify(message: str) -> bool:
    """Send ``message`` (``KEY=value`` lines) to ``$NOTIFY_SOCKET``; ``False`` when the variable
    is unset or the send failed (logged at WARNING), ``True`` when sent."""
    path = os.environ.get(NOTIFY_SOCKET_ENV)
    if not path:
        return False
    # sd_notify(3): "@" is the abstract namespace, written as a leading NUL byte.
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as e:
        logger.warning("cannot notify the supervisor at %s=%s: %s", NOTIFY_SOCKET_ENV, path, e)
        return False
    return True


async def notify_when_ready(ready: Callable[[], bool], *, poll_s: float = 0.1) -> None:
    """Poll ``ready`` every ``poll_s`` seconds on the caller's loop and send ``READY=1`` once it
    holds; returns at once when there is no ``NOTIFY_SOCKET``. Cancel it to stop waiting."""
    if not os.environ.get(NOTIFY_SOCKET_ENV):
        return
    while not ready():
        await asyncio.sleep(poll_s)
    notify("READY=1\nSTATUS=ready: a leader is known and the log is caught up")
