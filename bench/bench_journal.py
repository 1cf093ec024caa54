"""What one journal append costs with fsync on: raftq's journal against the mmap + msync way.

    flock /tmp/bench.lock .venv/bin/python bench/bench_journal.py [--n 400] [--size 150]
        [--dir DIR] [--json FILE]

Both series append ``--n`` entries of ``--size`` bytes to a fresh journal in ``--dir`` (default:
a temporary directory under the current one, i.e. the same disk as a node's data dir) and time
each append until it is durable, alternating in rounds of 50 so that the machine's noise falls
on both alike:

- ``raftq``: ``DurableFileJournal.add`` (pwrite + fdatasync of the record, then of the header);
- ``mmap+msync``: PySyncObj's own ``FileJournal.add`` (writes into its mmap), then ``msync`` of
  the record's pages and of the header page, the way raftq synced its journal before.
"""

from __future__ import annotations

import argparse
import json
import mmap
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pysyncobj.journal import FileJournal

from raftq.raft.journal import DurableFileJournal


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


class MsyncJournal:
    """PySyncObj's FileJournal with the record's pages and then the header page msync'd."""

    def __init__(self, path: str) -> None:
        self.j = FileJournal(path)

    def add(self, command: bytes, idx: int, term: int) -> None:
        start = self.j._FileJournal__currentOffset
        self.j.add(command, idx, term)
        end = self.j._FileJournal__currentOffset
        mm = self.j._FileJournal__journalFile._ResizableFile__mm
        begin = start - start % mmap.PAGESIZE
        mm.flush(begin, min(end, mm.size()) - begin)
        if begin > 0:
            mm.flush(0, mmap.PAGESIZE)

    def close(self) -> None:
        self.j._destroy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="appends per series")
    ap.add_argument("--size", type=int, default=150, help="bytes per entry")
    ap.add_argument("--dir", type=Path, default=Path("."))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    lat: dict[str, list[float]] = {"raftq": [], "mmap+msync": []}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-journal-") as tmp:
        journals = {
            "raftq": DurableFileJournal(f"{tmp}/a.journal"),
            "mmap+msync": MsyncJournal(f"{tmp}/b.journal"),
        }
        command = b"x" * args.size
        for start in range(0, args.n, 50):
            for name, journal in journals.items():
                for idx in range(start + 1, min(args.n, start + 50) + 1):
                    t0 = time.perf_counter()
                    journal.add(command, idx, 1)
                    lat[name].append((time.perf_counter() - t0) * 1000)
        journals["raftq"]._destroy()
        journals["mmap+msync"].close()  # type: ignore[attr-defined]
    out = {
        name: {"p50_ms": pct(xs, 0.5), "p90_ms": pct(xs, 0.9), "p99_ms": pct(xs, 0.99)}
        for name, xs in lat.items()
    }
    out["ratio_p50"] = out["mmap+msync"]["p50_ms"] / out["raftq"]["p50_ms"]  # type: ignore[assignment]
    for name in lat:
        r = out[name]
        print(f"{name:<12} p50 {r['p50_ms']:.3f} ms  p90 {r['p90_ms']:.3f}  p99 {r['p99_ms']:.3f}")
    print(
        f"mmap+msync / raftq at p50: {out['ratio_p50']:.1f}x; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
