"""Fixtures of the embedding tests: real raft nodes in this process, on free loopback ports."""

from __future__ import annotations

from pathlib import Path

from raftq.config import ClusterConfig, parse_config
from tests.integration.cluster import free_ports


def make_config(root: Path, n: int, extra: str = "") -> ClusterConfig:
    """A config of ``n`` nodes ``n1..`` on free loopback ports, data under ``root``."""
    ports = free_ports(2 * n)
    lines = ["[cluster]", 'name = "embed"', 'data_dir = "data"', "", extra, ""]
    for i in range(n):
        lines += [
            "[[nodes]]",
            f'id = "n{i + 1}"',
            f'raft = "127.0.0.1:{ports[i]}"',
            f'api = "127.0.0.1:{ports[n + i]}"',
            "",
        ]
    return parse_config("\n".join(lines), root)
