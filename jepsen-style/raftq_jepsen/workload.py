"""The workload: producers, workers (in-process tasks and "zombie" worker processes), the drain.

- Producers enqueue unique payloads (``"<process>-<seq>"``) with an idempotency key
  (``"k<process>-<seq>"``) and a priority drawn from ``PRIORITIES`` into one of several small
  queues, each request to a random node. An enqueue whose outcome is unknown (``info``) is
  retried once with the same payload and key, as a new operation: the key must keep it to one
  job.
- Workers claim from a random subset of the queues (``max`` 1..3, a lease), sometimes
  heartbeat, then ack (or, now and then, nack with ``retry_in_ms`` 0, or release it: given
  back unstarted, the attempt not counted) each job, every request to a random node.
- One queue has limits (``LIMITS``: concurrency, a rate, a group cap and a group rate), set
  before the clients start; its jobs carry a ``group`` from ``GROUPS``. The limits checker
  judges it; the priority and linearizability checkers leave it out (caps and round-robin
  over groups are not strict priority).
- Zombie workers run the same loop in their own OS process (``raftq_jepsen.zombie``) and hold
  their leases for a while, so the worker nemeses can kill -9 or SIGSTOP a real process that
  holds leases. Their operations come back over a pipe and are recorded here.
- A workflow producer (``flow_loop``) creates batches of dependent jobs with a callback in
  the ``FLOW_QUEUES``; workers ack those jobs with their payload as the result.
- The drain runs after the faults healed and every node restarted: one drainer per node,
  pinned to it, claims and acks until every node shows no queued, delayed or leased job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from raftq_jepsen.client import Outcome, call
from raftq_jepsen.history import EventType, History, Op, OpName

__all__ = [
    "PRIORITIES",
    "HistoryRecorder",
    "NodeRef",
    "Recorder",
    "Workload",
    "WorkloadParams",
    "drain",
    "flow_loop",
    "set_limits",
    "worker_loop",
]

logger = logging.getLogger(__name__)

PRIORITIES = (0, 0, 3, 5, 9)  # mixed, low ones more often so higher ones overtake them
LIMITED = "lim"  # the queue with limits
LIMITS: dict[str, Any] = {  # PUT /v1/queues/lim/limits: tight enough that they bind
    "concurrency": 3,
    "rate": {"limit": 30, "period_ms": 1000},
    "group_concurrency": 1,
    "group_rate": {"limit": 8, "period_ms": 1000},
}
GROUPS = ("g0", "g1", "g2", "g3", "g4")
# Workflows (``flow_loop``): batches of dependent jobs with an on_success callback. Their
# queues form their own claim group, and their payloads are objects with a "flow" key: the
# workflows checker judges them, the other checkers leave them out (checker/index.py).
FLOW_QUEUES = ("flow.a", "flow.b", "flow.cb")


@dataclass(frozen=True, slots=True)
class NodeRef:
    id: str
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadParams:
    queues: tuple[str, ...] = (*(f"q{i}" for i in range(8)), LIMITED)
    # What one claim may name: single queues, and one pair (multi-queue claims). A claim links
    # the queues it names, so these groups are the independent parts the linearizability
    # checker can search one by one.
    claim_groups: tuple[tuple[str, ...], ...] = (
        *((f"q{i}",) for i in range(6)),
        ("q6", "q7"),
        (LIMITED,),
        FLOW_QUEUES,
    )
    producers: int = 4
    flows: int = 1  # workflow producers (flow_loop)
    workers: int = 5
    zombies: int = 2
    lease_ms: int = 3_000
    zombie_lease_ms: int = 2_000
    zombie_hold_s: tuple[float, float] = (0.3, 1.2)  # how long a zombie "works" on its jobs
    worker_hold_s: tuple[float, float] = (0.0, 0.4)  # how long a worker task does
    wait_ms: int = 200  # long-poll of a worker claim
    timeout_s: float = 5.0  # one request; past it the op is info
    producer_pause_s: tuple[float, float] = (0.02, 0.12)
    # None: the cluster's default (5), which the checkers' model assumes (the history's enqueue
    # value does not carry it). Jobs that use up their attempts go to the dead letters, which
    # nodes.json lists.
    max_attempts: int | None = None
    heartbeat_p: float = 0.3
    nack_p: float = 0.15
    release_p: float = 0.1

    def to_json(self) -> dict[str, Any]:
        return {
            "queues": list(self.queues),
            "claim_groups": [list(g) for g in self.claim_groups],
            "producers": self.producers,
            "flows": self.flows,
            "workers": self.workers,
            "zombies": self.zombies,
            "lease_ms": self.lease_ms,
            "zombie_lease_ms": self.zombie_lease_ms,
            "worker_hold_s": list(self.worker_hold_s),
            "zombie_hold_s": list(self.zombie_hold_s),
            "wait_ms": self.wait_ms,
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "priorities": sorted(set(PRIORITIES)),
            "heartbeat_p": self.heartbeat_p,
            "nack_p": self.nack_p,
            "release_p": self.release_p,
            "limits": {LIMITED: LIMITS} if LIMITED in self.queues else {},
        }


class Recorder(Protocol):
    """Where a worker loop records its operations (this process, or over a pipe)."""

    async def invoke(self, f: OpName, value: dict[str, Any], node: str) -> bool:
        """Record an invoke; False: stop now (nothing was recorded)."""
        ...

    async def complete(self, type_: EventType, value: Any, error: str | None) -> None: ...


class HistoryRecorder:
    """Records straight into the history, as process ``process``."""

    def __init__(self, history: History, process: int, stop: asyncio.Event) -> None:
        self.history = history
        self.process = process
        self.stop = stop
        self._op: Op | None = None

    async def invoke(self, f: OpName, value: dict[str, Any], node: str) -> bool:
        if self.stop.is_set():
            return False
        self._op = self.history.invoke(self.process, f, value, node)
        return True

    async def complete(self, type_: EventType, value: Any, error: str | None) -> None:
        assert self._op is not None
        self.history.complete(self._op, type_, value, error)
        self._op = None


def _job_of(raw: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "queue", "payload", "priority", "attempt", "token", "lease_expires_ms")
    job = {k: raw.get(k) for k in keys}
    if "parents" in raw:  # a released dependant or a batch callback
        job["parents"] = raw["parents"]
    return job


def _batched(value: dict[str, Any], body: Any) -> dict[str, Any]:
    """The ok value of a batch: the invoke's plus the batch id and the job ids."""
    return {**value, "batch": body.get("batch"), "ids": body.get("ids")}


