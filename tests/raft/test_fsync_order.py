"""The ordering proof of issue 4 §1 with real syscalls: a follower under strace makes its
journal durable before it sends the AppendEntries response that acknowledges a new entry; the
leader sends a new entry to the followers first, then makes its own copy durable, before the
client hears that it was applied (``RaftqSyncObj._checkCommandsToApply``).

The journal is written on an ``O_DSYNC`` descriptor (checked in ``/proc`` while the node
runs), so a ``pwrite64`` to it is itself durable; an ``fsync``/``fdatasync``/``msync`` counts
as well.

PySyncObj's tick thread appends the received entries (our DurableFileJournal fdatasyncs them) and
then answers with a ``next_node_idx`` message on the same thread. We decode every message the
follower sends (framing: ``struct 'i'`` length + zlib(pickle), no encryption: secret=None) and
check that each success response that acknowledges a higher index than before is preceded, on
the same thread and after that thread's previous send, by an msync/fsync/fdatasync.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import signal
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from raftq.node.spawn import serve_argv, start_node
from raftq.raft.datadir import JOURNAL_FILE
from tests.integration.cluster import Cluster, http_json

pytestmark = pytest.mark.integration

_SYNCS = ("msync", "fsync", "fdatasync")
_SENDS = ("sendto", "sendmsg", "write")
_LINE = re.compile(r"^(\d+)\s+(\d\d):(\d\d):(\d\d\.\d+)\s+(\w+)\((\d+)?(.*)$")
_BYTES = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
_FD_PATH = re.compile(r"<((?:\\x[0-9a-f]{2})*)>")


@dataclass
class Call:
    tid: int
    t: float
    name: str
    fd: int | None
    rest: str
    line: str


class StracedCluster(Cluster):
    """One node runs under strace (the others as usual)."""

    traced: str = ""
    trace_file: Path = Path()
    syscalls: tuple[str, ...] = (*_SYNCS, *_SENDS, "pwrite64")

    def start(self, *ids: str) -> None:
        for nid in ids or self.ids:
            if nid != self.traced:
                super().start(nid)
                continue
            log = open(self.root / f"{nid}.log", "ab")  # noqa: SIM115
            strace = [
                "strace", "-f", "-tt", "-xx", "-y", "-s", "65536",
                "-e", "trace=" + ",".join(self.syscalls),
                "-o", str(self.trace_file),
            ]  # fmt: skip
            self.procs[nid] = start_node(
                serve_argv(self.config_path, nid, log_level="INFO", prefix=strace),
                stdout=log,
                cwd=self.root,
                new_session=True,  # strace and the node: one process group to kill
            )
            log.close()

    def journal_is_dsync(self) -> bool:
        """Whether the traced node (running) has its journal open with O_DSYNC."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"serve" not in argv or self.traced.encode() not in argv or b"strace" in argv[0]:
                    continue
                if str(self.config_path).encode() not in argv:
                    continue
                for fd in (proc / "fd").iterdir():
                    if os.readlink(fd).endswith("/" + JOURNAL_FILE):
                        info = (proc / "fdinfo" / fd.name).read_text()
                        flags = int(info.split("flags:")[1].split()[0], 8)
                        return bool(flags & os.O_DSYNC)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        raise AssertionError(f"no running node {self.traced} with a journal found")

    def stop(self) -> None:
        # Killing strace alone would leave the traced node running: kill its whole group.
        proc = self.procs.get(self.traced)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        super().stop()


def parse(trace: Path) -> list[Call]:
    calls = []
    for line in trace.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m is None:  # "<unfinished ...>" / "resumed" pieces of a syscall are not needed
            continue
        tid, hh, mm, ss, name, fd, rest = m.groups()
        t = int(hh) * 3600 + int(mm) * 60 + float(ss)
        calls.append(Call(int(tid), t, name, None if fd is None else int(fd), rest, line))
    return calls


