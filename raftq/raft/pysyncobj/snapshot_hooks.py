"""Our snapshot file inside PySyncObj: its ``serializer``/``deserializer``/``serializeChecker``
hooks, and the election hold that keeps a node that was busy (loading a snapshot, replaying
its log) from starting a needless election.

How PySyncObj 0.3.17 uses the hooks (read in serializer.py and syncobj.py; pinned, see
``raftq.raft.pysyncobj.journal.VERIFIED_VERSIONS``; tests/raft/test_snapshot_hooks.py fails if
this changes):

- Compaction (tick thread, ``__tryLogCompaction``): with a custom ``serializer`` PySyncObj does
  not fork and passes no state; it calls ``serializer("<dump>.tmp", (last, prev, cluster))``,
  then renames ``<dump>.tmp`` over the dump, and afterwards polls ``serializeChecker()`` every
  tick until it answers SUCCESS (then truncates its journal up to ``prev``) or FAILED.
  ``SnapshotHooks.serialize`` forks: the child streams the machine into our file format under
  its own temp name, fsyncs, renames it over the dump, fsyncs the directory and exits; the
  parent returns at once (the tick thread does not stall). It removes ``<dump>.tmp`` first so
  that PySyncObj's own rename finds nothing to move (it swallows that error) and can never
  put a stale file over the dump. The journal is truncated only after the child reported
  success, i.e. after the new dump is durable. A writer still running after
  ``write_timeout_s`` (``raft.snapshot_write_timeout_s``) is killed and reported FAILED
  (Bug fixed, finding 8 of the safety issue: PySyncObj waits for the checker without a
  deadline and neither compacts nor sends a snapshot meanwhile, so one hung child stopped
  compaction for good); PySyncObj then starts the next snapshot when one is due.
- Loading (tick thread, ``__loadDumpFile``), at start and when a snapshot from the leader has
  been received (PySyncObj writes ``<dump>.1.tmp`` and renames it over the dump, no fsync):
  ``deserializer(path)`` must return ``(last, prev, cluster)``; PySyncObj then does NOT call
  the consumer's ``_deserialize``, so ``deserialize`` installs the machine itself. It verifies
  the checksum and fsyncs the file and its directory before PySyncObj clears the journal. A
  damaged file is fatal (``on_fatal``: the process stops): PySyncObj would log the error and
  carry on with an empty state, serving wrong data.
- Sending a snapshot to a follower (leader, tick thread, ``__sendAppendEntries``): PySyncObj
  sends the WHOLE file in one loop, one 64 KiB chunk per message (pickled, compressed,
  encrypted), within one tick: at 1M jobs (~130 MB) the leader's tick thread stalls for
  seconds and the other followers start elections. ``SnapshotHooks.install`` wraps the
  serializer's ``getTransmissionData`` so that it answers "nothing now" once the chunks sent
  in the current tick have taken ``send_budget_s``; the loop then stops and the transfer
  resumes at the next round from where it was (PySyncObj keeps the open file per follower).
  After each compaction the transfers in progress restart with the new file, as PySyncObj's
  own fork path does.
- Receiving a snapshot (follower): PySyncObj appends each chunk to ``<dump>.1.tmp`` and, on the
  last one, renames it over the dump. It keeps the half-received file across a reconnection,
  and the leader resumes from where it was, so chunks still in the dropped connection's buffer
  are missing from the result (measured: a 137 MB file 1.4 MB short, at 1M jobs). The wrapped
  ``setTransmissionData`` writes the last chunk itself, verifies the file, and only then renames
  it; a damaged transfer is dropped (the leader notices the follower did not advance and sends
  the snapshot again) instead of replacing a good dump. A snapshot that ends at or below this
  node's commit index is dropped there too, before it replaces the dump or the machine
  (``RaftqSyncObj.raftq_refuses_snapshot``, which also answers the leader): a node whose own
  compaction went past it would otherwise roll back and forget acknowledged entries.
- Members added at runtime: PySyncObj's ``cluster`` is only raft addresses; a member's id and
  API address travel in its membership entry, which a node that catches up by snapshot never
  sees (it then could not name or reach that member, e.g. as the leader). So the header also
  carries them (``RaftHeader.directory``, from ``directory()``), once the cluster enabled log
  version 2 (``DIRECTORY_VERSION``: before that a node of the previous release, which refuses
  such a header, may be sent the file); a loaded one is kept in ``learnt`` for the engine.

Relies on PySyncObj 0.3.17 private behaviour:
- ``_SyncObj__serializer`` and its ``_Serializer__incomingTransmissionFile``,
  ``_Serializer__transmissions``, ``getTransmissionData``/``setTransmissionData`` (wrapped);
  ``_SyncObj__transport`` and its ``_onNodeDisconnectedCallback``; when PySyncObj calls the
  ``serializer``/``deserializer``/``serializeChecker`` hooks: ``tests/raft/test_snapshot_hooks.py``
  (reads and writes them on a real SyncObj), ``tests/raft/test_snapshot_writer_deadline.py``
  and ``tests/raft/test_pysyncobj_private.py`` (every name exists);
- the consumer's ``_syncObj`` (set by PySyncObj's constructor): same tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.monotonic import monotonic
from raftq.core import Machine, write_snapshot
from raftq.errors import CodecError, DataError
from raftq.raft.pysyncobj.election_hold import ElectionHold
from raftq.raft.pysyncobj.journal import check_version
from raftq.raft.snapshot_file import (
    Entry,
    RaftHeader,
    SnapshotInfo,
    builtin_sha256,
    fsync_dir,
    open_body,
    open_verified,
    temp_path,
    verify_file,
    write_file,
)

if TYPE_CHECKING:
    from raftq.raft.pysyncobj.replica import Replica

__all__ = [
    "DEFAULT_WRITE_TIMEOUT_S",
    "DIRECTORY_VERSION",
    "SnapshotHooks",
    "load_machine",
    "member_directory",
    "read_machine",
]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# How long a snapshot writer may run before it is killed (config raft.snapshot_write_timeout_s):
# measured 13 s at 1M jobs (docs/benchmark-log.md), so 600 s means a writer that hangs.
DEFAULT_WRITE_TIMEOUT_S = 600


def load_machine(info: SnapshotInfo, f: BinaryIO) -> Machine:
    """The machine inside the snapshot file ``f`` that ``open_verified`` checked (``DataError``
    if it does not decode). The caller closes ``f``.

    The cyclic GC is paused while a million jobs are created: its full passes took 60% of a
    restore (docs/benchmark-log.md), and jobs hold no reference cycles for it to find.
    """
    body = open_body(info, f)
    enabled = gc.isenabled()
    gc.disable()
    try:
        return Machine.restore(body)
    except CodecError as e:
        raise DataError(info.path, str(e), "snapshot") from e
    finally:
        if enabled:
            gc.enable()


def read_machine(path: str) -> Machine:
    """The machine in the snapshot file at ``path``, verified (``DataError`` if damaged)."""
    info, f = open_verified(path)
    with f:
        return load_machine(info, f)


def _entry(value: Any) -> Entry:
    command, idx, term = value
    return (bytes(command), int(idx), int(term))


def _find_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up in the parent: ``dlopen`` takes the dynamic loader's lock,
    which another thread may hold at the fork."""
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def _die_with_parent(parent: int, prctl: Callable[..., int] | None) -> None:
    """Linux: the child gets SIGKILL if the thread that forked it dies, so a node killed with
    -9 leaves no orphan writing into its data dir."""
    if prctl is not None:
        with contextlib.suppress(Exception):
            prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _write_in_child(
    path: str,
    header: RaftHeader,
    machine: Machine,
    parent: int,
    prctl: Callable[..., int] | None,
) -> NoReturn:
    """The forked child: write, exit 0 on success. Nothing here may take a lock another
    thread of the parent could have held at the fork (the child would wait forever): no
    logging, no ``dlopen``, and SHA-256 from CPython's own code, not OpenSSL's
    (``builtin_sha256``). A failure is one line on stderr. The parent kills a writer that
    runs past its deadline anyway (``SnapshotHooks.check``)."""
    code = 1
    try:
        _die_with_parent(parent, prctl)
        # Collections would only copy pages of the parent's heap (copy-on-write) for nothing:
        # this process lives for one write and allocates little.
        gc.disable()
        write_file(
            path,
            header,
            lambda w: write_snapshot(machine, w, builtin_sha256),
            builtin_sha256,
        )
        code = 0
    except BaseException as e:  # the exit status is the report
        with contextlib.suppress(Exception):
            os.write(2, f"raftq: snapshot writer failed: {e!r}\n".encode())
    finally:
        os._exit(code)