def _ack_body(job: dict[str, Any]) -> dict[str, Any]:
    """A workflow job is acked with its payload as the result (the checker compares the
    parents its dependants see with it); others without a result."""
    payload = job.get("payload")
    if isinstance(payload, dict) and "flow" in payload:
        return {"token": job["token"], "result": payload}
    return {"token": job["token"]}


def _enqueued(value: dict[str, Any], body: Any) -> dict[str, Any]:
    """The ok value of an enqueue: the invoke's plus the id."""
    return {**value, "id": body.get("id")}


def _claimed(value: dict[str, Any], body: Any) -> dict[str, Any]:
    """The ok value of a claim: the invoke's plus the jobs."""
    return {**value, "jobs": [_job_of(j) for j in body.get("jobs", [])]}


async def _op(
    rec: Recorder,
    session: aiohttp.ClientSession,
    f: OpName,
    value: dict[str, Any],
    node: NodeRef,
    path: str,
    body: dict[str, Any],
    timeout_s: float,
    ok_value: Callable[[Any], dict[str, Any]] | None = None,
) -> Outcome | None:
    """Invoke, send, complete. None: the recorder said stop before anything was sent."""
    if not await rec.invoke(f, value, node.id):
        return None
    out = await call(session, node.url + path, body, timeout_s=timeout_s)
    if out.type == "ok":
        await rec.complete("ok", ok_value(out.body) if ok_value else value, None)
    else:
        await rec.complete(out.type, value, out.error)
        if out.error is not None and out.error.startswith("connect_error"):
            # A client backs off from a node that is down instead of spinning on it.
            await asyncio.sleep(random.uniform(0.1, 0.3))
    return out


async def producer_loop(
    rec: Recorder,
    session: aiohttp.ClientSession,
    nodes: list[NodeRef],
    p: WorkloadParams,
    process: int,
    rng: random.Random,
    stop: asyncio.Event,
) -> None:
    seq = 0
    while not stop.is_set():
        queue = rng.choice(p.queues)
        priority = rng.choice(PRIORITIES)
        payload, key = f"{process}-{seq}", f"k{process}-{seq}"
        seq += 1
        value: dict[str, Any] = {"queue": queue, "payload": payload, "priority": priority}
        value["key"] = key
        body: dict[str, Any] = {"payload": payload, "priority": priority, "key": key}
        if queue == LIMITED:
            value["group"] = body["group"] = rng.choice(GROUPS)
        if p.max_attempts is not None:
            body["max_attempts"] = p.max_attempts
        for _attempt in range(2):  # an info enqueue is retried once with the same key
            node = rng.choice(nodes)
            out = await _op(
                rec, session, "enqueue", value, node, f"/v1/queues/{queue}/jobs", body,
                p.timeout_s, partial(_enqueued, value),
            )  # fmt: skip
            if out is None or out.type != "info":
                break
            await asyncio.sleep(rng.uniform(0.05, 0.3))
        await asyncio.sleep(rng.uniform(*p.producer_pause_s))


