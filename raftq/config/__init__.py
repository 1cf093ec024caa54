"""Cluster configuration: one TOML file -> frozen dataclasses, validated with every problem listed.

``model`` holds the dataclasses and the address helpers, ``load`` reads and validates a file
(``load_config``) or a string (``parse_config``), ``_table`` is the typed TOML table reader
they use.
"""

from raftq.config.load import load_config, parse_config
from raftq.config.model import (
    ENV_DATA_DIR,
    ENV_SECRET,
    MIN_SECRET_CHARS,
    NODE_ID_RE,
    ClusterConfig,
    Fsync,
    LimitsConfig,
    NodeConfig,
    RaftConfig,
    Role,
    TLSConfig,
    TokenConfig,
    is_loopback_host,
    split_host_port,
)

__all__ = [
    "ENV_DATA_DIR",
    "ENV_SECRET",
    "MIN_SECRET_CHARS",
    "NODE_ID_RE",
    "ClusterConfig",
    "Fsync",
    "LimitsConfig",
    "NodeConfig",
    "RaftConfig",
    "Role",
    "TLSConfig",
    "TokenConfig",
    "is_loopback_host",
    "load_config",
    "parse_config",
    "split_host_port",
]