def _close_transfer(transfer: dict[str, Any] | None) -> None:
    """Close the file of a snapshot transfer PySyncObj dropped or is about to drop (it
    forgets finished and cancelled transfers without closing them, leaving the file to the
    garbage collector)."""
    if transfer is not None and "file" in transfer:
        with contextlib.suppress(Exception):
            transfer["file"].close()


# The enabled log version from which every node reads a raft header with a member directory:
# log version 2 and that header came with the same release.
DIRECTORY_VERSION = 2


def member_directory(
    cluster: Any, enabled_version: int, known: Mapping[str, tuple[str, str]]
) -> tuple[tuple[str, str, str], ...]:
    """``(raft, id, api)`` of the voters in ``cluster`` (PySyncObj's nodes) whose id is known,
    from their membership entry (attributes of the node object) or from ``known``; empty while
    the cluster's enabled log version is below ``DIRECTORY_VERSION`` (module docstring)."""
    if enabled_version < DIRECTORY_VERSION:
        return ()
    entries = []
    for node in cluster:
        raft = str(getattr(node, "id", node))
        node_id, api = getattr(node, "raftq_id", None), getattr(node, "raftq_api", None)
        if isinstance(node_id, str) and isinstance(api, str):
            entries.append((raft, node_id, api))
        elif raft in known:
            entries.append((raft, *known[raft]))
    return tuple(sorted(entries))


