"""Limits and deadlines of the HTTP API (per node; not replicated, so nodes may differ)."""

from __future__ import annotations

from dataclasses import dataclass

from raftq.core.limits import MAX_BATCH_JOBS, MAX_PAYLOAD_BYTES
from raftq.errors import ConfigError

__all__ = ["ServerSettings"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """How much the API accepts and how long it waits.

    Attributes:
        max_body_bytes: largest request body; a larger one is answered 413 ``body_too_large``.
        max_payload_bytes: largest encoded job payload or ack result (413 ``payload_too_large``).
        max_batch_jobs: most jobs in one ``{"jobs": [...]}`` enqueue.
        max_wait_ms: cap of a claim's long-poll ``wait_ms`` (larger values are lowered to it).
        submit_timeout_ms: deadline of one command through the log; past it the answer is 503
            ``outcome_unknown`` (the client retries with the same request id).
        forward_timeout_ms: deadline of one request forwarded to the leader (at least
            ``submit_timeout_ms`` + 1 s is used; a long-poll claim gets ``max_wait_ms`` on top).
        leader_wait_ms: how long a write waits for a leader to be elected before answering
            503 ``no_leader`` (elections take about a second).
        retry_after_s: the ``Retry-After`` value of 503 answers.
    """

    max_body_bytes: int = 16 * MIB
    max_payload_bytes: int = 1 * MIB
    max_batch_jobs: int = 1000
    max_wait_ms: int = 60_000
    submit_timeout_ms: int = 10_000
    forward_timeout_ms: int = 15_000
    leader_wait_ms: int = 3_000
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        problems: list[str] = []
        checks: list[tuple[str, int, int, int]] = [
            ("max_body_bytes", self.max_body_bytes, 1024, 1024 * MIB),
            ("max_payload_bytes", self.max_payload_bytes, 1, MAX_PAYLOAD_BYTES),
            ("max_batch_jobs", self.max_batch_jobs, 1, MAX_BATCH_JOBS),
            ("max_wait_ms", self.max_wait_ms, 0, 3_600_000),
            ("submit_timeout_ms", self.submit_timeout_ms, 1, 3_600_000),
            ("forward_timeout_ms", self.forward_timeout_ms, 1, 3_600_000),
            ("leader_wait_ms", self.leader_wait_ms, 0, 3_600_000),
            ("retry_after_s", self.retry_after_s, 0, 3600),
        ]
        for name, value, lo, hi in checks:
            if type(value) is not int or not lo <= value <= hi:
                problems.append(f"server.{name} must be an integer in {lo}..{hi}, got {value!r}")
        if problems:
            raise ConfigError(problems)
