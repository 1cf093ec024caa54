"""What the peers need on this machine, installed if missing: the servers as Debian packages,
their Python clients in a venv of the benchmark's own (never in raftq's dependencies).

The packages' init scripts must not start system-wide services (``servers`` starts its own on
loopback): while ``apt-get`` runs, a ``policy-rc.d`` that forbids starting them is in place
(only if there was none, and removed again after).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from raftq.bench.cluster import BenchError

__all__ = [
    "CLIENT_REQUIREMENTS",
    "SERVER_PACKAGES",
    "PeersSetupError",
    "client_python",
    "ensure_servers",
    "missing_servers",
]

# Debian package -> a file it installs that the benchmark runs.
SERVER_PACKAGES: dict[str, str] = {
    "nats-server": "nats-server",
    "rabbitmq-server": "/usr/lib/rabbitmq/bin/rabbitmq-server",
    "redis-server": "redis-server",
}

# The clients the peers' drivers use, pinned to the versions the published figures were
# measured with (docs/benchmarks.md).
CLIENT_REQUIREMENTS = (
    "nats-py==2.16.0",
    "aio-pika==10.2.1",
    "redis==5.3.1",
    "hiredis==3.5.0",
    "arq==0.28.0",
    "uvloop==0.23.0",  # the drivers' event loop, as raftq's side of the benchmark (raftq.runloop)
)

_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class PeersSetupError(BenchError):
    """A peer server or client could not be installed; the message says what to do."""


def _found(program: str) -> bool:
    return Path(program).is_file() if program.startswith("/") else shutil.which(program) is not None


def missing_servers(packages: list[str]) -> list[str]:
    """The Debian packages among ``packages`` whose program is not on this machine."""
    return [p for p in packages if not _found(SERVER_PACKAGES[p])]


def ensure_servers(packages: list[str]) -> None:
    """Install the missing ones with ``apt-get`` (as root), or say which to install."""
    need = missing_servers(packages)
    if not need:
        return
    if os.geteuid() != 0:
        raise PeersSetupError(
            f"the peers need {' '.join(need)}: run `sudo apt-get install {' '.join(need)}` "
            "(Debian/Ubuntu) or run the benchmark as root"
        )
    print(f"installing {' '.join(need)} (apt-get) ...", file=sys.stderr, flush=True)
    added_policy = False
    if not _POLICY_RC_D.exists():
        _POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        _POLICY_RC_D.chmod(0o755)
        added_policy = True
    try:
        argv = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y"]
        argv += ["--no-install-recommends", *need]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        proc = subprocess.run(argv, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
    finally:
        if added_policy:
            _POLICY_RC_D.unlink(missing_ok=True)
    still = missing_servers(need)
    if proc.returncode != 0 or still:
        raise PeersSetupError(
            f"apt-get install {' '.join(need)} failed (exit code {proc.returncode}): "
            "run `apt-get update` and try again"
        )


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "raftq"


def client_python() -> Path:
    """The interpreter of the peers' client venv, created (and the clients installed) on first
    use. The venv's name holds a hash of the pins and of this Python's version, so a change of
    either makes a new one instead of reusing a stale one."""
    key = "\n".join([*CLIENT_REQUIREMENTS, sys.version]).encode()
    venv = _cache_dir() / f"bench-peers-{hashlib.sha256(key).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if done.is_file():
        return python
    print(f"creating the peers' client venv {venv} ...", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", *CLIENT_REQUIREMENTS],
    ]
    for argv in steps:
        proc = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if proc.returncode != 0:
            raise PeersSetupError(
                f"`{' '.join(argv[:4])} ...` failed (exit code {proc.returncode}): check that "
                f"pip can reach the package index, or remove {venv} and try again"
            )
    done.write_text("\n".join(CLIENT_REQUIREMENTS) + "\n")
    return python
