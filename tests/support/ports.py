"""Loopback ports for the tests' nodes, safe when the suite runs in several processes.

The kernel's "any free port" (bind to port 0) hands out ports of its ephemeral range, which
outgoing connections use too, and two test processes asking at once may get ports that the
other one binds first: seen in CI as a node that could not bind its API port. So the ports
come from below the ephemeral range (no outgoing connection takes them), each pytest-xdist
process from its own slice of it (``PYTEST_XDIST_WORKER``), in turn, each one checked free by
binding it. Where the ephemeral range leaves no room below it, the kernel chooses.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

from raftq.bench.cluster import free_ports as kernel_ports

__all__ = ["free_ports"]

_LOW = 20_000  # above the well-known and most registered services' ports
_HIGH = 32_768  # Linux's default start of the ephemeral range


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _HIGH


def _own_slice() -> range:
    """This process's ports: an equal share of [_LOW, ephemeral start) per xdist worker."""
    high = min(_HIGH, _ephemeral_start())
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = max(0, high - _LOW) // count
    return range(_LOW + index * size, _LOW + (index + 1) * size)


_SLICE = _own_slice()
_NEXT: Iterator[int] = itertools.cycle(_SLICE) if len(_SLICE) >= 100 else iter(())


def _bindable(port: int) -> bool:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports, free at the time of the call and not handed out by this
    process before (until its slice wraps around)."""
    if len(_SLICE) < 100:
        return kernel_ports(n)
    ports: list[int] = []
    for _ in range(len(_SLICE)):
        port = next(_NEXT)
        if _bindable(port):
            ports.append(port)
            if len(ports) == n:
                return ports
    raise RuntimeError(f"no {n} free loopback ports in {_SLICE.start}..{_SLICE.stop - 1}")
