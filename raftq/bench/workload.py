"""The workload of ``raftq.bench.phases``, run against raftq through ``raftq.client``.

The phases, the payloads and the figures are ``raftq.bench.phases``'s, shared with the peers'
drivers (``raftq.bench.peers``). A raftq job counts as processed once its ack is confirmed.

The workers are ``raftq.worker.Worker`` instances (``worker="raftq"``, what users run: one per
peer worker, each with ``concurrency`` and ``batch`` = ``claim_batch``, the peers' prefetch, a
no-op ``async`` handler, all on one shared client so their acks coalesce), or the hand-written
claim/ack loop of ``work_loop`` (``worker="loop"``, whose levers ``raftq bench --levers``
switches on one by one).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue as queue_mod
import time
from collections.abc import Sequence
from typing import Any

from raftq import runloop
from raftq.bench.phases import Sink, Workload, make_payload, paced_figures, pct
from raftq.bench.phases import produce as _produce
from raftq.bench.progress import Progress
from raftq.client import ClaimedJob, Client
from raftq.core.limits import MAX_SLOTS
from raftq.worker import Job, Worker
from raftq.worker.stream_source import StreamSource

__all__ = [
    "WORKERS",
    "Workload",
    "make_payload",
    "pct",
    "run_concurrent",
    "run_enqueue",
    "run_process",
]

WORKERS = ("raftq", "loop")  # raftq.worker.Worker, or the hand-written loop (``work_loop``)


def _client(urls: list[str], w: Workload) -> Client:
    return Client(urls, coalesce=w.coalesce, timeout_ms=30_000, retry_ms=60_000)


async def produce(
    client: Client,
    queue: str,
    w: Workload,
    n: int,
    *,
    rate: int | None = None,
    progress: Progress | None = None,
) -> tuple[float, int, list[float]]:
    """``raftq.bench.phases.produce`` through ``client.enqueue`` into ``queue`` (with
    ``w.groups``, job ``i`` in group ``g<i mod groups>``)."""
    sent = 0

    async def send(payload: bytes) -> object:
        nonlocal sent
        group = f"g{sent % w.groups}" if w.groups else None
        sent += 1
        return await client.enqueue(queue, payload, group=group)

    return await _produce(send, w, n, rate=rate, progress=progress)


async def work(client: Client, queue: str, w: Workload, sink: Sink) -> None:
    """``w.workers`` workers claiming up to ``w.claim_batch`` each, until ``sink.done``."""
    if w.worker == "raftq":
        await work_raftq(client, queue, w, sink)
    else:
        await work_loop(client, queue, w, sink)


class _Receipts:
    """The workers' ``JobSource``: ``client`` itself, plus the benchmark's two observations,
    made where the hand-written loop makes them: receipt when a claim returns, processed when
    an ack is confirmed (``Client.ack`` returned)."""

    def __init__(self, client: Client | StreamSource, sink: Sink) -> None:
        self._client = client
        self._sink = sink
        self._payloads: dict[int, bytes] = {}  # job id -> payload, claimed and not yet acked
        if isinstance(client, StreamSource):
            self.stop_claiming = client.stop_claiming
        self.heartbeat = client.heartbeat
        self.nack = client.nack
        self.release = client.release
        self.get_job = client.get_job

    async def claim(
        self,
        queues: str | Sequence[str],
        *,
        worker: str,
        max: int = 1,
        lease_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[ClaimedJob]:
        jobs = await self._client.claim(
            queues, worker=worker, max=max, lease_ms=lease_ms, wait_ms=wait_ms
        )
        for j in jobs:
            self._sink.received(j.payload)
            self._payloads[j.id] = j.payload
        return jobs

    async def ack(self, job_id: int, token: int, result: Any = None) -> None:
        await self._client.ack(job_id, token, result)
        payload = self._payloads.pop(job_id, None)
        if payload is not None:
            self._sink(payload)


async def _noop(job: Job) -> None:
    return None


async def work_raftq(client: Client, queue: str, w: Workload, sink: Sink) -> None:
    """``w.workers`` ``raftq.worker.Worker`` instances, each with ``concurrency`` and ``batch`` =
    ``w.claim_batch``, until ``sink.done``; then they stop gracefully."""
    workers = []
    streams: list[StreamSource] = []
    for i in range(w.workers):
        name = f"bench-w{i}"
        source = _Receipts(client, sink)
        if w.stream:  # what Worker does with a Client: the worker stream
            stream = StreamSource(client, [queue], worker=name, lease_ms=30_000)
            streams.append(await stream.open())
            source = _Receipts(stream, sink)
        worker = Worker(
            client=source,
            concurrency=w.claim_batch,
            batch=w.claim_batch,
            prefetch=w.prefetch,
            wait_ms=1000,
            name=name,
        )
        worker.add_handler(queue, _noop)
        workers.append(worker)
    tasks = [asyncio.create_task(wk.run()) for wk in workers]
    done: asyncio.Task[Any] = asyncio.create_task(sink.done.wait())
    try:
        await asyncio.wait([done, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wk in workers:
            wk.stop()
        done.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            await stream.close()
    for r in results:  # a worker that failed: its exception is the run's
        if isinstance(r, BaseException):
            raise r
    if not sink.done.is_set():
        raise RuntimeError("the workers stopped before every job was processed")


async def _ack_batch(client: Client, w: Workload, sink: Sink, jobs: list[ClaimedJob]) -> None:
    if w.coalesce:  # concurrent acks: the client sends them as one request
        await asyncio.gather(*(client.ack(j.id, j.token) for j in jobs))
    else:
        for j in jobs:
            await client.ack(j.id, j.token)
    for j in jobs:
        sink(j.payload)


async def _loop_worker(client: Client, queue: str, w: Workload, sink: Sink, i: int) -> None:
    """One coroutine of ``work_loop``: claim, then ack (pipelined or not), until done."""
    name = f"bench-w{i}"
    acking: asyncio.Task[None] | None = None
    try:
        while not sink.done.is_set():
            jobs = await client.claim(queue, worker=name, max=w.claim_batch, wait_ms=1000)
            for j in jobs:
                sink.received(j.payload)
            if acking is not None:  # at most one batch of acks outstanding
                await acking
                acking = None
            if not jobs:
                continue
            if w.pipeline:
                acking = asyncio.create_task(_ack_batch(client, w, sink, jobs))
            else:
                await _ack_batch(client, w, sink, jobs)
    finally:
        if acking is not None:
            acking.cancel()


async def work_loop(client: Client, queue: str, w: Workload, sink: Sink) -> None:
    """The hand-written loop: ``w.workers`` coroutines claiming up to ``w.claim_batch`` each,
    acks pipelined with the next claim if ``w.pipeline``, until ``sink.done``."""
    tasks = [asyncio.create_task(_loop_worker(client, queue, w, sink, i)) for i in range(w.workers)]
    done: asyncio.Task[Any] = asyncio.create_task(sink.done.wait())
    try:
        await asyncio.wait([done, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:  # a worker that failed: its exception is the run's
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        for t in [done, *tasks]:
            t.cancel()
        await asyncio.gather(done, *tasks, return_exceptions=True)


async def run_enqueue(urls: list[str], queue: str, w: Workload) -> dict[str, Any]:
    progress = Progress("enqueue", w.n)
    async with _client(urls, w) as c:
        await c.enqueue(queue, make_payload(10**9, w.payload_bytes))  # warm: leader, queue
        for job in await c.claim(queue, worker="warm"):  # and take it out again
            await c.ack(job.id, job.token)
        if w.groups:  # limits that never bind: only their bookkeeping is measured
            await c.set_limits(queue, concurrency=MAX_SLOTS, group_concurrency=MAX_SLOTS)
        secs, errors, clat = await produce(c, queue, w, w.n, progress=progress)
    progress.finish()
    return {
        "secs": secs,
        "rate": w.n / secs,
        "errors": errors,
        "confirm_p50_ms": pct(clat, 50),
        "confirm_p99_ms": pct(clat, 99),
    }


async def run_process(urls: list[str], queue: str, w: Workload) -> dict[str, Any]:
    progress = Progress("process", w.n)
    sink = Sink(w.n, False, progress)
    async with _client(urls, w) as c:
        t0 = time.perf_counter()
        await work(c, queue, w, sink)
        secs = (sink.t_last or time.perf_counter()) - t0
        left = await remaining(c, queue)
    progress.finish()
    return {"secs": secs, "rate": w.n / secs, "dups": sink.dups, "remaining": left}


async def remaining(c: Client, queue: str) -> int:
    """Jobs of ``queue`` not finished (queued, delayed, leased)."""
    st = await c.queue(queue)
    depth = st["depth"]
    return sum(int(depth.get(k, 0)) for k in ("queued", "delayed", "leased"))


def _producer_main(args: tuple[list[str], str, Workload, int, int | None, Any, Any, Any]) -> None:
    """The producer process of the concurrent phases."""
    urls, queue, w, n, rate, ready, go, results = args

    async def main() -> None:
        async with _client(urls, w) as c:
            await c.cluster()  # connect before the clock starts
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            secs, errors, clat = await produce(c, queue, w, n, rate=rate)
        results.put({"secs": secs, "errors": errors, "clat": clat})

    runloop.run(main())


async def run_concurrent(
    urls: list[str], queue: str, w: Workload, *, n: int, rate: int | None, label: str
) -> dict[str, Any]:
    """Producer process + workers in this process at once (the mixed and paced phases)."""
    progress = Progress(label, n)
    sink = Sink(n, True, progress)
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_producer_main, args=((urls, queue, w, n, rate, ready, go, results),), daemon=True
    )
    proc.start()
    loop = asyncio.get_running_loop()
    try:
        if not await loop.run_in_executor(None, ready.wait, 60):
            raise RuntimeError("the producer process did not start")
        async with _client(urls, w) as c:
            await c.cluster()
            t_go = time.perf_counter()
            go.set()
            await work(c, queue, w, sink)
            t_end = sink.t_last or time.perf_counter()
            try:
                prod = await loop.run_in_executor(None, results.get, True, 120)
            except queue_mod.Empty:
                prod = {"secs": float("nan"), "errors": -1, "clat": []}
            left = await remaining(c, queue)
    finally:
        await loop.run_in_executor(None, proc.join, 30)
        if proc.is_alive():
            proc.kill()
    progress.finish()
    return paced_figures(n, rate, t_end - t_go, prod, sink, remaining=left)
