"""What one journal append costs with fsync on: raftq's journal against two other ways.

    flock /tmp/bench.lock .venv/bin/python bench/bench_journal.py [--n 400] [--size 150]
        [--contended] [--dir DIR] [--json FILE]

Each series appends ``--n`` entries of ``--size`` bytes to a fresh journal in ``--dir``
(default: a temporary directory under the current one, i.e. the same disk as a node's data
dir) and times each append until it is durable, alternating in rounds of 50 so that the
machine's noise falls on all alike:

- ``raftq``: ``DurableFileJournal.add``: one checksummed record appended on the journal's
  ``O_DSYNC`` descriptor (durable when the write returns; until 2026-12-07 the record and
  then PySyncObj's header, two such writes);
- ``pwrite+fdatasync``: a record and a header on a plain descriptor, each followed by an
  ``fdatasync`` (raftq's journal until 2026-11-28 11:00 UTC);
- ``mmap+msync``: PySyncObj's own ``FileJournal.add`` (writes into its mmap), then ``msync`` of
  the record's pages and of the header page, the way raftq synced its journal before that.

``--contended`` runs a busy Python thread meanwhile, as a node's event loop is under load:
every syscall that releases the GIL then waits to take it back (``sys.setswitchinterval`` as
a node sets it).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pysyncobj.journal import FileJournal

from raftq.raft.pysyncobj.journal import DurableFileJournal


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


class FdatasyncJournal:
    """The record, then the header, each ``pwrite`` + ``fdatasync`` on a plain descriptor."""

    def __init__(self, path: str) -> None:
        FileJournal(path)._destroy()  # a fresh file with PySyncObj's header
        self.fd = os.open(path, os.O_RDWR)
        self.offset = os.path.getsize(path)

    def add(self, command: bytes, idx: int, term: int) -> None:
        record = idx.to_bytes(8, "little") + term.to_bytes(8, "little") + command
        size = len(record).to_bytes(4, "little")
        data = size + record + size
        os.pwrite(self.fd, data, self.offset)
        os.fdatasync(self.fd)
        self.offset += len(data)
        os.pwrite(self.fd, self.offset.to_bytes(4, "little"), 36)
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="appends per series")
    ap.add_argument("--size", type=int, default=150, help="bytes per entry")
    ap.add_argument("--contended", action="store_true", help="a busy Python thread meanwhile")
    ap.add_argument("--dir", type=Path, default=Path("."))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sys.setswitchinterval(0.0005)  # as raftq.node.process sets it for a node
    stop = threading.Event()

    def busy() -> None:  # pure Python work that holds the GIL between switches
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=busy, daemon=True)
    if args.contended:
        spinner.start()
    lat: dict[str, list[float]] = {"raftq": [], "pwrite+fdatasync": [], "mmap+msync": []}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-journal-") as tmp:
        journals = {
            "raftq": DurableFileJournal(f"{tmp}/a.journal"),
            "pwrite+fdatasync": FdatasyncJournal(f"{tmp}/b.journal"),
            "mmap+msync": MsyncJournal(f"{tmp}/c.journal"),
        }
        command = b"x" * args.size
        for start in range(0, args.n, 50):
            for name, journal in journals.items():
                for idx in range(start + 1, min(args.n, start + 50) + 1):
                    t0 = time.perf_counter()
                    journal.add(command, idx, 1)
                    lat[name].append((time.perf_counter() - t0) * 1000)
        journals["raftq"]._destroy()
        journals["pwrite+fdatasync"].close()  # type: ignore[attr-defined]
        journals["mmap+msync"].close()  # type: ignore[attr-defined]
    stop.set()
    out: dict[str, object] = {
        name: {"p50_ms": pct(xs, 0.5), "p90_ms": pct(xs, 0.9), "p99_ms": pct(xs, 0.99)}
        for name, xs in lat.items()
    }
    out["contended"] = args.contended
    base = pct(lat["raftq"], 0.5)
    for name, xs in lat.items():
        print(
            f"{name:<17} p50 {pct(xs, 0.5):.3f} ms  p90 {pct(xs, 0.9):.3f}  "
            f"p99 {pct(xs, 0.99):.3f}  p50 / raftq's {pct(xs, 0.5) / base:.2f}x"
        )
    contended = "with" if args.contended else "without"
    print(f"{contended} a busy thread; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
