"""The one retry policy: which errors are retried, the backoff schedule, and the deadline.

Used by the client's transport (``raftq.client.transport``: every attempt's failure, with
jitter), by the HTTP handlers while a write waits for a leader to be elected
(``raftq.server.handlers``: a steady 50 ms poll), and by the embedded node's operations
(``raftq.node.embedded``). Each caller states its schedule as a ``RetryPolicy``; one call's
retries are an ``Attempts`` (its deadline, counted from its first attempt).

Only failures a retry may cure are retried: the definite ones (``NotLeader``, ``NoLeader``,
``Overloaded``: nothing was applied) and ``OutcomeUnknown`` (retried with the same request id,
so it is applied at most once). A refusal (``Rejected``, ``AuthError``) is final.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from raftq.errors import NoLeader, NotLeader, OutcomeUnknown, Overloaded

__all__ = ["CLUSTER_RETRYABLE", "Attempts", "RetryPolicy"]

# The cluster outcomes a retry may cure (definite failures, and unknown outcomes).
CLUSTER_RETRYABLE: tuple[type[Exception], ...] = (NotLeader, NoLeader, Overloaded, OutcomeUnknown)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one kind of call retries.

    Attributes:
        budget_ms: how long after the first attempt a retry may still start.
        base_s: the first backoff; each next one doubles, up to ``cap_s``.
        cap_s: the longest backoff.
        jitter: each backoff is drawn from ``[step * (1 - jitter), step]`` (0: exact).
        retry_on: the errors worth another attempt.
    """

    budget_ms: int
    base_s: float = 0.05
    cap_s: float = 1.0
    jitter: float = 0.0
    retry_on: tuple[type[Exception], ...] = CLUSTER_RETRYABLE

    def step_s(self, attempt: int) -> float:
        """The backoff after failed attempt number ``attempt`` (1, 2, ...), before jitter."""
        doublings: int = min(max(attempt, 1) - 1, 10)
        return min(self.cap_s, self.base_s * float(2**doublings))

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt."""
        return isinstance(error, self.retry_on)

    def start(self, extra_ms: int = 0) -> Attempts:
        """The retries of one call starting now (running loop), ``extra_ms`` more budget (a
        long-poll's wait)."""
        return Attempts(self, extra_ms)


class Attempts:
    """The retries of one call: its deadline and how many attempts failed so far."""

    def __init__(self, policy: RetryPolicy, extra_ms: int = 0) -> None:
        self.policy = policy
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + (policy.budget_ms + extra_ms) / 1000
        self.failed = 0

    def remaining_s(self) -> float:
        """Seconds left before the deadline (negative once it passed)."""
        return self.deadline - self._loop.time()

    def next_delay(self) -> float | None:
        """Count one more failed attempt; the backoff before the next one (never past the
        deadline), or ``None`` once the deadline passed: give up."""
        self.failed += 1
        remaining = self.remaining_s()
        if remaining <= 0:
            return None
        step = self.policy.step_s(self.failed)
        if self.policy.jitter:
            step *= random.uniform(1.0 - self.policy.jitter, 1.0)
        return min(remaining, step)
