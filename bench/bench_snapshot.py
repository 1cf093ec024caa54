"""Snapshots at scale on a real 3-node cluster (issue 4 §2/§3 figures).

Loads N queued jobs of ~100 B (default 1M), lets every node compact (log_compaction_min_time_s
elapses; PySyncObj spreads the nodes over the period), then restarts a follower with its own
data three times, and restarts a wiped follower once. Reports:

- compaction: time per node (our "snapshot: written in" log line), snapshot file size, the
  longest tick-thread gap while compacting (nodes run with debug logs, which name every tick
  of 50 ms or more), elections (term changes) during it, and the peak memory of a node plus
  its forked writer (RSS sum, and PSS sum, which counts shared pages once);
- restart with own data: time to ready, snapshot load time, term changes;
- wiped node: time until it has caught up, term changes.

    flock /tmp/bench.lock .venv/bin/python bench/bench_snapshot.py [--jobs 1000000]
        [--no-hold] [--memory-only] [--json FILE]

``--no-hold`` runs the nodes with raftq's election hold disabled (PySyncObj's own behaviour,
as before issue 4 §3) to compare restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raftq.client import Client
from raftq.node.spawn import serve_argv, start_node
from tests.integration.cluster import Cluster, http_json

_BOOT = (
    "import os, sys\n"
    "if os.environ.get('RAFTQ_MEM_PROBE'):\n"
    "    sys.path.insert(0, os.environ['RAFTQ_MEM_PROBE_DIR'])\n"
    "    import mem_probe\n"
    "    trace = os.environ.get('RAFTQ_MEM_TRACE') == '1'\n"
    "    mem_probe.install(os.environ['RAFTQ_MEM_PROBE'], trace)\n"
    "import raftq.raft.pysyncobj.election_hold as h\n"
    "if sys.argv[1] == 'nohold':\n"
    "    h.ElectionHold.hold = lambda *a, **k: None\n"
    "from raftq.cli.main import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)
_WRITTEN = re.compile(r"snapshot: written in (\d+) ms")
_LOADED = re.compile(r"snapshot: loaded entries up to \d+ \((\d+) jobs\) in (\d+) ms")
_BUSY = re.compile(r"tick thread busy for (\d+) ms")


class BenchCluster(Cluster):
    hold = True
    probe = False  # --probe: bench/mem_probe.py in every node (reports on SIGUSR2)
    trace = False  # --trace: and tracemalloc from the start

    def probe_path(self, nid: str) -> Path:
        return self.root / f"{nid}.mem.jsonl"

    def probe_all(self, label: str) -> dict[str, Any]:
        """Ask every node for a memory report (mem_probe) and wait for it."""
        reports: dict[str, Any] = {}
        sizes = {}
        for nid in self.ids:
            path = self.probe_path(nid)
            sizes[nid] = path.stat().st_size if path.exists() else 0
            os.kill(self.procs[nid].pid, signal.SIGUSR2)
        for nid in self.ids:
            path = self.probe_path(nid)
            _wait(lambda p=path, n=nid: p.exists() and p.stat().st_size > sizes[n], 300, "probe")
            time.sleep(0.2)
            line = path.read_text()[sizes[nid] :].strip().splitlines()[-1]
            reports[nid] = {"label": label, **json.loads(line)}
        return reports

    def start(self, *ids: str) -> None:
        for nid in ids or self.ids:
            log = open(self.root / f"{nid}.log", "ab")  # noqa: SIM115
            mode = "hold" if self.hold else "nohold"
            boot = (sys.executable, "-c", _BOOT, mode)
            argv = serve_argv(self.config_path, nid, log_level="debug", program=boot)
            env = dict(os.environ)
            if self.probe:
                env["RAFTQ_MEM_PROBE"] = str(self.probe_path(nid))
                env["RAFTQ_MEM_PROBE_DIR"] = str(Path(__file__).resolve().parent)
                env["RAFTQ_MEM_TRACE"] = "1" if self.trace else "0"
            self.procs[nid] = start_node(argv, stdout=log, env=env, cwd=self.root)
            log.close()


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _mem_kb(pid: int, field: str) -> int:
    source = "smaps_rollup" if field == "Pss" else "status"
    key = "Pss:" if field == "Pss" else "VmRSS:"
    try:
        with open(f"/proc/{pid}/{source}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler:
    """Every 100 ms: each node's RSS and PSS (plus its children's) and every node's term."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.peak_rss_kb: dict[str, int] = {}
        self.peak_pss_kb: dict[str, int] = {}
        self.terms: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def reset(self) -> None:
        self.peak_rss_kb.clear()
        self.peak_pss_kb.clear()
        self.terms.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            terms = {}
            for nid, proc in list(self.cluster.procs.items()):
                if proc.poll() is not None:
                    continue
                pids = [proc.pid, *_children(proc.pid)]
                rss = sum(_mem_kb(p, "VmRSS") for p in pids)
                pss = sum(_mem_kb(p, "Pss") for p in pids)
                self.peak_rss_kb[nid] = max(self.peak_rss_kb.get(nid, 0), rss)
                self.peak_pss_kb[nid] = max(self.peak_pss_kb.get(nid, 0), pss)
                view = self.cluster.view(nid)
                if view:
                    terms[nid] = int(view["self"]["term"])
            self.terms.append((time.monotonic(), terms))
            self._stop.wait(0.1)

    def max_term(self) -> int:
        """The highest term seen since the last reset (waits for a first sample: a reset
        while a round of sampling is slow must not read as term 0)."""
        while not any(t for _, t in self.terms):
            time.sleep(0.05)
        return max((max(t.values()) for _, t in self.terms if t), default=0)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _log(cluster: Cluster, nid: str) -> Path:
    return cluster.root / f"{nid}.log"


