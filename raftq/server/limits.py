"""Per-caller request rate limits: one token bucket per principal, on each node.

A bucket holds up to ``burst`` requests and refills at ``rate_per_s``; a request takes one, or
is refused with the whole seconds until one is available (the ``Retry-After`` of the 429).
Buckets live in this process only: the limit is per node a client talks to (a forwarded
request is counted by the node that received it, not again by the leader).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

__all__ = ["RateLimiter"]

_MAX_KEYS: Final = 10_000  # beyond it, full (idle) buckets are forgotten: memory stays bounded


class RateLimiter:
    """Token buckets by key.

    Args:
        rate_per_s: sustained requests per second per key (> 0).
        burst: bucket size; at least 1 (0 means ``rate_per_s``).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self, rate_per_s: int, burst: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._rate = float(rate_per_s)
        self._burst = float(max(1, burst or rate_per_s))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> int | None:
        """Take one request for ``key``: ``None`` if allowed, else seconds to wait (>= 1)."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > _MAX_KEYS:
                self._forget_idle(now)
            return None
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def _forget_idle(self, now: float) -> None:
        full = [
            k
            for k, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self._rate >= self._burst
        ]
        for k in full:
            del self._buckets[k]
