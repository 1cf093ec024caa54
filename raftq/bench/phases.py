"""What every system in ``raftq bench`` is measured doing, written once for raftq and its peers.

Standard library only: the peer drivers (``raftq.bench.peers.drive``) import this module from
the benchmark's client venv, which holds the peers' client libraries and not raftq's.

Phases, each on a fresh queue:
- enqueue: one producer enqueues ``n`` jobs, each confirmed by the system (for raftq its
  ``enqueue`` call returned an id: committed and applied on the leader; for a peer its
  publisher confirm, PubAck or reply), with at most ``window`` unconfirmed (``produce``);
- process: ``workers`` workers in one process claim (up to ``claim_batch`` at a time: a peer's
  prefetch), no-op and ack all ``n``;
- mixed: a producer in a separate process and the workers at once; throughput = ``n`` / time
  until the last job was processed;
- paced: the producer paced at ``rate`` jobs/s for ``n_paced`` jobs while the workers run;
  end-to-end latency = the worker's receipt - the producer's timestamp in the payload.

Payloads are ``payload_bytes`` long: 8 bytes of ``time.time_ns()`` and 8 of sequence number,
then padding, so a worker can tell latency and duplicates (``Sink``).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from raftq.bench.progress import Progress

__all__ = ["HEADER", "Sink", "Workload", "make_payload", "paced_figures", "pct", "produce"]

HEADER = struct.Struct("<qQ")


@dataclass(frozen=True, slots=True)
class Workload:
    """What one run does. The first seven fields are every system's; the rest are raftq's
    client levers (the peers' drivers ignore them)."""

    n: int = 20_000
    n_paced: int = 3_000
    rate: int = 500
    window: int = 1_000
    workers: int = 4
    claim_batch: int = 10
    payload_bytes: int = 100
    # The client levers: coalesced enqueues and acks (``Client(coalesce=...)``); a worker
    # claims its next batch while the acks of the previous one are on their way (at most one
    # batch of acks outstanding per worker).
    coalesce: bool = True
    pipeline: bool = True  # the loop's only (``raftq.worker`` always overlaps acks and claims)
    worker: str = "raftq"  # "raftq" (raftq.worker.Worker) or "loop" (the hand-written loop)
    prefetch: int | Literal["auto"] = "auto"  # ``Worker(prefetch=...)``: ahead of free slots
    stream: bool = True  # ``Worker(stream=...)``: the worker stream (else HTTP claims)
    # Jobs spread over this many groups of a queue with limits that never bind (the cost of
    # the limiter's bookkeeping and round-robin); 0: no limits, no groups.
    groups: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_payload(seq: int, size: int) -> bytes:
    return HEADER.pack(time.time_ns(), seq) + b"x" * max(0, size - HEADER.size)


def pct(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile ``p`` (0..100) of ``values``, or None if there are none."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100.0 * (len(v) - 1))))]


async def produce(
    send: Callable[[bytes], Awaitable[object]],
    w: Workload,
    n: int,
    *,
    rate: int | None = None,
    progress: Progress | None = None,
) -> tuple[float, int, list[float]]:
    """Enqueue ``n`` jobs through ``send`` (which returns once the system confirmed the job),
    with at most ``w.window`` unconfirmed, paced at ``rate``/s if set.
    Returns (seconds, errors, confirmation latencies in ms)."""
    sem = asyncio.Semaphore(w.window)
    errors = 0
    clat: list[float] = []
    left = n
    all_done = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def one(seq: int) -> None:
        nonlocal errors, left
        t0 = time.perf_counter()
        try:
            await send(make_payload(seq, w.payload_bytes))
            clat.append((time.perf_counter() - t0) * 1000)
        except Exception:  # counted and reported; the run goes on
            errors += 1
        finally:
            sem.release()
            left -= 1
            if progress is not None:
                progress.add()
            if left == 0:
                all_done.set()

    t_begin = time.perf_counter()
    for i in range(n):
        if rate:
            delay = t_begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await sem.acquire()
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if n:
        await all_done.wait()
    return time.perf_counter() - t_begin, errors, clat


class Sink:
    """Counts processed jobs by sequence number (duplicates apart) and their latency."""

    def __init__(self, n: int, record_latency: bool, progress: Progress | None = None) -> None:
        self.n = n
        self.seen: set[int] = set()
        self.dups = 0
        self.lat_ms: list[float] = []
        self.record = record_latency
        self.done = asyncio.Event()
        self.t_last: float | None = None
        self.progress = progress

    def received(self, payload: bytes) -> None:
        """A worker got the job (its claim or fetch returned): end-to-end latency ends here."""
        if self.record:
            t0, _ = HEADER.unpack_from(payload)
            self.lat_ms.append((time.time_ns() - t0) / 1e6)

    def __call__(self, payload: bytes) -> None:
        """The job was acked: it counts as processed."""
        _, seq = HEADER.unpack_from(payload)
        if seq in self.seen:
            self.dups += 1
            return
        self.seen.add(seq)
        if self.progress is not None:
            self.progress.add()
        if len(self.seen) >= self.n:
            self.t_last = time.perf_counter()
            self.done.set()


def paced_figures(
    n: int,
    rate: int | None,
    secs: float,
    producer: dict[str, Any],
    sink: Sink,
    *,
    remaining: int | None,
) -> dict[str, Any]:
    """The figures of the paced phase: ``n`` jobs offered at ``rate``/s and all received in
    ``secs``; ``producer`` is the producer process's report (``secs``, ``errors``, ``clat``:
    its confirmation latencies in ms); ``remaining`` the jobs left in the queue after."""
    return {
        "n": n,
        "rate_target": rate,
        "secs": secs,
        "throughput": n / secs,
        "producer_rate": n / producer["secs"],
        "e2e_p50_ms": pct(sink.lat_ms, 50),
        "e2e_p99_ms": pct(sink.lat_ms, 99),
        "e2e_max_ms": max(sink.lat_ms) if sink.lat_ms else None,
        "confirm_p50_ms": pct(producer["clat"], 50),
        "confirm_p99_ms": pct(producer["clat"], 99),
        "errors": producer["errors"],
        "dups": sink.dups,
        "remaining": remaining,
    }