def _log_from(cluster: Cluster, nid: str, offset: int) -> str:
    return _log(cluster, nid).read_bytes()[offset:].decode(errors="replace")


def _offsets(cluster: Cluster) -> dict[str, int]:
    return {nid: _log(cluster, nid).stat().st_size for nid in cluster.ids}


def _rss_kb(cluster: Cluster, nid: str) -> int:
    return _mem_kb(cluster.procs[nid].pid, "VmRSS")


async def _load(cluster: Cluster, jobs: int, concurrency: int = 4) -> float:
    nodes = [cluster.api[n] for n in cluster.ids]
    batch = [{"payload": "x" * 92} for _ in range(1000)]
    started = time.monotonic()
    async with Client(nodes, retry_ms=60_000, timeout_ms=60_000) as client:
        todo = iter(range(0, jobs, len(batch)))

        async def producer() -> None:
            for _ in todo:
                await client.enqueue_many("bench", batch)

        await asyncio.gather(*(producer() for _ in range(concurrency)))
    return time.monotonic() - started


def _ready(cluster: Cluster, nid: str) -> bool:
    try:
        status, _ = http_json(cluster.url(nid, "/readyz"), timeout=2)
    except OSError:
        return False
    return status == 200


def _caught_up(cluster: Cluster, nid: str, leader: str) -> bool:
    me, lead = cluster.view(nid), cluster.view(leader)
    if not me or not lead:
        return False
    return bool(me["self"]["applied_index"] >= lead["self"]["commit_index"] - 2)


