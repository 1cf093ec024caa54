"""The replicated object PySyncObj drives: one method taking bytes.

Threads: ``apply`` and ``install`` run on PySyncObj's tick thread; the asyncio side reads the
machine under ``lock``. Snapshots are not PySyncObj's business here: its serializer hooks
write and load our own snapshot file (``raftq.raft.pysyncobj.snapshot_hooks``), which calls
``install``; PySyncObj never calls ``_serialize``/``_deserialize`` when custom hooks are set.

Relies on PySyncObj 0.3.17 private behaviour: ``SyncObjConsumer``'s ``_syncObj`` attribute
(set by PySyncObj's constructor) and that a ``@replicated`` method's exception is retried on the
next tick (``tests/raft/test_fail_stop.py``; ``tests/raft/test_pysyncobj_private.py`` checks
``_syncObj``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pysyncobj import SyncObjConsumer, replicated
from raftq._version import __version__
from raftq.core import Machine, Result
from raftq.core.codec import LOG_VERSION, entry_version
from raftq.errors import ClusterError, NewerVersionError

if TYPE_CHECKING:
    from raftq.raft.pysyncobj.election_hold import ElectionHold

__all__ = ["Replica"]

logger = logging.getLogger(__name__)


class Replica(SyncObjConsumer):  # type: ignore[misc]  # pysyncobj ships no type hints
    """Holds the machine. ``on_applied`` is called (tick thread) after every applied entry
    and after a snapshot is installed; ``on_fatal`` when the machine raises (a corrupt state:
    the node must stop rather than diverge)."""

    def __init__(
        self,
        on_applied: Callable[[], None],
        on_fatal: Callable[[BaseException], None],
        hold: ElectionHold | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.machine = Machine()
        self._on_applied = on_applied
        self._on_fatal = on_fatal
        self._hold = hold
        # The error that broke the machine: once set, nothing is applied any more. PySyncObj
        # retries an entry whose apply raised, on the half-changed machine; RaftNode's
        # on_fatal ends the process, and this keeps a callback that returns from applying
        # anything twice meanwhile.
        self._broken: BaseException | None = None
        # Called (tick thread) with the raft index and the machine's digest (hex) after each
        # entry applied here (raftq.raft.pysyncobj.digests).
        self.on_entry: Callable[[int, str], None] | None = None
        # The raft index of the last entry applied to the machine, set under ``lock``:
        # PySyncObj counts an entry applied only after this method returned, so a reader
        # holding the lock may see the machine one entry ahead of ``raftLastApplied``.
        self.applied_index = 0
        super().__init__()  # records the attributes above as not replicated

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, raw: bytes) -> list[Result] | None:
        if self._broken is not None:
            raise RuntimeError("the state machine failed earlier: not applying") from self._broken
        version = entry_version(raw)
        if version is not None and version > LOG_VERSION:
            # Upgraded nodes apply it; answering it with a refusal here would make this
            # replica differ from theirs. Stop with the machine untouched instead.
            error = NewerVersionError(
                f"the log entry after the {self.machine.applied} applied needs log version "
                f"{version}, this node "
                f"runs raftq {__version__} (log version {LOG_VERSION}): upgrade raftq on this "
                "node and start it again"
            )
            logger.critical("%s", error)
            self._broken = error
            self._on_fatal(error)
            raise error
        try:
            with self.lock:
                results = self.machine.apply_entry(raw)
                digest = self.machine.digest
                # PySyncObj applies the entry at raftLastApplied + 1, then counts it (no
                # SyncObj: a replica driven by a test).
                so = self._syncObj
                self.applied_index = 0 if so is None else so.raftLastApplied + 1
        except Exception as e:  # only a corrupt state raises (apply is total): fail-stop
            logger.critical("state machine failed after entry %d: %r", self.machine.applied, e)
            self._broken = e
            self._on_fatal(e)
            raise
        if self.on_entry is not None:
            self.on_entry(self.applied_index, digest.hex())
        if self._hold is not None:
            self._hold.on_apply(self._syncObj)
        self._on_applied()
        return results

    def _serialize(self) -> Any:
        raise AssertionError("snapshots are written by raftq.raft.pysyncobj.snapshot_hooks")

    def _deserialize(self, data: Any) -> None:
        raise AssertionError("snapshots are loaded by raftq.raft.pysyncobj.snapshot_hooks")

    def install(self, machine: Machine) -> None:
        """Replace the machine with one loaded from a snapshot (tick thread).

        Never with an older one: a machine that applied fewer entries than this one would
        undo committed commands (the snapshot hooks refuse an older snapshot before it gets
        here, ``RaftqSyncObj.raftq_refuses_snapshot``). If one arrives anyway the node stops
        (``on_fatal``) instead of serving a rolled-back state."""
        if machine.applied < self.machine.applied:
            error = ClusterError(
                f"refusing to replace the state machine (entry {self.machine.applied}) with an "
                f"older snapshot's (entry {machine.applied}): restart the node; if it stops "
                "again, wipe its data dir so that it catches up from the leader"
            )
            logger.critical("%s", error)
            self._on_fatal(error)
            raise error
        with self.lock:
            self.machine = machine
        logger.info("installed a snapshot: %d jobs, clock %d", len(machine.jobs), machine.clock_ms)
        self._on_applied()
