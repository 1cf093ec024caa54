"""Nemeses: faults injected into the hosts and worker processes, and their schedule.

Each nemesis is a coroutine that injects one fault and returns a ``Fault`` whose ``heal``
undoes it. The schedule waits a quiet period, then cycles through the chosen nemeses (``all``:
every one, shuffled, round after round): each fault lasts 5-10 s, then heals, then 2-4 s pass
before the next. Every window is one line of ``nemesis.jsonl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from raftq_jepsen import disks, forger
from raftq_jepsen.hosts import Hosts, NodeProc
from raftq_jepsen.membership import (
    Change,
    MemberView,
    change_members,
    plan_change,
    read_members,
)
from raftq_jepsen.workload import NodeRef, Workload, Zombie

__all__ = [
    "ALL",
    "NEMESES",
    "SNAPSHOT_RACE_RAFT",
    "SPARE_HOSTS",
    "SPARE_NEMESES",
    "Fault",
    "Nemesis",
    "NemesisContext",
    "find_leader",
    "heal_all",
    "sync_members",
]

_Heal = Callable[[], Awaitable[None]]


async def _noop() -> None:
    return None


@dataclass
class Fault:
    detail: dict[str, Any]
    heal: _Heal = _noop
    min_duration_s: float = 0.0  # the window lasts at least this long


@dataclass
class NemesisContext:
    hosts: Hosts
    workload: Workload
    session: aiohttp.ClientSession
    rng: random.Random
    log_path: Path
    origin_ns: int
    windows: list[dict[str, Any]] = field(default_factory=list)


async def find_leader(ctx: NemesisContext) -> NodeProc | None:
    """The node that says it leads (highest term), among running nodes; None if none does."""
    best: tuple[int, NodeProc] | None = None
    for node in ctx.hosts.nodes:
        if not node.alive() or node.paused:
            continue
        try:
            async with ctx.session.get(
                node.url + "/v1/cluster", timeout=aiohttp.ClientTimeout(total=1.0)
            ) as r:
                me = (await r.json())["self"]
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
            continue
        if me.get("role") == "leader" and (best is None or me["term"] > best[0]):
            best = (int(me["term"]), node)
    return None if best is None else best[1]


async def wait_serving(ctx: NemesisContext, nodes: list[NodeProc], limit_s: float) -> bool:
    """Until every node in ``nodes`` answers ``/healthz`` (False after ``limit_s``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    pending = list(nodes)
    while pending and loop.time() < deadline:
        node = pending[0]
        try:
            async with ctx.session.get(
                node.url + "/healthz", timeout=aiohttp.ClientTimeout(total=1.0)
            ) as r:
                if r.status == 200:
                    pending.pop(0)
                    continue
        except (TimeoutError, aiohttp.ClientError):
            pass
        await asyncio.sleep(0.1)
    return not pending


async def _leader_or_random(ctx: NemesisContext) -> tuple[NodeProc, bool]:
    leader = await find_leader(ctx)
    if leader is not None:
        return leader, True
    return ctx.rng.choice(ctx.hosts.nodes), False


def _ids(nodes: list[NodeProc]) -> list[str]:
    return [n.id for n in nodes]


async def _heal_network(ctx: NemesisContext) -> None:
    await asyncio.to_thread(ctx.hosts.heal_network)


async def _partition(
    ctx: NemesisContext, groups: list[list[NodeProc]], detail: dict[str, Any]
) -> Fault:
    """Cut every pair of nodes that are in different groups, both ways."""

    def apply() -> None:
        for g in groups:
            others = [n for n in ctx.hosts.nodes if n not in g]
            for node in g:
                ctx.hosts.drop_from(node, others)

    await asyncio.to_thread(apply)
    detail["groups"] = [_ids(g) for g in groups]
    return Fault(detail, lambda: _heal_network(ctx))


async def partition_halves(ctx: NemesisContext) -> Fault:
    nodes = list(ctx.hosts.nodes)
    ctx.rng.shuffle(nodes)
    half = len(nodes) // 2
    return await _partition(ctx, [nodes[:half], nodes[half:]], {})


async def partition_leader(ctx: NemesisContext) -> Fault:
    leader, known = await _leader_or_random(ctx)
    rest = [n for n in ctx.hosts.nodes if n is not leader]
    return await _partition(ctx, [[leader], rest], {"node": leader.id, "leader_known": known})


async def partition_follower(ctx: NemesisContext) -> Fault:
    leader = await find_leader(ctx)
    followers = [n for n in ctx.hosts.nodes if n is not leader]
    node = ctx.rng.choice(followers)
    rest = [n for n in ctx.hosts.nodes if n is not node]
    return await _partition(ctx, [[node], rest], {"node": node.id})


async def partition_oneway(ctx: NemesisContext) -> Fault:
    """One node stops receiving from every other node; what it sends still arrives."""
    node, known = await _leader_or_random(ctx)
    if ctx.rng.random() < 0.5:
        node, known = ctx.rng.choice(ctx.hosts.nodes), False
    others = [n for n in ctx.hosts.nodes if n is not node]
    await asyncio.to_thread(ctx.hosts.drop_from, node, others, both=False)
    detail = {"deaf": node.id, "from": _ids(others), "was_leader": known}
    return Fault(detail, lambda: _heal_network(ctx))


async def packet(ctx: NemesisContext) -> Fault:
    """Every node drops a random share of the packets from every peer (TCP retransmits turn it
    into delay too: each lost segment costs at least one 200 ms retransmission timeout)."""
    probability = round(ctx.rng.uniform(0.15, 0.4), 2)

    def apply() -> None:
        for node in ctx.hosts.nodes:
            ctx.hosts.lossy(node, [n for n in ctx.hosts.nodes if n is not node], probability)

    await asyncio.to_thread(apply)
    return Fault({"loss": probability}, lambda: _heal_network(ctx))


async def delay(ctx: NemesisContext) -> Fault:
    """Every packet between nodes is held 30-150 ms (+ up to 20% jitter, so some reorder) by a
    user-space delayer in each sender's namespace: `tc netem` is not in this kernel."""
    delay_ms = ctx.rng.randint(30, 150)
    jitter_ms = delay_ms // 5

    def apply() -> None:
        for node in ctx.hosts.nodes:
            others = [n for n in ctx.hosts.nodes if n is not node]
            ctx.hosts.delay(node, others, delay_ms, jitter_ms)

    await asyncio.to_thread(apply)
    return Fault({"delay_ms": delay_ms, "jitter_ms": jitter_ms}, lambda: _heal_network(ctx))


async def _kill(ctx: NemesisContext, victims: list[NodeProc], detail: dict[str, Any]) -> Fault:
    for node in victims:
        ctx.hosts.kill(node)

    async def heal() -> None:
        for node in victims:
            if not node.alive():
                ctx.hosts.start(node)
        # The window ends once they serve again (starting Python takes seconds on a busy
        # machine), so the next fault does not land on a cluster still booting.
        await wait_serving(ctx, victims, 30.0)

    detail["nodes"] = _ids(victims)
    return Fault(detail, heal)


async def kill_one(ctx: NemesisContext) -> Fault:
    return await _kill(ctx, [ctx.rng.choice(ctx.hosts.nodes)], {})


async def kill_minority(ctx: NemesisContext) -> Fault:
    k = max(1, (len(ctx.hosts.nodes) - 1) // 2)
    return await _kill(ctx, ctx.rng.sample(ctx.hosts.nodes, k), {})


async def kill_leader(ctx: NemesisContext) -> Fault:
    leader, known = await _leader_or_random(ctx)
    return await _kill(ctx, [leader], {"leader_known": known})


async def kill_all(ctx: NemesisContext) -> Fault:
    return await _kill(ctx, list(ctx.hosts.nodes), {})


async def pause_leader(ctx: NemesisContext) -> Fault:
    """SIGSTOP the leader for the whole window (5-10 s, past the 1.4 s election timeout)."""
    leader, known = await _leader_or_random(ctx)
    ctx.hosts.pause(leader)

    async def heal() -> None:
        ctx.hosts.resume(leader)

    return Fault({"node": leader.id, "leader_known": known}, heal)


async def clock(ctx: NemesisContext) -> Fault:
    """On one node (the leader half of the time): jump its clocks forward 1-4 s, or run them at
    x0.5 or x2 for the window. Wall and monotonic clocks both move (libfaketime), so the
    node's election timers and the ``now_ms`` it stamps on commands both see it."""
    if not ctx.hosts.faketime:
        raise RuntimeError("the clock nemesis needs nodes started under libfaketime")
    node, known = await _leader_or_random(ctx)
    if ctx.rng.random() < 0.5:
        node, known = ctx.rng.choice(ctx.hosts.nodes), False
    h = ctx.hosts
    if ctx.rng.random() < 0.4:
        jump = round(ctx.rng.uniform(1.0, 4.0), 3)
        h.set_clock(node, node.clock_offset_s + jump, node.clock_rate)
        detail: dict[str, Any] = {"node": node.id, "was_leader": known, "bump_s": jump}
    else:
        rate = ctx.rng.choice((0.5, 2.0))
        h.set_clock(node, h.continuous_offset(node, rate), rate)
        detail = {"node": node.id, "was_leader": known, "rate": rate}

    async def heal() -> None:
        if node.alive() and node.clock_rate != 1.0:
            h.set_clock(node, h.continuous_offset(node, 1.0), 1.0)

    return Fault(detail, heal)


async def clock_jump(ctx: NemesisContext) -> Fault:
    """One node's wall clock (the leader half of the time) jumps 1-6 HOURS forward or back, and
    stays wrong until the window heals (then it is right again). Its monotonic clocks, so
    Raft's timers and every sleep, do not move, as in a real clock step (NTP, a wrong RTC): a
    skewed leader keeps leading. The per-node wall-clock shim (``wallclock_shim.c``)."""
    if ctx.hosts.wall_lib is None:
        raise RuntimeError("the clock-jump nemesis needs nodes started under the wall-clock shim")
    node, known = await _leader_or_random(ctx)
    if ctx.rng.random() < 0.5:
        node, known = ctx.rng.choice(ctx.hosts.nodes), False
    jump = round(ctx.rng.uniform(1.0, 6.0) * 3600 * ctx.rng.choice((1, -1)), 3)
    ctx.hosts.set_wall_offset(node, jump)
    started = node.started_ns
    detail: dict[str, Any] = {"node": node.id, "was_leader": known, "jump_s": jump}

    async def heal() -> None:
        # A restart in the window (a kill by another nemesis) already reset it.
        if node.started_ns != started:
            detail["restarted"] = True
        ctx.hosts.set_wall_offset(node, 0.0)

    return Fault(detail, heal)


async def _restart_after_disk_fault(
    ctx: NemesisContext, node: NodeProc, detail: dict[str, Any], repair: Callable[[], Any]
) -> None:
    """The end of a disk fault: record whether the node stopped itself (exit code, last log
    line), kill -9 it if it still runs (what it wrote meanwhile may be only in its memory, as
    after a real failing disk), then ``repair`` the disk and start the node again.

    The disk is repaired only once the node is dead: repaired first, a write the node had
    retrying (a snapshot of its whole memory, a journal append) could land in the moment
    before the kill and make durable what the failing disk had refused, so whether the
    restart shows the loss would depend on that race."""
    exit_record = ctx.hosts.note_exit(node)
    detail["stopped_itself"] = exit_record is not None
    if exit_record is not None:
        detail["exit"] = {k: v for k, v in exit_record.items() if k != "time_ns"}
    ctx.hosts.kill(node)
    await asyncio.to_thread(repair)
    ctx.hosts.start(node)
    detail["serving_again"] = await wait_serving(ctx, [node], 30.0)


async def disk_full(ctx: NemesisContext) -> Fault:
    """One node's data dir (its own small tmpfs) is filled while it takes writes; at heal the
    filler is deleted and the node restarted (it may have stopped itself meanwhile)."""
    if not ctx.hosts.disk_tmpfs:
        raise RuntimeError("the disk-full nemesis needs hosts with a tmpfs per data dir")
    node, known = await _leader_or_random(ctx)
    if ctx.rng.random() < 0.5:
        node, known = ctx.rng.choice(ctx.hosts.nodes), False
    taken = await asyncio.to_thread(disks.fill, node.data_dir)
    detail: dict[str, Any] = {"node": node.id, "was_leader": known, "filled_bytes": taken}

    async def heal() -> None:
        detail["alive_at_heal"] = node.alive()
        await _restart_after_disk_fault(ctx, node, detail, lambda: disks.free(node.data_dir))

    return Fault(detail, heal)


async def disk_error(ctx: NemesisContext) -> Fault:
    """Writes and syncs under one node's data dir fail with EIO (the LD_PRELOAD shim, real
    failed syscalls) for the window; at heal they succeed again and the node is restarted."""
    if ctx.hosts.eio_lib is None:
        raise RuntimeError("the disk-error nemesis needs nodes started under the EIO shim")
    node, known = await _leader_or_random(ctx)
    if ctx.rng.random() < 0.5:
        node, known = ctx.rng.choice(ctx.hosts.nodes), False
    node.eio_flag.write_text("")
    detail: dict[str, Any] = {"node": node.id, "was_leader": known}

    async def heal() -> None:
        detail["alive_at_heal"] = node.alive()
        await _restart_after_disk_fault(
            ctx, node, detail, lambda: node.eio_flag.unlink(missing_ok=True)
        )

    return Fault(detail, heal)


async def snapshot_race(ctx: NemesisContext) -> Fault:
    """A follower lags (cut off from every node) while the others, compacting every few hundred
    entries (``SNAPSHOT_RACE_RAFT``), take snapshots at different points: one of them is
    restarted (kill -9, the leader half of the time) in the window. At heal the lagging node
    comes back (restarted first half of the time, so it starts from its own older snapshot)
    and meets logs and snapshots that moved past it: snapshot installs race its own
    compactions."""
    leader = await find_leader(ctx)
    lagging = ctx.rng.choice([n for n in ctx.hosts.nodes if n is not leader])
    rest = [n for n in ctx.hosts.nodes if n is not lagging]
    await asyncio.to_thread(ctx.hosts.drop_from, lagging, rest)
    if leader is not None and ctx.rng.random() < 0.5:
        bounced = leader
    else:
        bounced = ctx.rng.choice(rest) if rest else lagging
    restart_lagging = ctx.rng.random() < 0.5
    detail: dict[str, Any] = {
        "lagging": lagging.id,
        "bounced": bounced.id,
        "bounced_was_leader": bounced is leader,
        "restart_lagging": restart_lagging,
    }

    async def bounce() -> None:
        await asyncio.sleep(ctx.rng.uniform(1.5, 3.0))
        ctx.hosts.kill(bounced)
        ctx.hosts.start(bounced)
        await wait_serving(ctx, [bounced], 30.0)

    task = asyncio.create_task(bounce())

    async def heal() -> None:
        await task
        if restart_lagging and lagging is not bounced:
            ctx.hosts.kill(lagging)
        await _heal_network(ctx)
        if restart_lagging and not lagging.alive():
            ctx.hosts.start(lagging)
        await wait_serving(ctx, [lagging], 30.0)

    return Fault(detail, heal, min_duration_s=4.0)


FORGER_PROCESS = 2000  # history process number of forged requests (outside every checker)


async def forged_forward(ctx: NemesisContext) -> Fault:
    """From inside one node's namespace (its own host), requests marked ``X-Raftq-Forwarded``
    with no or a garbage signature, with and without the run's valid token, to that node and
    to another (``raftq_jepsen.forger``). Each is one ``forged`` operation in the history; the
    ``forged_forward`` check requires a 401 for every one that was answered."""
    host = ctx.rng.choice(ctx.hosts.nodes)
    targets = [host, *[n for n in ctx.hosts.nodes if n is not host][:1]]
    claimed = targets[-1].id  # the marker names a real node
    seconds = ctx.rng.uniform(4.0, 8.0)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    env.pop("LD_PRELOAD", None)
    # Its errors go to logs/forger.log beside the nodes' logs; a window that got no answer
    # carries their last lines and the forger's exit code (the checker flags it:
    # none_answered).
    errors_path = ctx.log_path.parent / "logs" / "forger.log"
    with errors_path.open("a") as errors:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", host.ns, sys.executable, "-m", "raftq_jepsen.forger",
            *forger.argv(ctx.hosts.token, claimed, seconds, [n.url for n in targets]),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=errors, env=env,
        )  # fmt: skip
    detail: dict[str, Any] = {"host": host.id, "targets": _ids(targets), "claimed": claimed}
    by_url = {n.url: n.id for n in ctx.hosts.nodes}
    history = ctx.workload.history

    async def record() -> None:
        assert proc.stdout is not None
        sent = refused = answered = 0
        async for line in proc.stdout:
            with contextlib.suppress(ValueError, KeyError):
                r = json.loads(line)
                value = {k: r[k] for k in ("method", "path", "kind")}
                op = history.invoke(FORGER_PROCESS, "forged", value, by_url.get(r["url"], "?"))
                status = r["status"]
                if status is None:
                    history.complete(op, "info", None, f"connection_error: {r['error']}")
                elif 200 <= status < 300:
                    history.complete(op, "ok", value | {"status": status})
                else:
                    history.complete(op, "fail", value | {"status": status}, f"http_{status}")
                sent += 1
                answered += status is not None
                refused += status == 401
        detail["forger_exit"] = await proc.wait()
        detail["sent"], detail["refused_401"] = sent, refused
        if not answered:
            detail["forger_errors"] = errors_path.read_text(errors="replace").splitlines()[-5:]

    task = asyncio.create_task(record())

    async def heal() -> None:
        await task

    return Fault(detail, heal, min_duration_s=seconds)


def _holding_zombie(ctx: NemesisContext) -> Zombie | None:
    live = [z for z in ctx.workload.zombies if z.proc.returncode is None and not z.paused]
    holding = [z for z in live if z.holding]
    pool = holding or live
    return ctx.rng.choice(pool) if pool else None


async def _wait_holding(ctx: NemesisContext) -> Zombie | None:
    for _ in range(40):  # up to 2 s for a zombie to hold leases
        z = _holding_zombie(ctx)
        if z is not None and z.holding:
            return z
        await asyncio.sleep(0.05)
    return _holding_zombie(ctx)


async def worker_kill(ctx: NemesisContext) -> Fault:
    """kill -9 a worker process that holds leases; a new worker process replaces it at heal."""
    z = await _wait_holding(ctx)
    if z is None:
        return Fault({"skipped": "no worker process"})
    holding = z.holding
    ctx.workload.kill_zombie(z)

    async def heal() -> None:
        if z.task is not None:
            await z.task
        await ctx.workload.spawn_zombie(z.slot)

    return Fault({"process": z.process, "holding": holding}, heal)


async def worker_pause(ctx: NemesisContext) -> Fault:
    """SIGSTOP a worker process holding leases past its lease, then SIGCONT: it goes on to ack
    with its old token (a zombie ack), which must be refused.

    It is resumed as soon as another worker has claimed one of its jobs again (so its ack
    races a live lease of someone else: the dangerous case), or after its lease + 5 s."""
    z = await _wait_holding(ctx)
    if z is None:
        return Fault({"skipped": "no worker process"})
    holding, leases = z.holding, dict(z.leases)
    ctx.workload.pause_zombie(z)
    loop = asyncio.get_running_loop()
    started = loop.time()
    limit_s = ctx.workload.p.zombie_lease_ms / 1000 + 5.0
    detail: dict[str, Any] = {"process": z.process, "holding": holding, "jobs": sorted(leases)}

    def reclaimed() -> bool:
        last = ctx.workload.history.last_claim
        return any(last.get(j, (z.process, t))[1] > t for j, t in leases.items())

    async def resume_when_reclaimed() -> None:
        while loop.time() - started < limit_s and not reclaimed():
            await asyncio.sleep(0.02)
        detail["reclaimed"] = reclaimed()
        detail["paused_s"] = round(loop.time() - started, 3)
        ctx.workload.resume_zombie(z)

    task = asyncio.create_task(resume_when_reclaimed())

    async def heal() -> None:
        await task

    return Fault(detail, heal, min_duration_s=limit_s)


async def wait_ready(ctx: NemesisContext, nodes: list[NodeProc], limit_s: float) -> bool:
    """Until every node in ``nodes`` answers ``/readyz`` 200 (a leader known, caught up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    pending = list(nodes)
    while pending and loop.time() < deadline:
        node = pending[0]
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with ctx.session.get(
                node.url + "/readyz", timeout=aiohttp.ClientTimeout(total=1.0)
            ) as r:
                if r.status == 200:
                    pending.pop(0)
                    continue
        await asyncio.sleep(0.2)
    return not pending


async def wipe_node(ctx: NemesisContext) -> Fault:
    """A member's data dir is emptied (a new or wiped disk) and the node started again with
    the same command: it must come back as a new node, never voting nor counted for commit
    before it caught up. Two ways, half of the time each (the second needs 3+ members):

    - ``plain``: one member (the leader half of the time) is kill -9'd, wiped and, 0-2 s
      later, started again;
    - ``stale-majority``: the followers outside one majority with the leader are cut off for
      1.5-3 s (what is acknowledged then is on that majority only); then one follower of that
      majority is kill -9'd and wiped, the leader and the rest of that majority are kill -9'd,
      the cut is healed and the wiped node started: it and the stale followers are a majority
      that holds none of those entries. If the wiped node votes, they elect a leader without
      them and acknowledged jobs are lost; if it does not, there is no leader until the heal
      starts the others again.

    The window ends once every node it touched is ready (``/readyz``) or 30 s passed."""
    h = ctx.hosts
    leader = await find_leader(ctx)
    followers = [n for n in h.nodes if n is not leader]
    majority = len(h.nodes) // 2 + 1
    if leader is not None and len(h.nodes) >= 3 and ctx.rng.random() < 0.5:
        ctx.rng.shuffle(followers)
        holders, stale = followers[: majority - 1], followers[majority - 1 :]
        wiped = holders[0]
        lag_s = round(ctx.rng.uniform(1.5, 3.0), 3)
        detail: dict[str, Any] = {"mode": "stale-majority", "node": wiped.id,
                                  "leader": leader.id, "stale": _ids(stale),
                                  "lag_s": lag_s}  # fmt: skip
        others = [n for n in h.all_nodes if n not in stale]

        def cut() -> None:
            for n in stale:
                h.drop_from(n, others)

        await asyncio.to_thread(cut)
        await asyncio.sleep(lag_s)
        h.kill(wiped)
        detail["files_deleted"] = await asyncio.to_thread(h.wipe, wiped)
        down = [leader, *holders[1:]]
        for node in down:
            h.kill(node)
        detail["killed"] = _ids(down)
        await _heal_network(ctx)
        h.start(wiped)

        async def heal_stale() -> None:
            detail["serving_again"] = await wait_serving(ctx, [wiped], 30.0)
            for node in down:
                if not node.alive():
                    h.start(node)
            detail["ready"] = await wait_ready(ctx, [wiped, *down, *stale], 30.0)
            for n in h.nodes:
                h.note_exit(n)
            detail["exits"] = [{"node": n.id, **e} for n in h.nodes for e in n.exits
                               if e["time_ns"] >= wiped.started_ns]  # fmt: skip

        return Fault(detail, heal_stale)

    node, known = (leader, True) if leader is not None else (ctx.rng.choice(h.nodes), False)
    if ctx.rng.random() < 0.5:
        node, known = ctx.rng.choice(h.nodes), False
    h.kill(node)
    files = await asyncio.to_thread(h.wipe, node)
    down_s = round(ctx.rng.uniform(0.0, 2.0), 3)
    detail = {"mode": "plain", "node": node.id, "was_leader": known, "files_deleted": files,
              "down_s": down_s}  # fmt: skip

    async def restart() -> None:
        await asyncio.sleep(down_s)
        if not node.alive():
            h.start(node)
        detail["serving_again"] = await wait_serving(ctx, [node], 30.0)

    task = asyncio.create_task(restart())

    async def heal() -> None:
        await task
        detail["ready"] = await wait_ready(ctx, [node], 30.0)
        h.note_exit(node)
        detail["exits"] = [dict(e) for e in node.exits if e["time_ns"] >= node.started_ns]

    return Fault(detail, heal)


_drain_cli: bool | None = None  # does this raftq have `raftq node drain`? (asked once)


async def _has_drain_cli() -> bool:
    global _drain_cli  # noqa: PLW0603 - a per-process cache of a fact about the installed raftq
    if _drain_cli is None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "raftq", "node", "drain", "--help",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        _drain_cli = await proc.wait() == 0
    return _drain_cli


async def _drain_and_stop(ctx: NemesisContext, node: NodeProc, step: dict[str, Any]) -> None:
    """``raftq node drain`` (no new claims, leadership handed over, exit 0) when this raftq
    has it, else SIGTERM; kill -9 if the node still runs after either."""
    h = ctx.hosts
    if node.alive() and await _has_drain_cli():
        h.note_exit(node)
        node.expected_exit = True  # it exits by itself, as asked
        env = dict(os.environ, RAFTQ_TOKEN=h.token)
        env.pop("LD_PRELOAD", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "raftq", "node", "drain", "--config", str(h.config_for(node)),
            "--node", node.id, "--timeout", "30",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        out, _ = await proc.communicate()
        lines = out.decode(errors="replace").strip().splitlines()
        step["drain"] = {"code": proc.returncode, "last_line": lines[-1][:300] if lines else ""}
        if node.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(node.proc.wait, 10.0)
    await asyncio.to_thread(h.stop, node)


async def rolling_restart(ctx: NemesisContext) -> Fault:
    """Every member in turn (a random order): ``raftq node drain`` (or SIGTERM where raftq
    has no drain; kill -9 past 10 s), start again, wait until it is ready (``/readyz``, up to
    30 s), then the next. The window lasts until the last one is ready. Each step records
    whether the node led, the drain's exit code and last line, and the leader after it."""
    order = list(ctx.hosts.nodes)
    ctx.rng.shuffle(order)
    steps: list[dict[str, Any]] = []
    detail: dict[str, Any] = {"order": _ids(order), "steps": steps}
    loop = asyncio.get_running_loop()

    async def roll() -> None:
        for node in order:
            if node not in ctx.hosts.nodes:  # it left the cluster meanwhile
                continue
            t0 = loop.time()
            leader = await find_leader(ctx)
            step: dict[str, Any] = {"node": node.id, "was_leader": leader is node}
            await _drain_and_stop(ctx, node, step)
            ctx.hosts.start(node)
            step["ready"] = await wait_ready(ctx, [node], 30.0)
            after = await find_leader(ctx)
            step["leader_after"] = None if after is None else after.id
            step["s"] = round(loop.time() - t0, 3)
            steps.append(step)

    task = asyncio.create_task(roll())

    async def heal() -> None:
        await task

    return Fault(detail, heal)


MEMBER_WAIT_S = 30.0  # how long a change may take to show in the leader's membership


async def leader_members(ctx: NemesisContext) -> MemberView | None:
    """The membership the leader reports (None: no leader answered, or it has no members)."""
    best: tuple[int, MemberView] | None = None
    for node in ctx.hosts.all_nodes:
        if not node.alive() or node.paused:
            continue
        role, view = await read_members(ctx.session, node.url, 1.0)
        if role == "leader" and view is not None:
            term = await _term(ctx, node)
            if best is None or term > best[0]:
                best = (term, view)
    return None if best is None else best[1]


async def _term(ctx: NemesisContext, node: NodeProc) -> int:
    try:
        async with ctx.session.get(
            node.url + "/v1/cluster", timeout=aiohttp.ClientTimeout(total=1.0)
        ) as r:
            return int((await r.json())["self"]["term"])
    except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
        return -1


async def _wait_membership(
    ctx: NemesisContext, node: NodeProc, *, voter: bool, limit_s: float = MEMBER_WAIT_S
) -> bool:
    """Until the leader lists ``node`` as a voter (``voter``) or not at all (not ``voter``).
    A joining node that exits ends the wait at once (it will not join)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        view = await leader_members(ctx)
        if view is not None:
            if voter and node.id in view.voters:
                return True
            if not voter and node.id not in view.ids:
                return True
        if voter and node.proc is not None and not node.alive():
            return False
        await asyncio.sleep(0.3)
    return False


def _answered(r: dict[str, Any]) -> bool:
    """The change was accepted, or its outcome is unknown: worth waiting for."""
    status = r.get("status")
    return status is None or 200 <= int(status) < 300


def _ref_add(ctx: NemesisContext, node: NodeProc) -> None:
    if all(ref.id != node.id for ref in ctx.workload.nodes):
        ctx.workload.nodes.append(NodeRef(node.id, node.url))


def _ref_drop(ctx: NemesisContext, node: NodeProc) -> None:
    # In place: the producer and worker tasks hold this very list.
    ctx.workload.nodes[:] = [ref for ref in ctx.workload.nodes if ref.id != node.id]


async def _kill_leader_after(ctx: NemesisContext, delay_s: float, detail: dict[str, Any]) -> None:
    leader = await find_leader(ctx)
    await asyncio.sleep(delay_s)
    if leader is not None:
        ctx.hosts.kill(leader)
        detail.setdefault("killed", []).append(leader.id)


async def _in_flight(
    ctx: NemesisContext,
    request: Awaitable[dict[str, Any]],
    kill_leader: bool,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """Send ``request``; with ``kill_leader``, kill -9 the leader 0-0.3 s after it left (a
    change in flight while the leader dies)."""
    task = asyncio.ensure_future(request)
    if kill_leader:
        await _kill_leader_after(ctx, ctx.rng.uniform(0.0, 0.3), detail)
    return await task


async def _add_member(
    ctx: NemesisContext, node: NodeProc, change: Change, kill_leader: bool, detail: dict[str, Any]
) -> bool:
    """Start spare ``node`` as a new node (empty data dir) with ``--join``, after a POST when
    ``change.via`` says so; True once the leader lists it as a voter."""
    h = ctx.hosts
    live = [n for n in h.nodes if n.alive() and not n.paused]
    via = ctx.rng.choice(live or h.nodes)
    node.join = via.api
    h.kill(node)
    await asyncio.to_thread(h.wipe, node)  # a new machine
    steps = detail["steps"]
    if change.via == "post":
        body = {"id": node.id, "api": node.api, "raft": node.raft}
        r = await _in_flight(
            ctx, change_members(ctx.session, via.url, "POST", node.id, body), kill_leader, detail
        )
        steps.append({"step": "post", "node": node.id, "to": via.id, **r})
        h.start(node)
    else:
        h.start(node)
        if kill_leader:  # while the new node boots and asks to be added
            await _kill_leader_after(ctx, ctx.rng.uniform(0.3, 1.5), detail)
    ok = await _wait_membership(ctx, node, voter=True)
    step: dict[str, Any] = {"step": "voter", "node": node.id, "ok": ok, "via": via.id}
    exited = h.note_exit(node)
    if exited is not None:  # it stopped by itself (e.g. a join refused): what it said
        step["exit"] = {"code": exited["code"], "last_line": exited["last_line"]}
    steps.append(step)
    if ok:
        h.admit(node)
        node.join = None  # a member restarts like any other (its persisted membership)
        _ref_add(ctx, node)
    return ok


async def _remove_member(
    ctx: NemesisContext, node: NodeProc, kill_leader: bool, detail: dict[str, Any]
) -> bool:
    """``DELETE /v1/cluster/members/{id}`` through a random live member (the leaving one
    included); once the leader no longer lists it, stop it and count it a spare."""
    h = ctx.hosts
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MEMBER_WAIT_S
    attempts = 0
    while True:  # as an operator would: asked again while refused (409, 503), until the end
        live = [n for n in h.nodes if n.alive() and not n.paused]
        via = ctx.rng.choice(live or h.nodes)
        request = change_members(ctx.session, via.url, "DELETE", node.id)
        r = await _in_flight(ctx, request, kill_leader and attempts == 0, detail)
        attempts += 1
        if _answered(r) or loop.time() > deadline:
            break
        await asyncio.sleep(1.0)
    detail["steps"].append(
        {"step": "delete", "node": node.id, "to": via.id, "attempts": attempts, **r}
    )
    ok = _answered(r) and await _wait_membership(ctx, node, voter=False)
    detail["steps"].append({"step": "gone", "node": node.id, "ok": ok})
    if ok:
        await asyncio.to_thread(h.stop, node)
        h.retire(node)
        _ref_drop(ctx, node)
    return ok


async def membership(ctx: NemesisContext) -> Fault:
    """One membership change (``membership.plan_change``: add a spare host, remove a member,
    or replace one: add, wait until it votes, remove), while a member is cut off, a follower
    is down, or the leader is kill -9'd right after the change was asked for; that fault ends
    after 2-5 s (cut healed, killed nodes started) and the change may complete after. At heal the
    network is healed, killed members restarted, and the harness's view of the members made
    the leader's (``sync_members``). Needs spare hosts (``--nodes`` + 2 are built)."""
    h = ctx.hosts
    change = plan_change(
        ctx.rng, _ids(h.nodes), _ids(h.spares), min_size=min(3, h.n), max_size=len(h.all_nodes)
    )
    if change is None:
        return Fault({"skipped": "no change fits (no spare host, and no member to spare)"})
    detail: dict[str, Any] = {
        "action": change.action,
        "add": change.add,
        "remove": change.remove,
        "via": change.via,
        "fault": change.fault,
        "members_before": _ids(h.nodes),
        "steps": [],
    }
    fault_s = round(ctx.rng.uniform(2.0, 5.0), 3)
    detail["fault_s"] = fault_s
    if change.fault == "partition":
        cut, known = await _leader_or_random(ctx)
        if ctx.rng.random() < 0.5:
            cut, known = ctx.rng.choice(h.nodes), False
        others = [n for n in h.all_nodes if n is not cut]
        await asyncio.to_thread(h.drop_from, cut, others)
        detail["cut"], detail["cut_was_leader"] = cut.id, known
    elif change.fault == "kill-follower":
        leader = await find_leader(ctx)
        pool = [n for n in h.nodes if n is not leader and n.id != change.remove]
        if pool:
            victim = ctx.rng.choice(pool)
            h.kill(victim)
            detail["killed"] = [victim.id]

    async def end_fault() -> None:
        """The side fault lasts ``fault_s``; the change may need its end to complete (with 3
        voters, a 4th cannot be added while one of them is away: 409 no quorum)."""
        await asyncio.sleep(fault_s)
        await _heal_network(ctx)
        await _restart_killed(ctx, detail)

    async def run_change() -> None:
        kill_leader = change.fault == "kill-leader"
        added = True
        if change.add is not None:
            node = h.by_id(change.add)
            assert node is not None
            added = await _add_member(ctx, node, change, kill_leader, detail)
            kill_leader = False
        if change.remove is not None and added:
            node = h.by_id(change.remove)
            assert node is not None
            await _remove_member(ctx, node, kill_leader, detail)

    side = asyncio.create_task(end_fault())
    task = asyncio.create_task(run_change())

    async def heal() -> None:
        for t, what in ((task, "error"), (side, "heal_error")):
            try:
                await t
            except Exception as e:  # recorded: the heal below still puts everything back
                detail[what] = repr(e)[:300]
        await _heal_network(ctx)
        await _restart_killed(ctx, detail)
        await sync_members(ctx, detail)
        detail["serving_again"] = await wait_serving(ctx, list(h.nodes), 30.0)

    return Fault(detail, heal)


async def _restart_killed(ctx: NemesisContext, detail: dict[str, Any]) -> None:
    """Start again the members this window killed (``detail["killed"]``) that are down."""
    for nid in detail.get("killed", []):
        node = ctx.hosts.by_id(nid)
        if node is not None and node in ctx.hosts.nodes and not node.alive():
            ctx.hosts.start(node)


async def sync_members(ctx: NemesisContext, detail: dict[str, Any] | None = None) -> None:
    """Make the harness's member list the leader's: a host the leader lists is started (if
    down) and counted a member; a member it no longer lists is stopped and counted a spare.
    Without an answer (no leader, or no membership in the API) the list stays as it is. A
    spare host still running (a join that did not finish) is stopped."""
    h = ctx.hosts
    view = await leader_members(ctx)
    if detail is not None:
        detail["members_after"] = None if view is None else list(view.ids)
    if view is not None:
        for node in h.all_nodes:
            if node.id in view.ids and node in h.spares:
                h.admit(node)
                node.join = None
                if not node.alive():
                    h.start(node)
                _ref_add(ctx, node)
            elif node.id not in view.ids and node in h.nodes:
                await asyncio.to_thread(h.stop, node)
                h.retire(node)
                _ref_drop(ctx, node)
    for node in h.spares:
        if node.alive():
            await asyncio.to_thread(h.stop, node)


async def none(ctx: NemesisContext) -> Fault:
    return Fault({})


Nemesis = Callable[[NemesisContext], Awaitable[Fault]]

NEMESES: dict[str, Nemesis] = {
    "none": none,
    "partition-halves": partition_halves,
    "partition-leader": partition_leader,
    "partition-follower": partition_follower,
    "partition-oneway": partition_oneway,
    "packet": packet,
    "delay": delay,
    "kill-one": kill_one,
    "kill-minority": kill_minority,
    "kill-leader": kill_leader,
    "kill-all": kill_all,
    "pause-leader": pause_leader,
    "clock": clock,
    "worker-kill": worker_kill,
    "worker-pause": worker_pause,
    "disk-full": disk_full,
    "disk-error": disk_error,
    "clock-jump": clock_jump,
    "snapshot-race": snapshot_race,
    "forged-forward": forged_forward,
    "wipe-node": wipe_node,
    "rolling-restart": rolling_restart,
    "membership": membership,
}
# Nemeses that need spare hosts (built beyond --nodes, outside the initial cluster).
SPARE_NEMESES = ("membership",)
SPARE_HOSTS = 2
# Raft settings that the snapshot-race nemesis needs: compaction every few hundred entries.
SNAPSHOT_RACE_RAFT = {"log_compaction_min_entries": 300, "log_compaction_min_time_s": 2}
ALL = "all"
DESCRIPTIONS: dict[str, str] = {
    "none": "no fault (baseline)",
    "partition-halves": "random halves cut from each other (iptables DROP both ways)",
    "partition-leader": "the leader cut off from every other node",
    "partition-follower": "one follower cut off from every other node",
    "partition-oneway": "one node stops receiving from the others (INPUT only)",
    "packet": "15-40% random packet loss between all nodes (iptables statistic)",
    "delay": "30-150 ms (+20% jitter) on every packet between nodes (NFQUEUE delayer)",
    "kill-one": "kill -9 one random node, restart it at the end of the window",
    "kill-minority": "kill -9 a minority of nodes, restart them",
    "kill-leader": "kill -9 the leader, restart it",
    "kill-all": "kill -9 every node at once, restart them all",
    "pause-leader": "SIGSTOP the leader for 5-10 s (past the election timeout), then SIGCONT",
    "clock": "one node's clocks jump 1-4 s ahead or run at x0.5/x2 (libfaketime)",
    "worker-kill": "kill -9 a worker process holding leases, start a new one",
    "worker-pause": "SIGSTOP a worker holding leases until a job is claimed again: zombie ack",
    "disk-full": "one node's data dir (its own tmpfs) filled up, then freed and the node restarted",
    "disk-error": "writes/syncs in one node's data dir fail with EIO (LD_PRELOAD shim), restart",
    "clock-jump": "one node's wall clock jumps 1-6 HOURS forward or back until the heal (shim)",
    "snapshot-race": "a follower lags while others compact often and restart: snapshot installs",
    "forged-forward": "unsigned X-Raftq-Forwarded requests from a node's host: all must get 401",
    "wipe-node": "kill -9 a node, empty its data dir, restart it: it must come back as a new node",
    "rolling-restart": "SIGTERM, restart and wait ready, every member one after another",
    "membership": "add/remove/replace a node (spare hosts) amid partitions, kills, leader death",
    ALL: "a rotation of every nemesis above",
}


def expand(names: list[str]) -> list[str]:
    """Nemesis names with ``all`` replaced by every nemesis but ``none``."""
    out: list[str] = []
    for name in names:
        if name == ALL:
            out += [n for n in NEMESES if n != "none"]
        elif name in NEMESES:
            out.append(name)
        else:
            raise ValueError(f"unknown nemesis {name!r} (see --list)")
    return out


async def run_schedule(
    ctx: NemesisContext,
    names: list[str],
    *,
    end_at: float,
    quiet_s: float,
    window_s: tuple[float, float] = (5.0, 10.0),
    gap_s: tuple[float, float] = (2.0, 4.0),
) -> None:
    """Inject faults until ``end_at`` (loop time); every fault is healed before returning."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(quiet_s)
    rotation: list[str] = []
    with ctx.log_path.open("a") as log:
        while True:
            if not rotation:
                rotation = list(names)
                if len(rotation) > 1:
                    ctx.rng.shuffle(rotation)
            remaining = end_at - loop.time()
            if remaining < window_s[0]:
                return
            name = rotation.pop(0)
            start_ns = _now(ctx)
            fault = await NEMESES[name](ctx)
            duration = max(ctx.rng.uniform(*window_s), fault.min_duration_s)
            await asyncio.sleep(min(duration, max(remaining, fault.min_duration_s)))
            await fault.heal()
            window = {
                "nemesis": name,
                "start_ns": start_ns,
                "end_ns": _now(ctx),
                "detail": fault.detail,
            }
            ctx.windows.append(window)
            log.write(json.dumps(window) + "\n")
            log.flush()
            await asyncio.sleep(ctx.rng.uniform(*gap_s))


def _now(ctx: NemesisContext) -> int:
    return time.monotonic_ns() - ctx.origin_ns


async def heal_all(ctx: NemesisContext) -> None:
    """Undo everything: network rules, paused nodes and workers; with spare hosts, the member
    list made the leader's (``sync_members``). Dead nodes are restarted by the caller (every
    node restarts after the faults anyway)."""
    await _heal_network(ctx)
    for node in ctx.hosts.all_nodes:
        if node.paused:
            ctx.hosts.resume(node)
    for z in ctx.workload.zombies:
        if z.paused:
            ctx.workload.resume_zombie(z)
    if ctx.hosts.spare_count:
        await sync_members(ctx)
