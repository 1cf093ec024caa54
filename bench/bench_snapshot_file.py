"""The snapshot file alone, in one process (no cluster): write, verify and load at 1M queued
100-byte jobs, next to what the previous path cost (PySyncObj's serializer: gzip level 9 of a
pickle that held our msgpack snapshot bytes, loaded with gunzip + unpickle + restore).

    flock /tmp/bench.lock .venv/bin/python bench/bench_snapshot_file.py [--jobs 1000000]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import pickle
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raftq.core import Enqueue, Machine, NewJob, encode_entry, snapshot_bytes, write_snapshot
from raftq.raft.pysyncobj.snapshot_hooks import load_machine
from raftq.raft.snapshot_file import RaftHeader, open_verified, write_file


def _machine(jobs: int) -> Machine:
    """Payloads of 100 hex digits (random, seeded): compressible about 2x, unlike a constant."""
    m = Machine()
    rnd = random.Random(1)
    for i in range(0, jobs, 1000):
        batch = tuple(NewJob(payload=rnd.randbytes(50).hex().encode()) for _ in range(1000))
        m.apply_entry(encode_entry([Enqueue(now_ms=1_000 + i, queue="bench", jobs=batch)]))
    return m


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args()
    gc.disable()
    m = _machine(args.jobs)
    gc.enable()
    out: dict[str, float] = {"jobs": args.jobs}
    header = RaftHeader(last=(b"\x01a", 10, 1), prev=(b"\x01b", 9, 1), cluster=("h:1",))
    with tempfile.TemporaryDirectory(prefix="raftq-bench-snapfile-") as tmp:
        path = str(Path(tmp) / "raft.dump")
        t = time.perf_counter()
        size = write_file(path, header, lambda w: write_snapshot(m, w))
        out["write_file_s"] = time.perf_counter() - t
        out["file_mb"] = size / 2**20
        t = time.perf_counter()
        info, f = open_verified(path)
        out["verify_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with f:
            restored = load_machine(info, f)
        out["load_s"] = time.perf_counter() - t
        assert restored.digest == m.digest and len(restored.jobs) == args.jobs
        del restored
        # The previous path: gzip-9(pickle(...)) of the same snapshot bytes, and back.
        t = time.perf_counter()
        raw = snapshot_bytes(m)
        old = gzip.compress(pickle.dumps({"snapshot": raw}, 2), 9)
        out["old_gzip9_pickle_write_s"] = time.perf_counter() - t
        out["old_file_mb"] = len(old) / 2**20
        t = time.perf_counter()
        back = pickle.loads(gzip.decompress(old))["snapshot"]
        gc.disable()
        Machine.restore(back)
        gc.enable()
        out["old_load_s"] = time.perf_counter() - t
    print(json.dumps({k: round(v, 2) for k, v in out.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