def straced(tmp_path: Path, nid: str) -> StracedCluster:
    """A cluster (not started) whose node ``nid`` will run under strace."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed: make test installs it (.ci/system-deps)")
    c = StracedCluster.generate(tmp_path, secret=None)
    c.traced = nid
    c.trace_file = tmp_path / f"{nid}.strace"
    return c


def is_sync(call: Call) -> bool:
    """A sync syscall, or a write to the journal (whose descriptor is O_DSYNC: durable)."""
    if call.name in _SYNCS:
        return True
    m = _FD_PATH.match(call.rest)  # strace -y -xx: pwrite64(12<\x2f\x74...>, ...)
    if call.name != "pwrite64" or m is None:
        return False
    path = bytes.fromhex(m.group(1).replace("\\x", "")).decode(errors="replace")
    return path.endswith("/" + JOURNAL_FILE)


def messages(call: Call) -> list[Any]:
    """The PySyncObj messages in one send (empty if it is not PySyncObj traffic)."""
    m = _BYTES.search(call.rest)
    if m is None:
        return []
    data = bytes.fromhex(m.group(1).replace("\\x", ""))
    out = []
    while len(data) >= 4:
        (size,) = struct.unpack("i", data[:4])
        if size <= 0 or size > len(data) - 4:
            break
        try:
            out.append(pickle.loads(zlib.decompress(data[4 : 4 + size])))  # our own process
        except (zlib.error, pickle.UnpicklingError, EOFError, ValueError):
            return []
        data = data[4 + size :]
    return out


def test_follower_syncs_its_journal_before_acknowledging(tmp_path: Path) -> None:
    c = straced(tmp_path, "n3")
    try:
        c.start("n1", "n2")  # a leader among the untraced nodes, then the traced follower
        leader = c.leader(among=["n1", "n2"])
        c.start("n3")
        c.wait_ready()
        assert c.leader() == leader
        assert c.journal_is_dsync()
        time.sleep(0.5)
        t0 = time.time()
        status, body = http_json(c.url(leader, "/v1/queues/proof/jobs"), {"payload": "x"})
        assert status in (200, 201), body
        c.wait_converged()
    finally:
        c.stop()

    day = time.localtime(t0)
    start = t0 - time.mktime((*day[:3], 0, 0, 0, *day[6:]))  # seconds since local midnight
    calls = parse(c.trace_file)
    evidence: list[str] = []
    acked = checked = 0
    last_send: dict[int, float] = {}
    for i, call in enumerate(calls):
        if call.name not in _SENDS:
            continue
        for msg in messages(call):
            if not (isinstance(msg, dict) and msg.get("type") == "next_node_idx"):
                continue
            if msg["success"] and msg["next_node_idx"] > acked + 1 and acked:
                since = last_send.get(call.tid, 0.0)
                syncs = [s for s in calls[:i] if s.tid == call.tid and is_sync(s) and s.t >= since]
                assert syncs, f"ack without a journal sync before it:\n{call.line[:200]}"
                checked += 1
                if call.t >= start and not evidence:
                    evidence = [syncs[-1].line, call.line[:120] + "...", f"decoded: {msg}"]
            if msg["success"]:
                acked = max(acked, msg["next_node_idx"] - 1)
        last_send[call.tid] = call.t
    assert evidence, "no AppendEntries response for the enqueued job found in the trace"
    print(f"{checked} acknowledgements checked; first after the enqueue:", *evidence, sep="\n")


def test_leader_sends_a_new_entry_then_syncs_it_before_answering(tmp_path: Path) -> None:
    c = straced(tmp_path, "n1")
    try:
        c.start("n1", "n2")
        for _ in range(20):  # restart the other node until the traced one leads
            if c.leader(among=["n1", "n2"]) == "n1":
                break
            c.kill("n2")
            time.sleep(1.5)
            c.start("n2")
        assert c.leader(among=["n1", "n2"]) == "n1", "n1 never became the leader"
        c.start("n3")
        c.wait_ready()
        assert c.journal_is_dsync()
        time.sleep(0.5)
        t0 = time.time()
        status, body = http_json(c.url("n1", "/v1/queues/proof-of-order/jobs"), {"payload": "x"})
        assert status in (200, 201), body
    finally:
        c.stop()

    day = time.localtime(t0)
    start = t0 - time.mktime((*day[:3], 0, 0, 0, *day[6:]))  # seconds since local midnight
    calls = [call for call in parse(c.trace_file) if call.t >= start]
    marker = b"proof-of-order".hex()
    (record,) = [  # the journal record of the enqueue's entry: written once
        k for k, call in enumerate(calls) if call.name == "pwrite64" and marker in _hex(call)
    ]
    # durable when written (the O_DSYNC journal), else at the next sync on its thread
    durable = next(
        k for k in range(record, len(calls))
        if calls[k].tid == calls[record].tid and is_sync(calls[k])
    )  # fmt: skip
    sent = [
        k for k, call in enumerate(calls)
        if call.name in _SENDS and any(_carries(m, marker) for m in messages(call))
    ]  # fmt: skip
    answer = next(
        k for k, call in enumerate(calls) if call.name in _SENDS and "HTTP/1.1 201" in _text(call)
    )
    assert sent, "the entry was never sent to a follower"
    assert sent[0] < durable, "the leader made its copy durable before sending the entry"
    assert durable < answer, "the client was answered before the leader's copy was durable"
    print(calls[sent[0]].line[:100], calls[record].line[:100], calls[durable].line[:100], sep="\n")


def _hex(call: Call) -> str:
    m = _BYTES.search(call.rest)
    return "" if m is None else m.group(1).replace("\\x", "")


def _text(call: Call) -> str:
    return bytes.fromhex(_hex(call)).decode("latin-1")


def _carries(message: Any, marker: str) -> bool:
    """An AppendEntries whose entries hold bytes with hex ``marker``."""
    if not (isinstance(message, dict) and message.get("type") == "append_entries"):
        return False
    return any(marker in bytes(e[0]).hex() for e in message.get("entries") or ())
