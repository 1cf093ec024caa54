"""One repetition of ``raftq.bench.phases`` against one peer system, with that system's own
Python client. Run by ``raftq.bench.peers.run`` in the benchmark's client venv (the clients
are imported by name when a driver starts, so this module imports with the standard library
alone); it writes one JSON record: ``{"config", "enqueue", "process", "mixed", "paced"}``.

Each peer does what raftq does, with the same counts, payloads and in-flight limits:
- an enqueue is confirmed by the system (NATS: the stream's PubAck; RabbitMQ: the publisher
  confirm of a persistent message; arq: ``enqueue_job`` returned, the job is in Redis);
- ``workers`` consumers, each holding up to ``claim_batch`` jobs (NATS: pull ``fetch`` of that
  many; RabbitMQ: ``basic.qos`` prefetch; arq: one worker with ``max_jobs`` = workers x
  claim_batch); a job is received when it reaches the consumer and processed after its ack
  (NATS: the ack is sent, not confirmed, as NATS clients do; RabbitMQ: ``basic.ack``; arq: the
  function returned, arq then deletes the job).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import multiprocessing as mp
import queue as queue_mod
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from raftq import runloop
from raftq.bench.phases import Sink, Workload, paced_figures, pct, produce
from raftq.bench.progress import Progress

__all__ = ["PEERS", "main"]

Send = Callable[[bytes], Awaitable[object]]


class Peer:
    """A peer system as the phases use it: a fresh queue, a producer, workers, what is left."""

    def __init__(self, conn: dict[str, Any], w: Workload) -> None:
        self.conn = conn
        self.w = w

    @property
    def window(self) -> int:
        return self.w.window

    async def setup(self) -> None:
        """Make the queue fresh and empty."""
        raise NotImplementedError

    async def open_producer(self) -> Send:
        raise NotImplementedError

    async def close_producer(self) -> None:
        raise NotImplementedError

    async def open_workers(self) -> None:
        raise NotImplementedError

    async def run_workers(self, sink: Sink) -> None:
        """Consume until ``sink.done``; return with every ack sent."""
        raise NotImplementedError

    async def close_workers(self) -> None:
        raise NotImplementedError

    async def remaining(self) -> int | None:
        """Jobs still queued or unacked (0 after a phase)."""
        raise NotImplementedError


async def _until_done(sink: Sink, tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for ``sink.done``; a consumer that failed first fails the run."""
    done: asyncio.Task[Any] = asyncio.create_task(sink.done.wait())
    try:
        await asyncio.wait([done, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise RuntimeError(f"a consumer failed: {t.exception()!r}")
    finally:
        for t in [done, *tasks]:
            t.cancel()
        await asyncio.gather(done, *tasks, return_exceptions=True)


class NatsPeer(Peer):
    """NATS JetStream: a work-queue stream of file storage, replicated on 3 servers, and one
    durable pull consumer with explicit acks."""

    STREAM, SUBJECT, DURABLE = "JOBS", "jobs.work", "workers"
    REPLICAS = 3

    async def _connect(self) -> Any:
        nats = importlib.import_module("nats")
        return await nats.connect(
            servers=self.conn["urls"][:1], max_reconnect_attempts=5, pending_size=64 << 20
        )

    async def setup(self) -> None:
        api = importlib.import_module("nats.js.api")
        nc = await self._connect()
        js = nc.jetstream(timeout=10)
        deadline = time.monotonic() + 60
        try:
            while True:  # right after start the JetStream meta leader may still be elected
                try:
                    await self._recreate(js, api)
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1)
        finally:
            await nc.close()

    async def _recreate(self, js: Any, api: Any) -> None:
        errors = importlib.import_module("nats.js.errors")
        with contextlib.suppress(errors.NotFoundError):
            await js.delete_stream(self.STREAM)
        await js.add_stream(
            api.StreamConfig(
                name=self.STREAM,
                subjects=[self.SUBJECT],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                num_replicas=self.REPLICAS,
            )
        )
        await js.add_consumer(
            self.STREAM,
            api.ConsumerConfig(
                durable_name=self.DURABLE,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=60,
                max_ack_pending=10_000,
            ),
        )

    async def open_producer(self) -> Send:
        self._pnc = await self._connect()
        js = self._pnc.jetstream(publish_async_max_pending=self.window + 16)

        async def send(payload: bytes) -> object:
            acked = await js.publish_async(self.SUBJECT, payload)
            return await acked

        return send

    async def close_producer(self) -> None:
        await self._pnc.close()

    async def open_workers(self) -> None:
        self._wnc = await self._connect()
        js = self._wnc.jetstream()
        self._subs = [
            await js.pull_subscribe_bind(durable=self.DURABLE, stream=self.STREAM)
            for _ in range(self.w.workers)
        ]

    async def run_workers(self, sink: Sink) -> None:
        timeouts = (asyncio.TimeoutError, importlib.import_module("nats.errors").TimeoutError)

        async def consume(sub: Any) -> None:
            while not sink.done.is_set():
                try:
                    msgs = await sub.fetch(self.w.claim_batch, timeout=1.0)
                except timeouts:
                    continue
                for m in msgs:
                    sink.received(m.data)
                    await m.ack()
                    sink(m.data)

        await _until_done(sink, [asyncio.create_task(consume(s)) for s in self._subs])
        await self._wnc.flush()  # every ack has left the client

    async def close_workers(self) -> None:
        await self._wnc.close()

    async def remaining(self) -> int | None:
        nc = await self._connect()
        try:
            js = nc.jetstream()
            left: int | None = None
            for _ in range(50):  # acks reach the stream through the consumer's own group
                left = int((await js.stream_info(self.STREAM)).state.messages)
                if left == 0:
                    break
                await asyncio.sleep(0.1)
            return left
        finally:
            await nc.close()


class RabbitPeer(Peer):
    """RabbitMQ: a durable quorum queue, persistent messages with publisher confirms."""

    QUEUE = "jobs"

    async def _connect(self) -> Any:
        return await importlib.import_module("aio_pika").connect(self.conn["url"])

    async def setup(self) -> None:
        conn = await self._connect()
        try:
            ch = await conn.channel()
            await ch.queue_delete(self.QUEUE)
            args = {"x-queue-type": "quorum"}
            await ch.declare_queue(self.QUEUE, durable=True, arguments=args)
        finally:
            await conn.close()

    async def open_producer(self) -> Send:
        aio_pika = importlib.import_module("aio_pika")
        self._pconn = await self._connect()
        exchange = (await self._pconn.channel(publisher_confirms=True)).default_exchange
        persistent = aio_pika.DeliveryMode.PERSISTENT

        async def send(payload: bytes) -> object:  # returns on the broker's confirm
            msg = aio_pika.Message(payload, delivery_mode=persistent)
            return await exchange.publish(msg, routing_key=self.QUEUE)

        return send

    async def close_producer(self) -> None:
        await self._pconn.close()

    async def open_workers(self) -> None:
        self._wconn = await self._connect()
        self._chans, self._queues = [], []
        for _ in range(self.w.workers):
            ch = await self._wconn.channel()
            await ch.set_qos(prefetch_count=self.w.claim_batch)
            self._chans.append(ch)
            self._queues.append(await ch.get_queue(self.QUEUE, ensure=True))

    async def run_workers(self, sink: Sink) -> None:
        async def consume(q: Any) -> None:
            async with q.iterator() as it:
                async for message in it:
                    sink.received(message.body)
                    await message.ack()
                    sink(message.body)

        await _until_done(sink, [asyncio.create_task(consume(q)) for q in self._queues])
        # One synchronous round trip per channel: every ack sent before it was processed.
        await asyncio.gather(*(ch.get_queue(self.QUEUE, ensure=True) for ch in self._chans))

    async def close_workers(self) -> None:
        await self._wconn.close()

    async def remaining(self) -> int | None:
        conn = await self._connect()
        try:
            ch = await conn.channel()
            left: int | None = None
            for _ in range(50):
                q = await ch.declare_queue(self.QUEUE, passive=True)
                left = int(q.declaration_result.message_count)
                if left == 0:
                    break
                await asyncio.sleep(0.1)
            return left
        finally:
            await conn.close()


async def _arq_job(ctx: dict[str, Any], payload: bytes) -> None:
    """The arq job: a no-op that tells the sink (arq records its end and deletes it after)."""
    sink: Sink = ctx["sink"]
    sink.received(payload)
    sink(payload)


class ArqPeer(Peer):
    """arq on Redis (append-only file fsynced every second), polling every 10 ms."""

    POLL_DELAY_S = 0.01
    # arq's enqueue is a Redis transaction per job on a shared pool; more than this many in
    # flight only queues on the pool's connections.
    MAX_WINDOW = 64

    @property
    def window(self) -> int:
        return min(self.w.window, self.MAX_WINDOW)

    def _settings(self) -> Any:
        connections = importlib.import_module("arq.connections")
        return connections.RedisSettings(host=self.conn["host"], port=self.conn["port"])

    async def _pool(self) -> Any:
        return await importlib.import_module("arq").create_pool(self._settings())

    async def setup(self) -> None:
        pool = await self._pool()
        await pool.flushdb()
        await pool.aclose()

    async def open_producer(self) -> Send:
        self._ppool = pool = await self._pool()

        async def send(payload: bytes) -> object:
            job = await pool.enqueue_job("noop", payload)
            if job is None:
                raise RuntimeError("arq did not enqueue the job")
            return job

        return send

    async def close_producer(self) -> None:
        await self._ppool.aclose()

    async def open_workers(self) -> None:
        worker_mod = importlib.import_module("arq.worker")
        self._wpool = await self._pool()
        self._ctx: dict[str, Any] = {"sink": None}  # not empty: arq would replace an empty one
        self._worker = worker_mod.Worker(
            functions=[worker_mod.func(_arq_job, name="noop")],
            redis_pool=self._wpool,
            max_jobs=self.w.workers * self.w.claim_batch,
            poll_delay=self.POLL_DELAY_S,
            handle_signals=False,
            burst=False,
            ctx=self._ctx,
            log_results=False,
        )

    async def run_workers(self, sink: Sink) -> None:
        self._ctx["sink"] = sink
        main = asyncio.create_task(self._worker.main())
        await _until_done(sink, [main])
        # _until_done cancelled the poll loop; the jobs it started finish (their "ack").
        await asyncio.gather(*self._worker.tasks.values(), return_exceptions=True)

    async def close_workers(self) -> None:
        await self._worker.close()

    async def remaining(self) -> int | None:
        pool = await self._pool()
        try:
            return int(await pool.zcard("arq:queue"))
        finally:
            await pool.aclose()


PEERS: dict[str, type[Peer]] = {"nats_r3": NatsPeer, "rmq_quorum": RabbitPeer, "arq": ArqPeer}


def _producer_main(
    args: tuple[str, dict[str, Any], Workload, int, int | None, Any, Any, Any],
) -> None:
    """The producer process of the concurrent phases."""
    name, conn, w, n, rate, ready, go, results = args

    async def main() -> None:
        peer = PEERS[name](conn, w)
        send = await peer.open_producer()
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        secs, errors, clat = await produce(send, _windowed(w, peer), n, rate=rate)
        await peer.close_producer()
        results.put({"secs": secs, "errors": errors, "clat": clat})

    runloop.run(main())


def _windowed(w: Workload, peer: Peer) -> Workload:
    return w if peer.window == w.window else Workload(**{**w.as_dict(), "window": peer.window})


async def _enqueue(peer: Peer, w: Workload) -> dict[str, Any]:
    await peer.setup()
    send = await peer.open_producer()
    progress = Progress("enqueue", w.n)
    secs, errors, clat = await produce(send, _windowed(w, peer), w.n, progress=progress)
    await peer.close_producer()
    progress.finish()
    return {
        "secs": secs,
        "rate": w.n / secs,
        "errors": errors,
        "confirm_p50_ms": pct(clat, 50),
        "confirm_p99_ms": pct(clat, 99),
    }


async def _process(peer: Peer, w: Workload) -> dict[str, Any]:
    progress = Progress("process", w.n)
    sink = Sink(w.n, False, progress)
    await peer.open_workers()
    t0 = time.perf_counter()
    await peer.run_workers(sink)
    secs = (sink.t_last or time.perf_counter()) - t0
    await peer.close_workers()
    progress.finish()
    left = await peer.remaining()
    return {"secs": secs, "rate": w.n / secs, "dups": sink.dups, "remaining": left}


async def _concurrent(
    name: str, peer: Peer, w: Workload, *, n: int, rate: int | None, label: str
) -> dict[str, Any]:
    """A producer process and the workers in this process at once (mixed and paced)."""
    await peer.setup()
    progress = Progress(label, n)
    sink = Sink(n, True, progress)
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    args = (name, peer.conn, w, n, rate, ready, go, results)
    proc = ctx.Process(target=_producer_main, args=(args,), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    try:
        if not await loop.run_in_executor(None, ready.wait, 60):
            raise RuntimeError("the producer process did not start")
        await peer.open_workers()
        t_go = time.perf_counter()
        go.set()
        await peer.run_workers(sink)
        t_end = sink.t_last or time.perf_counter()
        try:
            prod = await loop.run_in_executor(None, results.get, True, 120)
        except queue_mod.Empty:
            prod = {"secs": float("nan"), "errors": -1, "clat": []}
        await peer.close_workers()
    finally:
        await loop.run_in_executor(None, proc.join, 30)
        if proc.is_alive():
            proc.kill()
    progress.finish()
    return paced_figures(n, rate, t_end - t_go, prod, sink, remaining=await peer.remaining())


async def run_peer(name: str, conn: dict[str, Any], w: Workload) -> dict[str, Any]:
    """The four phases, in order, against the peer ``name`` reachable through ``conn``."""
    peer = PEERS[name](conn, w)
    out: dict[str, Any] = {"config": name, "n": w.n, "window": peer.window}
    out["enqueue"] = await _enqueue(peer, w)
    out["process"] = await _process(peer, w)
    out["mixed"] = await _concurrent(name, peer, w, n=w.n, rate=None, label="mixed")
    out["paced"] = await _concurrent(name, peer, w, n=w.n_paced, rate=w.rate, label="paced")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="raftq.bench.peers.drive")
    p.add_argument("--peer", choices=sorted(PEERS), required=True)
    p.add_argument("--conn", required=True, help="JSON: how to reach the peer's servers")
    p.add_argument("--workload", required=True, help="JSON: raftq.bench.phases.Workload")
    p.add_argument("--out", type=Path, required=True, help="the JSON record goes here")
    a = p.parse_args(argv)
    known = {f.name for f in fields(Workload)}
    w = Workload(**{k: v for k, v in json.loads(a.workload).items() if k in known})
    t0 = time.time()
    record = runloop.run(run_peer(a.peer, json.loads(a.conn), w))
    record["wall_s"] = time.time() - t0
    a.out.write_text(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