def _wait(predicate: Any, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(what)
        time.sleep(0.05)
    return time.monotonic() - started


def run(args: argparse.Namespace, root: Path, out: dict[str, Any]) -> dict[str, Any]:
    """Fills ``out`` phase by phase (a failed run still reports the phases it finished)."""
    extra = f"log_compaction_min_time_s = {args.compact_after_s}\nsubmit_timeout_ms = 30000"
    cluster = BenchCluster.generate(root, extra_raft=extra)
    cluster.hold = not args.no_hold
    cluster.probe = args.probe or args.trace
    cluster.trace = args.trace
    out.update({"jobs": args.jobs, "election_hold": not args.no_hold})
    with cluster, Sampler(cluster) as sampler:
        leader = cluster.wait_ready(60)
        out["load_s"] = round(asyncio.run(_load(cluster, args.jobs)), 1)
        cluster.wait_converged(300)
        out["state_rss_mb"] = {n: _rss_kb(cluster, n) // 1024 for n in cluster.ids}
        if cluster.probe:
            time.sleep(2)
            out["probe_loaded"] = cluster.probe_all("loaded")
        term0 = sampler.max_term()

        # -- compaction on every node ------------------------------------------------------
        offsets = _offsets(cluster)
        sampler.reset()
        _wait(
            lambda: all(_WRITTEN.search(_log_from(cluster, n, offsets[n])) for n in cluster.ids),
            args.compact_after_s * 3 + 120,
            "every node compacted",
        )
        comp: dict[str, Any] = {}
        for nid in cluster.ids:
            text = _log_from(cluster, nid, offsets[nid])
            comp[nid] = {
                "write_ms": int(_WRITTEN.search(text).group(1)),  # type: ignore[union-attr]
                "max_tick_gap_ms": max((int(x) for x in _BUSY.findall(text)), default=0),
                "peak_rss_mb_node_plus_writer": sampler.peak_rss_kb.get(nid, 0) // 1024,
                "peak_pss_mb_node_plus_writer": sampler.peak_pss_kb.get(nid, 0) // 1024,
                "file_mb": round((root / "data" / nid / "raft.dump").stat().st_size / 2**20, 1),
            }
        out["compaction"] = comp
        out["compaction_term_changes"] = sampler.max_term() - term0
        time.sleep(2)  # the journal truncation follows the writer's success by a tick or two
        out["compacted_rss_mb"] = {n: _rss_kb(cluster, n) // 1024 for n in cluster.ids}
        if cluster.probe:
            out["probe_compacted"] = cluster.probe_all("compacted")
        if args.memory_only:
            return out

        # -- restarts of a follower with its own data -------------------------------------
        restarts: list[dict[str, Any]] = []
        out["restart_own_data"] = restarts
        for _ in range(args.restarts):
            leader = cluster.leader(30)
            victim = cluster.followers()[0]
            time.sleep(2)
            sampler.reset()
            time.sleep(0.3)
            before = sampler.max_term()
            offset = _log(cluster, victim).stat().st_size
            cluster.kill(victim)
            cluster.start(victim)
            ready_s = _wait(lambda v=victim: _ready(cluster, v), 300, "restart ready")
            time.sleep(5)
            loaded = _LOADED.search(_log_from(cluster, victim, offset))
            restarts.append(
                {
                    "ready_s": round(ready_s, 2),
                    "load_ms": int(loaded.group(2)) if loaded else None,
                    "term_changes": sampler.max_term() - before,
                }
            )
        out["restart_own_data"] = restarts

        # -- a wiped follower catches up from the leader ------------------------------------
        leader = cluster.leader(30)
        victim = cluster.followers()[0]
        time.sleep(2)
        sampler.reset()
        time.sleep(0.3)
        before = sampler.max_term()
        cluster.kill(victim)
        shutil.rmtree(root / "data" / victim)
        cluster.start(victim)
        caught_s = _wait(lambda: _caught_up(cluster, victim, leader), 600, "wiped catch-up")
        time.sleep(5)
        out["wiped_catch_up"] = {
            "caught_up_s": round(caught_s, 2),
            "term_changes": sampler.max_term() - before,
            "peak_rss_mb_leader": sampler.peak_rss_kb.get(leader, 0) // 1024,
        }
        digest = cluster.wait_converged(120)
        out["converged_digest"] = digest
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--compact-after-s", type=int, default=60)
    parser.add_argument("--no-hold", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--memory-only", action="store_true", help="stop after the compaction (RSS figures)"
    )
    parser.add_argument(
        "--probe", action="store_true", help="memory reports from inside the nodes (mem_probe)"
    )
    parser.add_argument("--trace", action="store_true", help="--probe with tracemalloc on")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="raftq-bench-snap-")
    result: dict[str, Any] = {}
    try:
        run(args, Path(tmp), result)
    except BaseException:
        print(json.dumps({"failed_run_partial_results": result}, indent=2), file=sys.stderr)
        for log in sorted(Path(tmp).glob("*.log")):
            print(f"--- {log.name}", file=sys.stderr)
            lines = log.read_text(errors="replace").splitlines()
            tail = [line for line in lines if " DEBUG " not in line][-40:]
            print("\n".join(tail), file=sys.stderr)
        print(f"data and logs kept in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
