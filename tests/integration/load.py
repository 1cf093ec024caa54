"""A load generator with a ledger, for crash tests against a real cluster.

Producers and workers talk straight HTTP to a *random* node on every attempt (not the
client library's leader-following), so followers forward and dead nodes are hit too. The
ledger records only what a client could rely on:

- ``acked``: idempotency key -> job id, for every enqueue answered ``201`` (guarantee 1: each
  of these must still exist afterwards);
- ``completed``: job id -> the distinct fencing tokens of acks answered ``200`` (guarantee 2:
  at most one; and such a job must end ``succeeded``);
- ``violations``: contradictions seen live (one key answered with two ids, one id for two
  keys, a claimed job whose payload no producer sent, an answer of an unexpected status).

Every request carries an ``X-Request-Id`` reused on its retries and every enqueue an
idempotency ``key``, so a retry after an uncertain failure (timeout, reset, 5xx) never
creates a second job: the retry goes to another random node until an answer or until the
retry budget is spent (then the outcome stays unknown and nothing is recorded as acked).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["Ledger", "Load", "check_ledger"]

# A queue takes at most this many jobs, well below MAX_FINISHED_PER_QUEUE (10 000): finished
# jobs past that are collected, and a collected job would read as "lost".
_JOBS_PER_QUEUE = 2_000
_ATTEMPT_TIMEOUT_S = 5.0
_LIVE_STATES = {"queued", "delayed", "leased", "succeeded", "dead"}


@dataclass
class Ledger:
    acked: dict[str, int] = field(default_factory=dict)
    id_to_key: dict[int, str] = field(default_factory=dict)
    attempted: set[str] = field(default_factory=set)
    unknown: int = 0
    claimed: int = 0
    completed: dict[int, set[int]] = field(default_factory=dict)
    nacked: int = 0
    stale: int = 0
    violations: list[str] = field(default_factory=list)

    def record_enqueue(self, key: str, job_id: int) -> None:
        old = self.acked.get(key)
        if old is not None and old != job_id:
            self.violations.append(f"key {key} acknowledged as job {old} and as job {job_id}")
        other = self.id_to_key.get(job_id)
        if other is not None and other != key:
            self.violations.append(f"job {job_id} acknowledged for keys {other} and {key}")
        self.acked[key] = job_id
        self.id_to_key[job_id] = key


class _GaveUpError(Exception):
    """The retry budget of one operation ran out: its outcome is unknown."""


class Load:
    """Producers and workers running on the caller's event loop until ``stop()``.

    Args:
        apis: the nodes' API addresses (``host:port``); each attempt picks one at random.
        producers: concurrent producers, each enqueueing one job at a time.
        workers: concurrent workers claiming up to 8 jobs, acking most, nacking some and
            dropping a few (their leases expire and the job is delivered again).
        pause_s: a producer's pause between enqueues (bounds the number of jobs to check).
        retry_s: how long one operation is retried before its outcome counts as unknown.
    """

    def __init__(
        self,
        apis: list[str],
        *,
        producers: int = 4,
        workers: int = 2,
        pause_s: float = 0.01,
        retry_s: float = 30.0,
        seed: int | None = None,
    ) -> None:
        self.apis = apis
        self.n_producers = producers
        self.n_workers = workers
        self.pause_s = pause_s
        self.retry_s = retry_s
        self.ledger = Ledger()
        self.rng = random.Random(seed)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._queues: dict[int, str] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._tasks = [asyncio.create_task(self._producer(i)) for i in range(self.n_producers)]
        self._tasks += [asyncio.create_task(self._worker(i)) for i in range(self.n_workers)]

    async def stop(self) -> None:
        """Stop issuing new operations; operations in flight finish (answer or budget)."""
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            if self._session is not None:
                await self._session.close()

    async def __aenter__(self) -> Load:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_acked(self, n: int, timeout_s: float) -> None:
        """Wait until ``n`` more enqueues than now have been acknowledged."""
        target = len(self.ledger.acked) + n
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self.ledger.acked) < target:
            if loop.time() > deadline:
                raise AssertionError(
                    f"only {len(self.ledger.acked)} of {target} enqueues acknowledged after "
                    f"{timeout_s}s: the cluster stopped taking writes"
                )
            await asyncio.sleep(0.05)

    @property
    def queues(self) -> list[str]:
        return sorted(self._queues.values())

    # -- one operation ---------------------------------------------------------------------

    async def _call(
        self, path: str, body: dict[str, Any], ok: Callable[[int, Any], Awaitable[bool] | bool]
    ) -> Any:
        """POST ``body`` to random nodes until an answer ``ok`` accepts (returns it) or the
        budget is spent (raises ``_GaveUpError``). ``ok`` returns False for a retryable answer."""
        assert self._session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_s
        headers = {"Content-Type": "application/json", "X-Request-Id": uuid.uuid4().hex}
        data = json.dumps(body).encode()
        delay = 0.02
        while loop.time() < deadline:
            url = f"http://{self.rng.choice(self.apis)}{path}"
            try:
                async with self._session.post(
                    url,
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=_ATTEMPT_TIMEOUT_S),
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                answer = json.loads(raw) if raw else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                status, answer = 0, None
            if status:
                accepted = ok(status, answer)
                if not isinstance(accepted, bool):
                    accepted = await accepted
                if accepted:
                    return answer
            await asyncio.sleep(delay * self.rng.uniform(0.5, 1.0))
            delay = min(delay * 2, 0.5)
        raise _GaveUpError

    def _retryable(self, status: int, answer: Any, what: str) -> bool:
        """False for answers worth retrying; records anything else as a violation."""
        if status >= 500 or status == 429:
            return False
        self.ledger.violations.append(f"{what}: unexpected HTTP {status} {answer!r}")
        return False

    # -- producers -------------------------------------------------------------------------

    async def _producer(self, p: int) -> None:
        seq = 0
        while not self._stop.is_set():
            queue = f"d{p}-{seq // _JOBS_PER_QUEUE}"
            self._queues[p] = queue
            key = f"p{p}-{seq}"
            seq += 1
            self.ledger.attempted.add(key)
            body = {"payload": {"k": key}, "key": key}

            def ok(status: int, answer: Any, key: str = key) -> bool:
                if status == 201:
                    return True
                return self._retryable(status, answer, f"enqueue {key}")

            try:
                answer = await self._call(f"/v1/queues/{queue}/jobs", body, ok)
            except _GaveUpError:
                self.ledger.unknown += 1
                continue
            self.ledger.record_enqueue(key, int(answer["id"]))
            await asyncio.sleep(self.pause_s)

    # -- workers ---------------------------------------------------------------------------

    async def _worker(self, w: int) -> None:
        name = f"w{w}"
        while not self._stop.is_set():
            queues = self.queues
            if not queues:
                await asyncio.sleep(0.05)
                continue
            body = {"queues": queues, "worker": name, "max": 8, "lease_ms": 3_000, "wait_ms": 0}

            def claim_ok(status: int, answer: Any) -> bool:
                return status == 200 or self._retryable(status, answer, "claim")

            try:
                answer = await self._call("/v1/claim", body, claim_ok)
            except _GaveUpError:
                continue
            jobs = answer["jobs"]
            if not jobs:
                await asyncio.sleep(0.05)
                continue
            for job in jobs:
                self.ledger.claimed += 1
                self._check_payload(job)
                await self._finish(job)

    def _check_payload(self, job: dict[str, Any]) -> None:
        key = job["payload"].get("k") if isinstance(job["payload"], dict) else None
        if key not in self.ledger.attempted:
            self.ledger.violations.append(f"claimed job {job['id']} that nobody sent: {job}")
        elif key in self.ledger.acked and self.ledger.acked[key] != job["id"]:
            self.ledger.violations.append(
                f"claimed job {job['id']} for key {key}, acknowledged as {self.ledger.acked[key]}"
            )

    async def _finish(self, job: dict[str, Any]) -> None:
        job_id, token = int(job["id"]), int(job["token"])
        roll = self.rng.random()
        if roll < 0.05:
            return  # dropped: the lease expires and the job comes back
        action = "ack" if roll < 0.9 else "nack"
        body: dict[str, Any] = {"token": token}
        if action == "nack":
            body["retry_in_ms"] = 0

        def ok(status: int, answer: Any) -> bool:
            if status == 200:
                return True
            if status == 409:  # the lease expired meanwhile: refused, nothing done
                self.ledger.stale += 1
                return True
            return self._retryable(status, answer, f"{action} {job_id}")

        try:
            answer = await self._call(f"/v1/jobs/{job_id}/{action}", body, ok)
        except _GaveUpError:
            return
        if answer is None or "error" in answer:
            return
        if action == "ack":
            if answer.get("state") != "succeeded":
                self.ledger.violations.append(f"ack of {job_id} answered {answer}")
            self.ledger.completed.setdefault(job_id, set()).add(token)
        else:
            self.ledger.nacked += 1


async def _read_jobs(api: str, ids: list[int]) -> dict[int, Any]:
    """``GET /v1/jobs/{id}`` of each id on one node (its local view): id -> body or status."""
    out: dict[int, Any] = {}
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(job_id: int) -> None:
            async with sem:
                for _ in range(5):
                    try:
                        async with session.get(
                            f"http://{api}/v1/jobs/{job_id}",
                            timeout=aiohttp.ClientTimeout(total=10),
                        ) as resp:
                            out[job_id] = await resp.json() if resp.status == 200 else resp.status
                            return
                    except (aiohttp.ClientError, TimeoutError):
                        await asyncio.sleep(0.2)
                out[job_id] = "unreachable"

        await asyncio.gather(*(one(i) for i in ids))
    return out


async def check_ledger(ledger: Ledger, apis: list[str]) -> None:
    """Assert guarantees 1 and 2 against the nodes' converged state.

    Call it after the cluster converged *after a write through the current leader* (then
    every node's applied state contains everything acknowledged before). Each job is read
    from one node, spread over all of them (their states are identical once converged).
    """
    assert not ledger.violations, "\n".join(ledger.violations[:20])
    ids = sorted(set(ledger.acked.values()) | set(ledger.completed))
    states: dict[int, Any] = {}
    for i, api in enumerate(apis):
        states.update(await _read_jobs(api, ids[i :: len(apis)]))
    lost = [(i, states[i]) for i in ids if i in ledger.id_to_key and not _live(states[i])]
    assert not lost, f"{len(lost)} of {len(ledger.acked)} acknowledged enqueues lost: {lost[:10]}"
    twice = {i: t for i, t in ledger.completed.items() if len(t) > 1}
    assert not twice, f"jobs completed twice (job -> tokens): {dict(list(twice.items())[:10])}"
    undone = [(i, states[i]) for i in ledger.completed if _state(states[i]) != "succeeded"]
    assert not undone, f"{len(undone)} acknowledged acks undone: {undone[:10]}"


def _state(body: Any) -> str | None:
    return body.get("state") if isinstance(body, dict) else None


def _live(body: Any) -> bool:
    return _state(body) in _LIVE_STATES