async def flow_loop(
    rec: Recorder,
    session: aiohttp.ClientSession,
    nodes: list[NodeRef],
    p: WorkloadParams,
    process: int,
    rng: random.Random,
    stop: asyncio.Event,
) -> None:
    """Batches of three jobs (the third depends on the first two) with an on_success
    callback, each payload unique; one attempt each (no key: a retry would be another batch)."""
    a, b, cb = FLOW_QUEUES
    seq = 0
    while not stop.is_set():
        tag = f"{process}-{seq}"
        seq += 1
        body = {
            "jobs": [
                {"queue": a, "payload": {"flow": tag, "n": 0}},
                {"queue": b, "payload": {"flow": tag, "n": 1}},
                {"queue": a, "payload": {"flow": tag, "n": 2}, "depends_on": ["@0", "@1"]},
            ],
            "on_success": {"queue": cb, "payload": {"flow": tag, "callback": True}},
        }
        out = await _op(
            rec, session, "batch", body, rng.choice(nodes), "/v1/batches", body, p.timeout_s,
            partial(_batched, body),
        )  # fmt: skip
        if out is None:
            return
        await asyncio.sleep(rng.uniform(0.2, 0.6))


async def worker_loop(
    rec: Recorder,
    session: aiohttp.ClientSession,
    nodes: list[NodeRef],
    p: WorkloadParams,
    name: str,
    rng: random.Random,
    *,
    lease_ms: int,
    hold_s: tuple[float, float] | None = None,
    on_holding: Callable[[bool], Awaitable[None]] | None = None,
) -> None:
    """Claim, (heartbeat), ack/nack/release, forever until the recorder says stop."""
    while True:
        queues = list(rng.choice(p.claim_groups))
        mx = rng.randint(1, 3)
        value = {"queues": queues, "max": mx, "lease_ms": lease_ms}
        body = {
            "queues": queues,
            "worker": name,
            "max": mx,
            "lease_ms": lease_ms,
            "wait_ms": p.wait_ms,
        }
        node = rng.choice(nodes)
        out = await _op(
            rec, session, "claim", value, node, "/v1/claim", body, p.timeout_s,
            partial(_claimed, value),
        )  # fmt: skip
        if out is None:
            return
        jobs = [_job_of(j) for j in out.body.get("jobs", [])] if out.type == "ok" else []
        if not jobs:
            await asyncio.sleep(rng.uniform(0.01, 0.1))
            continue
        if on_holding is not None:
            await on_holding(True)
        if hold_s is not None:
            await asyncio.sleep(rng.uniform(*hold_s))
        for job in jobs:
            ref = {"id": job["id"], "token": job["token"]}
            base = f"/v1/jobs/{job['id']}"
            if rng.random() < p.heartbeat_p:
                hb = {"token": job["token"], "lease_ms": lease_ms}
                if await _op(rec, session, "heartbeat", ref, rng.choice(nodes),
                             base + "/heartbeat", hb, p.timeout_s) is None:  # fmt: skip
                    return
            value = ref
            r = rng.random()
            if r < p.nack_p:
                f: OpName = "nack"
                req: dict[str, Any] = {"token": job["token"], "retry_in_ms": 0, "error": "nack"}
                value = {**ref, "retry_in_ms": 0}  # claimable again at once
            elif r < p.nack_p + p.release_p:
                f, req = "release", {"token": job["token"]}
            else:
                f, req = "ack", _ack_body(job)
            if await _op(rec, session, f, value, rng.choice(nodes), f"{base}/{f}", req,
                         p.timeout_s) is None:  # fmt: skip
                return
        if on_holding is not None:
            await on_holding(False)


async def set_limits(
    session: aiohttp.ClientSession, nodes: list[NodeRef], p: WorkloadParams
) -> None:
    """Set the limited queue's limits (before any client starts), retrying through
    elections; raises if no node took them within 60 s."""
    if LIMITED not in p.queues:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    last: Any = None
    while loop.time() < deadline:
        for node in nodes:
            try:
                url = f"{node.url}/v1/queues/{LIMITED}/limits"
                async with session.put(url, json=LIMITS, timeout=aiohttp.ClientTimeout(5)) as r:
                    last = (r.status, await r.text())
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError) as e:
                last = repr(e)
        await asyncio.sleep(0.5)
    raise RuntimeError(f"could not set the limits of {LIMITED!r}: {last}")


