"""Progress lines for ``raftq bench`` on stderr: a bar redrawn in place on a terminal, one
line every few seconds otherwise (logs stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, label: str, total: int, out: TextIO | None = None) -> None:
        self.label = label
        self.total = max(1, total)
        self.done = 0
        self._out = out if out is not None else sys.stderr
        self._tty = self._out.isatty()
        self._t0 = time.monotonic()
        self._last = 0.0
        self._period_s = 0.2 if self._tty else 5.0

    def add(self, k: int = 1) -> None:
        self.done += k
        now = time.monotonic()
        if now - self._last >= self._period_s:
            self._last = now
            self._draw(now)

    def finish(self, note: str = "") -> None:
        now = time.monotonic()
        self._draw(now, final=True, note=note)

    def _draw(self, now: float, *, final: bool = False, note: str = "") -> None:
        elapsed = max(1e-9, now - self._t0)
        frac = min(1.0, self.done / self.total)
        rate = self.done / elapsed
        text = f"{self.label:<10} {self.done:>7}/{self.total} {rate:>8.0f}/s {elapsed:6.1f} s"
        if note:
            text += f"  {note}"
        if self._tty:
            width = 24
            filled = int(frac * width)
            bar = "#" * filled + "." * (width - filled)
            self._out.write(f"\r[{bar}] {text}" + ("\n" if final else ""))
        else:
            self._out.write(f"[{frac * 100:5.1f}%] {text}\n")
        self._out.flush()
