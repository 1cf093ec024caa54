"""Memory attribution inside a running node (benchmarks only, never imported by raftq).

``install(path)`` makes SIGUSR2 write a JSON report to ``path`` (appending, one object per
line): the kernel's view (``/proc/self/smaps_rollup``, ``status``), glibc's (``mallinfo2``:
bytes in use and bytes free but kept), pymalloc's (arenas, used and free blocks, from
``sys._debugmallocstats``), and the sizes of the structures that hold jobs: the core machine
(jobs, heaps, the request-id memory) and PySyncObj's journal list. With ``trace=True``
tracemalloc runs from ``install`` on and the report adds the top allocation sites still live.
With ``RAFTQ_MEM_TRIM=1`` in the node's environment, the report then calls ``malloc_trim(0)``
and adds the memory figures after it (how much of what glibc keeps free was resident).

The census walks every job and every journal entry: it takes seconds at 1M jobs and holds the
tick thread's objects without a lock (read-only, approximate while load runs; the bench sends
the signal only when the cluster is idle). The kernel and allocator figures are read first, so
the census's own allocations do not count in them.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from typing import Any


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _kb_fields(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in keys:
                out[name] = int(rest.split()[0]) // 1024  # MB
    return out


def _mallinfo() -> dict[str, int]:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    mi = libc.mallinfo2()
    mb = 1 << 20
    return {
        "arena_mb": mi.arena // mb,  # heap obtained with brk/arenas (not mmap'd chunks)
        "mmap_mb": mi.hblkhd // mb,  # big chunks in their own mmap
        "in_use_mb": mi.uordblks // mb,  # allocated, in arenas
        "free_kept_mb": mi.fordblks // mb,  # free in arenas, not returned: fragmentation
    }


def _pymalloc() -> dict[str, Any]:
    """Parse ``sys._debugmallocstats`` (it writes to C stderr: fd 2 is redirected briefly)."""
    with tempfile.TemporaryFile("w+") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    out: dict[str, Any] = {}
    wanted = {
        "# arenas allocated current": "arenas",
        "# bytes in allocated blocks": "used_mb",
        "# bytes in available blocks": "free_blocks_mb",
        "# bytes lost to pool headers": "pool_headers_mb",
        "# bytes lost to quantization": "quantization_mb",
        "# bytes lost to arena alignment": "alignment_mb",
    }
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if "unused pools *" in name:  # empty pools kept in partly used arenas
            out["unused_pools_mb"] = int(value.strip().replace(",", "")) >> 20
        key = wanted.get(name.strip())
        if key:
            n = int(value.strip().replace(",", ""))
            out[key] = n if key == "arenas" else n // (1 << 20)
    # Per size class: blocks in use and free, to see which class holds free space.
    classes = []
    for m in re.finditer(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M):
        _, size, pools, used, avail = map(int, m.groups())
        if pools * 16384 >= 4 << 20:  # 16 KiB pools (CPython 3.10+); classes of 4 MB or more
            classes.append(
                {"size": size, "pools_mb": pools * 16384 >> 20, "used": used, "free": avail}
            )
    out["big_classes"] = classes
    return out


def _objects() -> list[Any]:
    """Every tracked object, the frozen ones too (``gc.get_objects`` skips the permanent
    generation that raftq.raft.gc_guard freezes the heap into; it is refrozen after)."""
    frozen = gc.get_freeze_count() > 0
    if frozen:
        gc.unfreeze()
    try:
        return gc.get_objects()
    finally:
        if frozen:
            gc.freeze()


def _find(type_name: str) -> list[Any]:
    return [o for o in _objects() if type(o).__name__ == type_name]


def _machine_census() -> dict[str, Any]:
    from raftq.core.machine import Machine  # noqa: PLC0415
    from raftq.core.results import Enqueued  # noqa: PLC0415

    machines = [o for o in _objects() if isinstance(o, Machine)]
    out: list[dict[str, Any]] = []
    gs = sys.getsizeof
    for m in machines:
        job_obj = payload = ints = shared_ready = 0
        for job in m.jobs.values():
            job_obj += gs(job)
            payload += gs(job.payload)
            ints += gs(job.id)
            if job.ready_at_ms is job.created_ms:
                shared_ready += 1
            else:
                ints += gs(job.ready_at_ms)
        heaps = 0
        for q in m.queues.values():
            for heap in (q.ready, q.delayed, q.leases):
                heaps += gs(heap) + sum(gs(k) for k in heap)
        req = gs(m.requests) + gs(m.request_order)
        ids_in_answers = 0
        for rid, (_, result) in m.requests.items():
            req += gs(rid) + 64 + gs(result)  # key, the (expires, result) tuple, the result
            if isinstance(result, Enqueued):
                req += gs(result.ids) + gs(result.existing)
                ids_in_answers += len(result.ids)
        mb = 1 << 20
        out.append(
            {
                "jobs": len(m.jobs),
                "job_objects_mb": job_obj // mb,
                "payloads_mb": payload // mb,
                "job_ints_mb": ints // mb,
                "ready_at_shared_with_created": shared_ready,
                "jobs_dict_mb": gs(m.jobs) // mb,
                "heaps_mb": heaps // mb,
                "requests": len(m.requests),
                "requests_mb": req // mb,
                "ids_held_by_answers": ids_in_answers,
            }
        )
    return {"machines": out}


def _journal_census() -> dict[str, Any]:
    out = []
    for j in _find("DurableFileJournal") + _find("FileJournal") + _find("MemoryJournal"):
        entries = next((v for k, v in vars(j).items() if k.endswith("__journal")), None)
        if not isinstance(entries, list):
            continue
        size = sys.getsizeof(entries)
        for e in entries:
            size += sys.getsizeof(e) + sum(sys.getsizeof(x) for x in e)
        out.append({"entries": len(entries), "mb": size >> 20})
    return {"journals": out}


def _census_by_type(top: int = 12) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for o in _objects():
        name = type(o).__name__
        counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:top]


def report(label: str = "", trim: bool = False) -> dict[str, Any]:
    started = time.monotonic()
    out: dict[str, Any] = {"label": label, "pid": os.getpid()}
    out["status"] = _kb_fields("/proc/self/status", ("VmRSS", "VmHWM", "RssAnon", "RssFile"))
    out["smaps"] = _kb_fields(
        "/proc/self/smaps_rollup", ("Rss", "Pss", "Anonymous", "Pss_Anon", "Pss_File")
    )
    out["malloc"] = _mallinfo()
    out["pymalloc"] = _pymalloc()
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        out["tracemalloc_overhead_mb"] = tracemalloc.get_tracemalloc_memory() >> 20
        out["traced_mb"] = tracemalloc.get_traced_memory()[0] >> 20
        out["top_lines"] = [
            [str(s.traceback), s.size >> 20, s.count] for s in snap.statistics("lineno")[:25]
        ]
    if trim:
        # What glibc keeps free could go back to the OS: how much of it is resident?
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        out["after_malloc_trim"] = _kb_fields("/proc/self/smaps_rollup", ("Rss", "Anonymous")) | {
            "malloc": _mallinfo()
        }
    out.update(_machine_census())
    out.update(_journal_census())
    out["gc_types"] = _census_by_type()
    out["census_s"] = round(time.monotonic() - started, 1)
    return out


def install(path: str, trace: bool = False) -> None:
    if trace:
        tracemalloc.start(1)

    def on_signal(signum: int, frame: object) -> None:
        try:
            text = json.dumps(report(trim=os.environ.get("RAFTQ_MEM_TRIM") == "1"))
        except Exception as e:  # a report must never take the node down
            text = json.dumps({"error": repr(e)})
        with open(path, "a") as f:
            f.write(text + "\n")

    signal.signal(signal.SIGUSR2, on_signal)
