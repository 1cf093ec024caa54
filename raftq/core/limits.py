"""Limits and defaults of the machine. Changing one changes replicated behaviour: every node of
a cluster must run the same values (they are code, not configuration, for that reason)."""

from __future__ import annotations

import re

__all__ = [
    "DEFAULT_DEDUP_WINDOW_MS",
    "DEFAULT_LEASE_MS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETENTION_MS",
    "MAX_BATCH_JOBS",
    "MAX_CLAIM",
    "MAX_CLAIM_QUEUES",
    "MAX_DEDUP_WINDOW_MS",
    "MAX_DELAY_MS",
    "MAX_DEPENDENCIES",
    "MAX_ERROR_CHARS",
    "MAX_FINISHED_PER_QUEUE",
    "MAX_KEY_CHARS",
    "MAX_LEASE_MS",
    "MAX_LOG_VERSION",
    "MAX_MAX_ATTEMPTS",
    "MAX_PAYLOAD_BYTES",
    "MAX_PROGRESS_BYTES",
    "MAX_QUEUES",
    "MAX_RATE_LIMIT",
    "MAX_RATE_PERIOD_MS",
    "MAX_REQUEST_ID_CHARS",
    "MAX_RETENTION_MS",
    "MAX_SCHEDULES",
    "MAX_SCHEDULE_TEXT_CHARS",
    "MAX_SLOTS",
    "MAX_TIME_MS",
    "MAX_WORKER_CHARS",
    "QUEUE_NAME_RE",
    "REQUEST_WINDOW_MAX",
    "REQUEST_WINDOW_MS",
    "valid_queue_name",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# Times are ms since the Unix epoch; 2**47 ms is year 6429. Bounded so heap keys pack into ints.
MAX_TIME_MS = 2**47 - 1
MAX_LOG_VERSION = 65535  # EnableVersion's range
MAX_DELAY_MS = 366 * DAY_MS

DEFAULT_LEASE_MS = 30_000
MAX_LEASE_MS = DAY_MS
DEFAULT_MAX_ATTEMPTS = 5
MAX_MAX_ATTEMPTS = 1_000

# Idempotency keys: memory grows with enqueue rate x window, so the default stays small.
DEFAULT_DEDUP_WINDOW_MS = 10 * MINUTE_MS
MAX_DEDUP_WINDOW_MS = DAY_MS
# Succeeded and cancelled jobs stay readable this long, and at most this many per queue.
DEFAULT_RETENTION_MS = HOUR_MS
MAX_RETENTION_MS = 7 * DAY_MS
MAX_FINISHED_PER_QUEUE = 10_000

# Request-id dedup: a client retry must arrive within this window to be answered from memory.
# Bounded in count too, so a flood of distinct ids cannot grow memory without limit.
REQUEST_WINDOW_MS = 2 * MINUTE_MS
REQUEST_WINDOW_MAX = 1_000_000

# Hard caps: the HTTP layer enforces smaller, configurable limits in front of these.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
MAX_BATCH_JOBS = 10_000
MAX_CLAIM = 1_000
MAX_CLAIM_QUEUES = 64  # queues one claim may name
MAX_QUEUES = 10_000
MAX_KEY_CHARS = 256
MAX_WORKER_CHARS = 256
MAX_SCHEDULES = 10_000
MAX_SCHEDULE_TEXT_CHARS = 256  # a schedule's cron expression and time zone, kept as text
MAX_REQUEST_ID_CHARS = 128
MAX_ERROR_CHARS = 64 * 1024
MAX_DEPENDENCIES = 1_000  # dependencies of one job (``depends_on``)
MAX_PROGRESS_BYTES = 64 * 1024  # a heartbeat's progress, and its checkpoint, each (encoded)

# Queue limits (``SetLimits``). A rate keeps the start times of its last ``limit`` claims per
# queue and per group, so its bound is a memory bound too.
MAX_SLOTS = 1_000_000  # concurrency and group_concurrency
MAX_RATE_LIMIT = 100_000
MAX_RATE_PERIOD_MS = DAY_MS

QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def valid_queue_name(name: str) -> bool:
    return QUEUE_NAME_RE.fullmatch(name) is not None
