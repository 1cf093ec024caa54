"""A peer's host name is looked up again within seconds (``_DNS_CACHE_S``), not after
PySyncObj's default ten minutes: a node restarted on a new address (a Kubernetes pod, a
container: deploy/) is dialled at that address. The lookups are PySyncObj's own resolver as a
node configures it; only the name service and its clock are simulated."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import dns_resolver

from tests.support.memory_cluster import memory_cluster


async def test_a_peer_restarted_on_a_new_address_is_found_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with memory_cluster(tmp_path, n=1):  # a node configures the process's resolver
        resolver = dns_resolver.globalDnsResolver()
    now = [1_000_000.0]
    addresses = {"raftq-1.raftq": "10.0.0.1"}

    def getaddrinfo(host: str, port: Any) -> list[tuple[Any, ...]]:
        if host not in addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addresses[host], 0))]

    monkeypatch.setattr(dns_resolver.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(dns_resolver, "monotonicTime", lambda: now[0])
    assert resolver.resolve("raftq-1.raftq") == "10.0.0.1"
    addresses["raftq-1.raftq"] = "10.0.0.2"  # the pod came back on another IP
    now[0] += 10
    assert resolver.resolve("raftq-1.raftq") == "10.0.0.2"

    # A name not there yet (a pod whose DNS record is not published) is tried again soon too.
    assert resolver.resolve("raftq-2.raftq") is None
    addresses["raftq-2.raftq"] = "10.0.0.3"
    now[0] += 10
    assert resolver.resolve("raftq-2.raftq") == "10.0.0.3"
