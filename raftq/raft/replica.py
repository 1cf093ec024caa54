"""The replicated object PySyncObj drives: one method taking bytes, our own snapshot format.

Threads: ``apply`` and ``_deserialize`` run on PySyncObj's tick thread; the asyncio side reads
the machine under ``lock``. Snapshots: PySyncObj pickles what ``_serialize`` returns inside a
forked child (``useFork``); we return a ``_Snapshot`` whose pickled form is our versioned msgpack
snapshot (computed in the child, so the tick thread never stalls on it), not pickled objects.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

from pysyncobj import SyncObjConsumer, replicated

from raftq.core import Machine, Result, snapshot_bytes

__all__ = ["Replica"]

logger = logging.getLogger(__name__)


def _restore_machine(data: bytes) -> Machine:
    """Unpickling target of ``_Snapshot`` (module level so pickle can name it).

    The cyclic GC is paused while a million jobs are created: its full passes took 60% of a
    restore (docs/benchmarks.md), and jobs hold no reference cycles for it to find.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return Machine.restore(data)
    finally:
        if enabled:
            gc.enable()


class _Snapshot:
    """Pickles as ``_restore_machine(<msgpack snapshot bytes>)``."""

    __slots__ = ("machine",)

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def __reduce__(self) -> tuple[Callable[[bytes], Machine], tuple[bytes]]:
        return _restore_machine, (snapshot_bytes(self.machine),)


class Replica(SyncObjConsumer):  # type: ignore[misc]  # pysyncobj ships no type hints
    """Holds the machine. ``on_applied`` is called (tick thread) after every applied entry
    and after a snapshot is installed; ``on_fatal`` when the machine raises (a corrupt state:
    the node must stop rather than diverge)."""

    def __init__(
        self,
        on_applied: Callable[[], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.lock = threading.Lock()
        self.machine = Machine()
        self._on_applied = on_applied
        self._on_fatal = on_fatal
        super().__init__()  # records the attributes above as not replicated

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, raw: bytes) -> list[Result] | None:
        try:
            with self.lock:
                results = self.machine.apply_entry(raw)
        except Exception as e:  # only a corrupt state raises (apply is total): fail-stop
            logger.critical("state machine failed after entry %d: %r", self.machine.applied, e)
            self._on_fatal(e)
            raise
        self._on_applied()
        return results

    def _serialize(self) -> dict[str, Any]:
        return {"snapshot": _Snapshot(self.machine)}

    def _deserialize(self, data: dict[str, Any]) -> None:
        machine = data.get("snapshot")
        if not isinstance(machine, Machine):
            raise TypeError(f"unexpected snapshot content: {type(machine).__name__}")
        with self.lock:
            self.machine = machine
        logger.info("installed a snapshot: %d jobs, clock %d", len(machine.jobs), machine.clock_ms)
        self._on_applied()
