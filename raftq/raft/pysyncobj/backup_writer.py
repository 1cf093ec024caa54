"""A backup as of now (``POST /v1/cluster/backup``): the compaction's snapshot writer, apart
from the compactions.

On the tick thread, between two applied entries, the snapshot hooks fork a child that writes
the machine to a temp file under the data dir (``SnapshotHooks.write_copy``, with the header a
compaction would write: the last two applied entries and the cluster); the node's own dump,
journal and PySyncObj's serializer state are not touched. The loop reaps the child (polling:
the loop must not block; killed past ``raft.snapshot_write_timeout_s``), opens and verifies
the file, and unlinks it before handing it over, so nothing is left in the data dir even if
the caller dies; a copy a crash left behind matches the temp-file pattern the next start
removes (``remove_temp_files``).

Relies on PySyncObj 0.3.17 private behaviour: ``_SyncObj__getEntries``
(``tests/raft/test_pysyncobj_private.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from raftq.errors import ClusterError, NoLeader
from raftq.raft.pysyncobj.snapshot_hooks import SnapshotHooks
from raftq.raft.snapshot_file import SnapshotInfo, open_verified, temp_path

__all__ = ["write_backup"]

_BACKUPS = itertools.count(1)


async def write_backup(
    so: Any,
    snapshots: SnapshotHooks,
    on_tick: Callable[[Callable[[], None]], None],
    timeout_s: float,
) -> tuple[SnapshotInfo, BinaryIO]:
    """The state as of ``so``'s applied index when the tick thread runs the fork, as a
    verified snapshot file, opened and already unlinked (the caller closes it). ``on_tick``
    queues a call for the tick thread. ``NoLeader`` before anything was applied;
    ``ClusterError`` when the writer fails or runs past ``timeout_s``."""
    path = f"{snapshots.dump_path}.raftq-backup-{os.getpid()}-{next(_BACKUPS)}.tmp"
    loop = asyncio.get_running_loop()
    forked: asyncio.Future[int] = loop.create_future()

    def settle(outcome: int | Exception) -> None:  # loop thread
        if forked.done():  # pragma: no cover - settled once
            return
        if isinstance(outcome, Exception):
            forked.set_exception(outcome)
        else:
            forked.set_result(outcome)

    def fork() -> None:  # tick thread: between two applied entries
        outcome: int | Exception
        try:
            applied = so.raftLastApplied
            entries = so._SyncObj__getEntries(applied - 1, 2)
            if len(entries) < 2:
                raise NoLeader(f"nothing applied yet (applied index {applied}); retry")
            cluster = so.otherNodes | {so.selfNode}  # what a compaction writes
            _, outcome = snapshots.write_copy(path, (entries[1], entries[0], cluster))
        except Exception as e:  # reported to the caller
            outcome = e
        loop.call_soon_threadsafe(settle, outcome)

    on_tick(fork)
    pid = await forked
    try:
        await _reap(pid, timeout_s)
        info, f = await asyncio.to_thread(open_verified, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path(path, pid))  # a writer that failed or was killed
    return info, f


async def _reap(pid: int, timeout_s: float) -> None:
    """Wait for the backup writer ``pid``; SIGKILL it past ``timeout_s``. ``ClusterError``
    unless it exited 0."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        rpid, status = os.waitpid(pid, os.WNOHANG)
        if rpid:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(os.waitpid, pid, 0)
            raise ClusterError(
                f"backup: the writer ran past raft.snapshot_write_timeout_s ({timeout_s:g} s) "
                "and was killed; raise it for a state this large"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise ClusterError(f"backup: the writer failed (exit {code}); see the node's stderr")
