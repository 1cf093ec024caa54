"""raftq.raft.heap_trim: the memory glibc keeps after big frees goes back to the OS."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from raftq.raft.heap_trim import HeapTrimmer

# Big blocks (the journal's entries) interleaved with small ones that stay (what the load
# path allocated meanwhile): once the big ones are freed, glibc cannot give their space back
# from the top of its heap. Run in a fresh interpreter so pytest's own heap does not count.
_FRAGMENT = """
import json
from raftq.raft.heap_trim import trim_heap

def anon_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) // 1024

big, kept = [], []
for i in range(1000):
    big.append(b"x" * 100_000 + bytes([i % 256]))
    kept.append(b"y" * 1_000 + bytes([i % 256]))
loaded = anon_mb()
del big
freed = anon_mb()
released = trim_heap()
print(json.dumps({"loaded": loaded, "freed": freed, "released": released, "after": anon_mb()}))
"""


@pytest.mark.integration
def test_trim_returns_the_free_space_between_live_blocks() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FRAGMENT], check=True, capture_output=True, text=True
    ).stdout
    r = json.loads(out)
    # Without the trim the ~100 MB freed stays resident (else this test would prove nothing).
    assert r["freed"] > r["loaded"] - 30, r
    assert r["released"] is True
    assert r["after"] < r["freed"] - 60, r


def test_trimmer_is_due_after_a_change_and_periodically() -> None:
    t = HeapTrimmer(delay=2, period=5)
    seen = [t.due(m) for m in "aaaaaaaabbbcdddd"]
    # "a" (the start): due 2 observations later, then every 5th; "b" 2 after its change;
    # "c" is replaced by "d" before its delay ends, so one trim covers both.
    assert seen == [bool(int(x)) for x in "0010000100100010"]
    assert t.trims == 4
