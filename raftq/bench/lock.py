"""``/tmp/bench.lock``: the machine-wide lock every measured part of ``raftq bench`` holds, so
that two benchmarks (or a benchmark and a peer server's boot) never share the CPUs."""

from __future__ import annotations

import contextlib
import fcntl
import sys
from collections.abc import Iterator

__all__ = ["LOCK_PATH", "bench_lock"]

LOCK_PATH = "/tmp/bench.lock"


@contextlib.contextmanager
def bench_lock(enabled: bool) -> Iterator[None]:
    """Hold ``LOCK_PATH`` (an exclusive ``flock``) for the block, if ``enabled``."""
    if not enabled:
        yield
        return
    with open(LOCK_PATH, "a") as f:
        print(f"waiting for {LOCK_PATH} ...", file=sys.stderr, flush=True)
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