# -- zombie worker processes ----------------------------------------------------------------


class Zombie:
    """One zombie worker process and the task that records its operations."""

    def __init__(self, slot: int, process: int, proc: asyncio.subprocess.Process) -> None:
        self.slot = slot
        self.process = process
        self.proc = proc
        self.holding = False  # it reported holding leases (claimed, not yet acked all)
        self.leases: dict[int, int] = {}  # job id -> token of its last ok claim
        self.paused = False
        self.task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


class Workload:
    """Runs producers, workers and zombies against ``nodes`` until ``stop()``."""

    def __init__(
        self,
        history: History,
        session: aiohttp.ClientSession,
        nodes: list[NodeRef],
        params: WorkloadParams,
        token: str,
        seed: int,
        tag: str = "",
    ) -> None:
        self.tag = tag  # on the zombies' command line (the run directory): who they belong to
        self.history = history
        self.session = session
        self.nodes = nodes
        self.p = params
        self.token = token
        self.rng = random.Random(seed)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.zombies: list[Zombie] = []
        self._next_zombie_process = 100

    async def start(self) -> None:
        p = self.p
        for i in range(p.producers):
            rec = HistoryRecorder(self.history, i, self._stop)
            rng = random.Random(self.rng.getrandbits(64))
            self._tasks.append(asyncio.create_task(
                producer_loop(rec, self.session, self.nodes, p, i, rng, self._stop)))  # fmt: skip
        for k in range(p.flows):
            rec = HistoryRecorder(self.history, 200 + k, self._stop)
            rng = random.Random(self.rng.getrandbits(64))
            self._tasks.append(asyncio.create_task(
                flow_loop(rec, self.session, self.nodes, p, 200 + k, rng, self._stop)))  # fmt: skip
        for j in range(p.workers):
            process = p.producers + j
            rec = HistoryRecorder(self.history, process, self._stop)
            rng = random.Random(self.rng.getrandbits(64))
            loop = worker_loop(
                rec, self.session, self.nodes, p, f"w{process}", rng, lease_ms=p.lease_ms,
                hold_s=p.worker_hold_s,
            )  # fmt: skip
            self._tasks.append(asyncio.create_task(loop))
        for slot in range(p.zombies):
            await self.spawn_zombie(slot)

    async def spawn_zombie(self, slot: int) -> Zombie:
        process = self._next_zombie_process
        self._next_zombie_process += 1
        args = {
            "nodes": [[n.id, n.url] for n in self.nodes],
            "params": {
                "queues": list(self.p.queues),
                "claim_groups": [list(g) for g in self.p.claim_groups],
                "lease_ms": self.p.zombie_lease_ms,
                "hold_s": list(self.p.zombie_hold_s),
                "timeout_s": self.p.timeout_s,
                "wait_ms": self.p.wait_ms,
                "heartbeat_p": self.p.heartbeat_p,
                "nack_p": self.p.nack_p,
                "release_p": self.p.release_p,
            },
            "name": f"z{process}",
            "token": self.token,
            "seed": self.rng.getrandbits(64),
            "run": self.tag,
        }
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "raftq_jepsen.zombie", json.dumps(args),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        z = Zombie(slot, process, proc)
        z.task = asyncio.create_task(self._serve_zombie(z))
        if slot < len(self.zombies):
            self.zombies[slot] = z
        else:
            self.zombies.append(z)
        return z

    async def _serve_zombie(self, z: Zombie) -> None:
        """Record the zombie's operations: an invoke is written before we let it send."""
        assert z.proc.stdout is not None and z.proc.stdin is not None
        op: Op | None = None
        try:
            while True:
                line = await z.proc.stdout.readline()
                if not line:
                    break
                msg = json.loads(line)
                kind = msg["msg"]
                if kind == "invoke":
                    if self._stop.is_set():
                        z.proc.stdin.write(b"stop\n")
                        await z.proc.stdin.drain()
                        continue
                    op = self.history.invoke(z.process, msg["f"], msg["value"], msg["node"])
                    z.proc.stdin.write(b"go\n")
                    await z.proc.stdin.drain()
                elif kind == "complete" and op is not None:
                    self.history.complete(op, msg["type"], msg["value"], msg["error"])
                    if op.f == "claim" and msg["type"] == "ok":
                        z.leases = {j["id"]: j["token"] for j in msg["value"]["jobs"]}
                    op = None
                elif kind == "holding":
                    z.holding = bool(msg["holding"])
                    if not z.holding:
                        z.leases = {}
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            await z.proc.wait()
            if op is not None:  # killed mid-operation: it may or may not have been applied
                self.history.complete(op, "info", None, "process_killed")
            z.holding = False

    def kill_zombie(self, z: Zombie) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(z.pid, signal.SIGKILL)

    def pause_zombie(self, z: Zombie) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(z.pid, signal.SIGSTOP)
        z.paused = True

    def resume_zombie(self, z: Zombie) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(z.pid, signal.SIGCONT)
        z.paused = False

    async def stop(self) -> None:
        """Stop issuing operations; wait for those in flight (bounded by the request timeout)."""
        self._stop.set()
        for z in self.zombies:
            if z.paused:
                self.resume_zombie(z)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for z in self.zombies:
            try:
                await asyncio.wait_for(z.proc.wait(), self.p.timeout_s * 3)
            except TimeoutError:
                self.kill_zombie(z)
            if z.task is not None:
                await z.task

    async def abort(self) -> None:
        """On error: kill the zombie processes (they are ours) and cancel the tasks."""
        self._stop.set()
        for z in self.zombies:
            self.resume_zombie(z)
            self.kill_zombie(z)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for z in self.zombies:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(z.proc.wait(), 5)