class SnapshotHooks:
    """The three SyncObjConf hooks for one node (see the module docstring)."""

    def __init__(
        self,
        dump_path: str,
        replica: Replica,
        hold: ElectionHold,
        on_fatal: Callable[[BaseException], None],
        *,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        on_writer_killed: Callable[[], None] | None = None,
        directory: Callable[[], Mapping[str, tuple[str, str]]] | None = None,
    ) -> None:
        check_version()  # the same pin as the journal seam
        self.dump_path = dump_path
        self._replica = replica
        self._hold = hold
        self._on_fatal = on_fatal
        self._write_timeout_ns = int(write_timeout_s * 1e9)
        self._on_writer_killed = on_writer_killed
        self._directory = directory
        # {raft: (id, api)} of the last snapshot loaded (tick thread writes, the engine reads).
        self.learnt: dict[str, tuple[str, str]] = {}
        self._prctl = _find_prctl()
        self._pid = 0
        self._killed = False  # the writer _pid ran past its deadline and was sent SIGKILL
        self._failed = False  # serialize could not start a writer; check() reports it once
        self._started_ns = 0
        self.last_write_ms: int | None = None  # duration of the last successful compaction
        self.writes = 0
        self.writers_killed = 0

    def install(self, syncobj: Any, send_budget_s: float) -> None:
        """Throttle snapshot transfers of this constructed SyncObj (module docstring)."""
        serializer = syncobj._SyncObj__serializer
        original = serializer.getTransmissionData
        self._serializer = serializer
        budget = {"tick": -1, "started": 0.0}

        def get_transmission_data(transmission_id: Any) -> Any:
            tick = self._hold.ticks
            now = monotonic()
            if budget["tick"] != tick:
                budget["tick"], budget["started"] = tick, now
            elif now - budget["started"] > send_budget_s:
                return None  # PySyncObj: nothing to send now; it asks again next round
            transfers = self._transfers()
            before = transfers.get(transmission_id)
            data = original(transmission_id)
            if transfers.get(transmission_id) is not before:  # finished or failed
                _close_transfer(before)
            return data

        serializer.getTransmissionData = get_transmission_data
        serializer.cancelTransmisstion = self._cancel_transfer  # PySyncObj's leaves it open
        receive = serializer.setTransmissionData
        incoming = self.dump_path + ".1.tmp"  # PySyncObj's name for a snapshot being received

        hold_s = 2 * float(syncobj._getConf().raftMaxTimeout)
        # RaftqSyncObj's check that a received snapshot is not older than this node's commit
        # index (raftq.raft.pysyncobj.commit_rule); absent on a plain SyncObj.
        refuses: Callable[[int], bool] | None = getattr(syncobj, "raftq_refuses_snapshot", None)

        def set_transmission_data(data: Any) -> bool:
            if data is not None:
                self._hold.receiving(0.0 if data[2] else hold_s)
            if data is None or not data[2] or data[1]:  # not the last chunk (or the only one)
                return bool(receive(data))
            f = serializer._Serializer__incomingTransmissionFile
            if f is None:
                return bool(receive(data))
            serializer._Serializer__incomingTransmissionFile = None
            try:
                f.write(data[0])
            finally:
                f.close()
            try:
                info = verify_file(incoming)
            except DataError as e:
                logger.warning("snapshot from the leader dropped, it will be sent again: %s", e)
                with contextlib.suppress(OSError):
                    os.unlink(incoming)
                return False
            if refuses is not None and refuses(info.header.last[1]):
                # Older than what this node committed: neither the dump nor the machine may
                # go back to it (RaftqSyncObj answers the leader with its own position).
                with contextlib.suppress(OSError):
                    os.unlink(incoming)
                return False
            os.replace(incoming, self.dump_path)  # deserialize() fsyncs it before it is used
            return True

        serializer.setTransmissionData = set_transmission_data

        # PySyncObj cancels a transfer only if it sees the follower disconnected at the start
        # of a round; after a disconnection and a reconnection within one tick it resumes
        # mid-file and the chunks lost with the old connection are missing. Cancel on every
        # disconnection: the next round starts the transfer over.
        transport = syncobj._SyncObj__transport
        on_disconnected = transport._onNodeDisconnectedCallback

        def disconnected(node: Any) -> None:
            self._cancel_transfer(node)
            if on_disconnected is not None:
                on_disconnected(node)

        transport.setOnNodeDisconnectedCallback(disconnected)

    def _transfers(self) -> dict[Any, Any]:
        """PySyncObj's transfers in progress, by follower (empty before ``install``)."""
        serializer = getattr(self, "_serializer", None)
        transmissions = getattr(serializer, "_Serializer__transmissions", None)
        return transmissions if isinstance(transmissions, dict) else {}

    def _cancel_transfer(self, node: Any) -> None:
        _close_transfer(self._transfers().pop(node, None))

    def close_transfers(self) -> None:
        """Close the files of the transfers in progress and forget them. After a compaction
        (a new snapshot replaced the file) they start over with it, what PySyncObj's own fork
        path does, so a follower never gets a file older than the log position the leader
        then sends entries from; at stop, PySyncObj itself leaves them open."""
        transfers = self._transfers()
        for t in transfers.values():
            _close_transfer(t)
        transfers.clear()

    def conf(self) -> dict[str, Any]:
        return {
            "serializer": self.serialize,
            "deserializer": self.deserialize,
            "serializeChecker": self.check,
        }

    # -- writing (tick thread) ---------------------------------------------------------------

    def serialize(self, tmp_file: str, raft_data: tuple[Any, Any, Any]) -> None:
        if self._pid or self._failed:
            return  # PySyncObj does not call us while we report SERIALIZING
        try:
            self._start(tmp_file, raft_data)
        except Exception:
            # PySyncObj now waits for the checker to answer SUCCESS or FAILED before it ever
            # compacts again: make sure it hears FAILED.
            logger.exception("snapshot: could not start writing")
            self._failed = True

    def _start(self, tmp_file: str, raft_data: tuple[Any, Any, Any]) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_file)  # PySyncObj renames it after we return: it must not exist
        self._started_ns = time.monotonic_ns()
        header, pid = self._fork_writer(self.dump_path, raft_data)
        self._pid = pid
        logger.info("snapshot: writing entries up to %d (pid %d)", header.last[1], pid)

    def _fork_writer(self, path: str, raft_data: tuple[Any, Any, Any]) -> tuple[RaftHeader, int]:
        """Tick thread: fork a child that writes the machine, as of now, to ``path`` (what
        ``_write_in_child`` does) under the header of ``raft_data`` ``(last, prev, cluster)``,
        the last two applied entries. The tick thread is the only one that applies entries,
        so the machine is not between two entries here, and the child's copy of it is the
        state as of ``last``."""
        last, prev, cluster = raft_data
        machine = self._replica.machine
        header = RaftHeader(
            last=_entry(last),
            prev=_entry(prev),
            cluster=tuple(sorted(str(getattr(n, "id", n)) for n in cluster)),
            directory=member_directory(
                cluster,
                machine.enabled_version,
                self._directory() if self._directory is not None else {},
            ),
        )
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _write_in_child(path, header, machine, parent, self._prctl)
        return header, pid

    def write_copy(self, path: str, raft_data: tuple[Any, Any, Any]) -> tuple[RaftHeader, int]:
        """Tick thread: start writing a snapshot file of the state as of now to ``path`` (a
        backup), apart from the compactions: the dump, the journal and PySyncObj's serializer
        state are not touched. Returns the header and the writer's pid; the caller reaps it
        (``PySyncObjEngine.backup``)."""
        header, pid = self._fork_writer(path, raft_data)
        logger.info("backup: writing entries up to %d (pid %d)", header.last[1], pid)
        return header, pid

    def check(self) -> int:
        if self._failed:
            self._failed = False
            return int(SERIALIZER_STATE.FAILED)
        if not self._pid:
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        try:
            rpid, status = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:
            self._pid, self._killed = 0, False
            logger.warning("snapshot: writer process lost")
            return int(SERIALIZER_STATE.FAILED)
        elapsed_ns = time.monotonic_ns() - self._started_ns
        if rpid == 0:
            if not self._killed and elapsed_ns > self._write_timeout_ns:
                self._kill_writer(elapsed_ns)
            return int(SERIALIZER_STATE.SERIALIZING)  # until it is reaped
        pid, self._pid = self._pid, 0
        killed, self._killed = self._killed, False
        elapsed_ms = elapsed_ns // 1_000_000
        code = os.waitstatus_to_exitcode(status)
        if killed and code != 0:  # else it finished its write just before the signal
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path(self.dump_path, pid))  # its partial file
            return int(SERIALIZER_STATE.FAILED)  # PySyncObj starts a new one when due
        if code != 0:
            logger.warning("snapshot: writer failed (exit %d) after %d ms", code, elapsed_ms)
            return int(SERIALIZER_STATE.FAILED)
        self.last_write_ms = elapsed_ms
        self.writes += 1
        self.close_transfers()
        logger.info("snapshot: written in %d ms", elapsed_ms)
        return int(SERIALIZER_STATE.SUCCESS)

    def _kill_writer(self, elapsed_ns: int) -> None:
        """The writer ran past its deadline: a child that hangs (e.g. on a lock inherited
        from the parent) would otherwise keep PySyncObj from ever compacting, or sending a
        snapshot, again. SIGKILL it; ``check`` reaps it at the next tick (a process killed in
        an uninterruptible write is reaped when that returns: no new writer starts before),
        removes its temp file and reports FAILED."""
        self._killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        self.writers_killed += 1
        logger.error(
            "snapshot: writer (pid %d) still running after %d s, past its deadline of %d s "
            "(raft.snapshot_write_timeout_s): killed; the next snapshot starts over",
            self._pid,
            elapsed_ns // 1_000_000_000,
            self._write_timeout_ns // 1_000_000_000,
        )
        if self._on_writer_killed is not None:
            self._on_writer_killed()

    # -- loading (tick thread) ---------------------------------------------------------------

    def deserialize(self, path: str) -> tuple[Entry, Entry, list[str]]:
        started = time.monotonic_ns()
        try:
            info, f = open_verified(path)
            with f:
                # A snapshot received from the leader was renamed into place without fsync;
                # it must be durable before PySyncObj clears the journal it replaces.
                os.fsync(f.fileno())
                fsync_dir(os.path.dirname(path))
                machine = load_machine(info, f)
        except Exception as e:
            error = (
                e
                if isinstance(e, DataError)
                else DataError(path, f"cannot be loaded ({type(e).__name__}: {e})", "snapshot")
            )
            logger.critical("%s", error)
            self._on_fatal(error)
            raise error from e
        self._replica.install(machine)
        so = getattr(self._replica, "_syncObj", None)
        self._hold.hold(so)
        logger.info(
            "snapshot: loaded entries up to %d (%d jobs) in %d ms",
            info.header.last[1],
            len(machine.jobs),
            (time.monotonic_ns() - started) // 1_000_000,
        )
        h = info.header
        if h.directory:
            self.learnt = {raft: (i, api) for raft, i, api in h.directory}
        return h.last, h.prev, list(h.cluster)
