"""A snapshot writer that hangs is killed at its deadline, and compaction goes on (finding 8 of
the safety issue "an acknowledged job is never lost"; raftq/raft/pysyncobj/snapshot_hooks.py).

A real single-node PySyncObj in this process, compacting about every second; the forked
writer of one compaction is stopped with SIGSTOP once it has started its temp file (a child
hung on a lock it inherited looks the same from the parent). PySyncObj waits for the writer
without a deadline and neither compacts nor sends a snapshot meanwhile: before the fix no
snapshot was ever written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from raftq.core import Enqueue, NewJob
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.snapshot_file import temp_path, verify_file
from tests.embed.conftest import make_config

_CONFIG = """[raft]
log_compaction_min_entries = 5
log_compaction_min_time_s = 1
snapshot_write_timeout_s = 2
"""


async def _until(predicate: Any, timeout_s: float = 30.0, step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step_s)


def _process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` (``T``: stopped), ``None`` once it is reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


async def test_a_hung_snapshot_writer_is_killed_and_the_next_snapshot_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, 1, _CONFIG)
    node = RaftNode(config, new_pysyncobj_engine(config, "n1"))
    stopped: int | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            await node.start()
            await _until(node.is_leader)
            gc.collect()
        # A state that takes the writer a while, so that it can be caught mid-write.
        payload = b"x" * 1000
        for _ in range(60):
            jobs = tuple(NewJob(payload=payload) for _ in range(500))
            await node.submit(Enqueue(now_ms=node.now_ms(), queue="q", jobs=jobs))
        hooks = node.engine.snapshots
        assert hooks is not None
        await _until(lambda: hooks.writes >= 1)  # compaction works

        # Record the writers PySyncObj starts from now on (its serializer hook, tick thread).
        serializer = node.engine.syncobj._SyncObj__serializer  # type: ignore[union-attr]
        real_serialize = serializer._Serializer__serializer
        started: list[int] = []

        def serialize(tmp_file: str, raft_data: Any) -> None:
            real_serialize(tmp_file, raft_data)
            started.append(hooks._pid)

        serializer._Serializer__serializer = serialize
        for _ in range(5):  # a writer that finishes before the test stops it: take the next
            seen = len(started)
            await _until(lambda seen=seen: len(started) > seen)
            pid = started[-1]
            partial = Path(temp_path(hooks.dump_path, pid))
            await _until(
                lambda p=partial, pid=pid: p.exists() or _process_state(pid) in (None, "Z"),
                step_s=0.0005,
            )
            os.kill(pid, signal.SIGSTOP)  # delivered once a syscall in progress returns
            await _until(lambda pid=pid: _process_state(pid) in ("T", "Z", None), step_s=0.001)
            if partial.exists() and _process_state(pid) == "T":
                stopped = pid
                break
        assert stopped is not None, "no writer caught mid-write"
        hung_at = time.monotonic()
        writes = hooks.writes
        dump_before = verify_file(hooks.dump_path).header.last[1]
        caplog.set_level(logging.INFO, logger="raftq.raft.pysyncobj.snapshot_hooks")

        await _until(lambda: hooks.writes > writes)  # a later snapshot was written

        # The hung writer was killed at its deadline, reaped, and its partial file removed.
        assert hooks.writers_killed == 1
        assert node.stats.snapshot().snapshot_writers_killed == 1
        assert _process_state(stopped) is None
        assert not partial.exists()
        killed = [r for r in caplog.records if "past its deadline" in r.getMessage()]
        assert len(killed) == 1 and killed[0].levelno == logging.ERROR
        assert f"pid {stopped}" in killed[0].getMessage()
        assert time.monotonic() - hung_at >= 1.5  # not before the deadline (2 s from its fork)
        # The next snapshot is a normal one: newer, and the journal truncated to it.
        header = verify_file(hooks.dump_path).header
        assert header.last[1] > dump_before
        journal = node.engine.syncobj._SyncObj__raftLog  # type: ignore[union-attr]
        await _until(lambda: journal[0][1] >= header.prev[1])
        with node.read() as m:
            assert len(m.jobs) == 30_000
    finally:
        await node.stop()
        if stopped is not None and _process_state(stopped) is not None:  # the old code
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(stopped, signal.SIGKILL)
                os.waitpid(stopped, 0)


def test_the_writer_hashes_without_openssl_and_writes_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forked writer must take no lock another thread of the node may have held at the
    fork: OpenSSL's SHA-256 (``hashlib.sha256`` here) takes its own. The child uses CPython's
    built-in SHA-256, which gives the same digest: files written before still load."""
    import hashlib  # noqa: PLC0415

    from pysyncobj.config import SERIALIZER_STATE  # noqa: PLC0415

    from raftq.core import encode_entry, write_snapshot  # noqa: PLC0415
    from raftq.raft.pysyncobj.election_hold import ElectionHold  # noqa: PLC0415
    from raftq.raft.pysyncobj.replica import Replica  # noqa: PLC0415
    from raftq.raft.pysyncobj.snapshot_hooks import SnapshotHooks  # noqa: PLC0415
    from raftq.raft.snapshot_file import RaftHeader, write_file  # noqa: PLC0415

    assert hashlib.sha256.__name__ == "openssl_sha256"  # what the child must not call
    replica = Replica(lambda: None, lambda e: None)
    replica.machine.apply_entry(
        encode_entry([Enqueue(now_ms=5, queue="q", jobs=(NewJob(payload=b"x"),))])
    )
    dump = tmp_path / "raft.dump"
    hooks = SnapshotHooks(str(dump), replica, ElectionHold(stall_s=0.2), lambda e: None)

    def openssl(*args: object, **kwargs: object) -> Any:
        raise AssertionError("OpenSSL's SHA-256 called in the forked writer")

    last, prev = (b"\x01l", 3, 1), (b"\x01p", 2, 1)
    with monkeypatch.context() as m:
        m.setattr(hashlib, "sha256", openssl)
        hooks.serialize(str(tmp_path / "raft.dump.tmp"), (last, prev, ["127.0.0.1:9"]))
        deadline = time.monotonic() + 30
        while (state := hooks.check()) == SERIALIZER_STATE.SERIALIZING:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert state == SERIALIZER_STATE.SUCCESS
    # Byte for byte what OpenSSL's SHA-256 gives (the format is unchanged).
    header = RaftHeader(last=last, prev=prev, cluster=("127.0.0.1:9",))
    write_file(str(tmp_path / "openssl.dump"), header, lambda w: write_snapshot(replica.machine, w))
    assert dump.read_bytes() == (tmp_path / "openssl.dump").read_bytes()
    assert verify_file(str(dump)).header == header
