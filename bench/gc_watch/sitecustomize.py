"""Benchmarks only: log the full GC passes and the GIL stalls of ``raftq serve`` processes.

    RAFTQ_GC_LOG=/tmp/gc PYTHONPATH=bench/gc_watch raftq bench --jobs-queued 1000000

Every node started under that environment (``LocalCluster`` passes it on) appends to
``$RAFTQ_GC_LOG.<pid>`` one line per generation-2 collection (its duration) and one per stall
of 150 ms or more seen by a thread that sleeps 10 ms in a loop (a stall is any time no Python
thread could run it: a GC pass, a long C call holding the GIL, a starved CPU).
"""

import os
import sys

if "serve" in sys.argv and os.environ.get("RAFTQ_GC_LOG"):
    import gc
    import threading
    import time

    _path = f"{os.environ['RAFTQ_GC_LOG']}.{os.getpid()}"
    _started: list[float] = [0.0]

    def _write(line: str) -> None:
        with open(_path, "a") as f:
            f.write(f"{time.time():.3f} {line}\n")

    def _on_gc(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            _started[0] = time.monotonic()
        else:
            ms = (time.monotonic() - _started[0]) * 1000
            _write(f"gc2 {ms:.0f} ms, collected {info['collected']}")

    def _watch() -> None:
        while True:
            t = time.monotonic()
            time.sleep(0.01)
            late_ms = (time.monotonic() - t) * 1000 - 10
            if late_ms >= 150:
                _write(f"stall {late_ms:.0f} ms")

    gc.callbacks.append(_on_gc)
    threading.Thread(target=_watch, name="gc-watch", daemon=True).start()
