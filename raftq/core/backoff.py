"""Retry backoff: exponential, capped, with jitter derived from the job id (deterministic)."""

from __future__ import annotations

__all__ = ["BACKOFF_BASE_MS", "BACKOFF_CAP_MS", "backoff_ms"]

BACKOFF_BASE_MS = 1_000
BACKOFF_CAP_MS = 3_600_000
_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64 finalizer: a fixed integer hash, identical in every process."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def backoff_ms(job_id: int, attempts: int) -> int:
    """Delay before retry number ``attempts`` (>= 1) of ``job_id``.

    The nominal delay doubles from 1 s up to 1 h; the result lies in [3/4, 1] of it, spread by a
    hash of (job id, attempts) so that jobs failing together do not retry together.
    """
    exponent = min(max(attempts, 1) - 1, 32)
    nominal = min(BACKOFF_CAP_MS, BACKOFF_BASE_MS << exponent)
    spread = nominal // 4
    return nominal - spread + _mix64((job_id << 16) ^ attempts) % (spread + 1)