# -- drain ------------------------------------------------------------------------------------


async def _depths(session: aiohttp.ClientSession, node: NodeRef) -> int | None:
    """Jobs queued + delayed + leased on ``node`` (its local view), None if unreachable."""
    try:
        async with session.get(node.url + "/v1/queues", timeout=aiohttp.ClientTimeout(2)) as r:
            body = await r.json()
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None
    total = 0
    for q in body.get("queues", []):
        d = q.get("depth", {})
        total += int(d.get("queued", 0)) + int(d.get("delayed", 0)) + int(d.get("leased", 0))
    return total


async def drain(
    history: History,
    session: aiohttp.ClientSession,
    nodes: list[NodeRef],
    p: WorkloadParams,
    *,
    limit_s: float,
    first_process: int = 1000,
    trace: list[list[Any]] | None = None,
) -> bool:
    """Claim and ack from every node until no node shows a queued, delayed or leased job.

    True when drained within ``limit_s``; the history records every drain claim and ack.
    ``trace`` receives ``[time_ns, [jobs left per node]]`` samples.
    """
    trace = [] if trace is None else trace
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    done = asyncio.Event()
    stop = asyncio.Event()
    lease_ms = 30_000

    async def drainer(i: int, node: NodeRef) -> None:
        rec = HistoryRecorder(history, first_process + i, stop)
        rounds = 0
        while not stop.is_set():
            # One claim group at a time (see WorkloadParams.claim_groups), round robin.
            queues = list(p.claim_groups[(i + rounds) % len(p.claim_groups)])
            rounds += 1
            value = {"queues": queues, "max": 10, "lease_ms": lease_ms}
            body = {"worker": f"drain-{node.id}", "wait_ms": 0, **value}
            out = await _op(
                rec, session, "claim", value, node, "/v1/claim", body, p.timeout_s,
                partial(_claimed, value),
            )  # fmt: skip
            if out is None:
                return
            jobs = out.body.get("jobs", []) if out.type == "ok" else []
            for raw in jobs:
                job = _job_of(raw)
                ref = {"id": job["id"], "token": job["token"]}
                path = f"/v1/jobs/{job['id']}/ack"
                # Ack until the outcome is known: an unknown ack would leave the job leased.
                for _ in range(5):
                    a = await _op(rec, session, "ack", ref, node, path, _ack_body(job),
                                  p.timeout_s)  # fmt: skip
                    if a is None or a.type != "info":
                        break
            if not jobs and rounds % len(p.claim_groups) == 0:
                await asyncio.sleep(0.1)

    async def watcher() -> None:
        while loop.time() < deadline:
            await asyncio.sleep(0.25)
            depths = await asyncio.gather(*(_depths(session, n) for n in nodes))
            trace.append([history.now_ns(), depths])
            if all(d == 0 for d in depths):
                done.set()
                return

    # Several drainers per node (each one sequential, as a history process must be).
    per_node = 3
    tasks = [
        asyncio.create_task(drainer(i * per_node + k, n))
        for i, n in enumerate(nodes)
        for k in range(per_node)
    ]
    w = asyncio.create_task(watcher())
    await w
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return done.is_set()
