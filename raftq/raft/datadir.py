"""A node's data dir: what is in it, and the checks a node runs on it before it starts.

Files (all written by the node; names fixed by ``RaftNode``):

- ``raft.dump``: the snapshot file (``raftq.raft.snapshot_file``).
- ``raft.journal``: raftq's journal (format 2, ``raftq.raft.log_file``): a 16-byte header
  (magic ``RAFTQLOG``, format, CRC-32), then records ``crc(4) len(4) idx(8) term(8) command``
  appended one after the other; a torn last write (a crash) is dropped at the next start.
  A data dir written before it holds PySyncObj's FileJournal (format 1): a 40-byte header
  (name ``PYSYNCOBJ`` in 24 bytes, library version 8, format 4, offset of the end of the last
  record 4), then records ``len(4) | idx(8) term(8) command | len(4)`` up to that offset;
  the node rewrites it in format 2 at its first start.
- ``raft.members``: the voters (raft addresses) this data dir's cluster was bootstrapped
  with, written when the dir was new (JSON ``{"members", "caught_up", "cluster_id",
  "directory"}``); the membership the node starts with is this, then the snapshot's, then the
  journal's changes, never the TOML's once the dir has one
  (``raftq.raft.pysyncobj.membership``).
- ``raft.journal.meta``: PySyncObj's term/vote/commit-index record (its own pickle: the one
  PySyncObj format we cannot replace without patching it; it is only ever read from our own
  disk).

``check_data_dir`` raises ``DataError`` (one line: file, problem, what to do) on the first
problem; ``verify_data_dir`` reports every file (``raftq data verify``). Neither modifies the
directory.
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from raftq.errors import DataError
from raftq.raft import log_file
from raftq.raft.snapshot_file import SnapshotInfo, verify_file

__all__ = [
    "DUMP_FILE",
    "JOURNAL_FILE",
    "MEMBERS_FILE",
    "META_FILE",
    "FileReport",
    "JournalInfo",
    "MetaInfo",
    "check_data_dir",
    "check_journal",
    "check_meta",
    "verify_data_dir",
]

DUMP_FILE = "raft.dump"
MEMBERS_FILE = "raft.members"
JOURNAL_FILE = "raft.journal"
META_FILE = "raft.journal.meta"

_NAME = b"PYSYNCOBJ".ljust(24, b"\0")
_HEADER = struct.Struct("<24s8sII")  # name, library version, format, end of the last record
_FORMAT = 1
_LEN = struct.Struct("<I")
_IDX_TERM = struct.Struct("<QQ")


@dataclass(frozen=True, slots=True)
class JournalInfo:
    entries: int
    first_idx: int | None
    last_idx: int | None
    last_term: int
    format: int = 2
    # Format 2: why the file's end is not a whole record in sequence (a write torn by a
    # crash), and how many bytes the next start drops there; None if it ends whole.
    torn: str | None = None
    torn_bytes: int = 0


@dataclass(frozen=True, slots=True)
class MetaInfo:
    term: int
    voted_for: str | None
    commit_index: int


@dataclass(frozen=True, slots=True)
class FileReport:
    path: str
    ok: bool
    text: str  # what the file holds, or what is wrong with it


def _journal_error(path: str, problem: str) -> DataError:
    return DataError(path, problem, "journal")


def check_journal(path: str) -> JournalInfo:
    """Walk every record of the journal. Format 2: ``DataError`` on a bad file header or on
    terms that go back; records after the first one that is short, fails its checksum or
    breaks the index sequence are what a crash tore (the node drops them at start: reported
    in ``torn``). Format 1 (PySyncObj's FileJournal): ``DataError`` on a bad header, a record
    running past the end, a length mismatch, or indexes that do not follow each other."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > 0 and not log_file.is_legacy(os.pread(f.fileno(), 9, 0)):
                return _scan(path, f.fileno())
            if size < _HEADER.size:
                raise _journal_error(path, f"truncated ({size} bytes, shorter than its header)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                info = _walk(path, mm, size)
                return JournalInfo(info.entries, info.first_idx, info.last_idx, info.last_term, 1)
    except FileNotFoundError as e:
        raise _journal_error(path, "missing") from e
    except OSError as e:
        raise _journal_error(path, f"cannot be read ({e.strerror or e})") from e


def _scan(path: str, fd: int) -> JournalInfo:
    try:
        found = log_file.scan_file(fd)
    except ValueError as e:
        raise _journal_error(path, str(e)) from e
    if found.damaged_inside:
        # Only the end of the file can be torn by a crash; a record damaged with whole records
        # after it lost entries this node may have acknowledged.
        raise _journal_error(path, f"{found.problem}, and whole records follow it (damaged)")
    last_term = 0
    for _, idx, term in found.entries:
        if term < last_term:
            raise _journal_error(
                path, f"entry {idx} has term {term} after term {last_term}: terms go back (damaged)"
            )
        last_term = term
    entries = found.entries
    return JournalInfo(
        entries=len(entries),
        first_idx=entries[0][1] if entries else None,
        last_idx=entries[-1][1] if entries else None,
        last_term=last_term,
        torn=found.problem,
        torn_bytes=found.size - found.end,
    )


def _walk(path: str, mm: mmap.mmap, size: int) -> JournalInfo:
    name, _version, fmt, end = _HEADER.unpack_from(mm, 0)
    if name != _NAME:
        raise _journal_error(path, "not a PySyncObj journal (bad header)")
    if fmt != _FORMAT:
        raise _journal_error(path, f"journal format {fmt}, expected {_FORMAT}")
    if end < _HEADER.size or end > size:
        raise _journal_error(
            path, f"truncated: its header says records end at byte {end}, the file has {size}"
        )
    offset = _HEADER.size
    entries = 0
    first: int | None = None
    last: int | None = None
    last_term = 0
    while offset < end:
        if offset + 4 > end:
            raise _journal_error(path, f"record at byte {offset} is cut off")
        (n,) = _LEN.unpack_from(mm, offset)
        if n < _IDX_TERM.size or offset + 8 + n > end:
            raise _journal_error(
                path, f"record at byte {offset} runs past the end of the log (length {n})"
            )
        (trailer,) = _LEN.unpack_from(mm, offset + 4 + n)
        if trailer != n:
            raise _journal_error(path, f"record at byte {offset} is damaged (length mismatch)")
        idx, term = _IDX_TERM.unpack_from(mm, offset + 4)
        if last is not None and idx != last + 1:
            # A gap is what a lost write leaves (the next entry written where the missing
            # one belonged): the node may have acknowledged the missing entry.
            raise _journal_error(
                path, f"entry {idx} follows entry {last}: entries are missing (damaged)"
            )
        if term < last_term:
            raise _journal_error(
                path, f"entry {idx} has term {term} after term {last_term}: terms go back (damaged)"
            )
        first = idx if first is None else first
        last, last_term = idx, term
        entries += 1
        offset += n + 8
    return JournalInfo(entries=entries, first_idx=first, last_idx=last, last_term=last_term)


class _PlainUnpickler(pickle.Unpickler):
    """Reads only plain data (dicts, ints, strings, None): no class is ever looked up."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def check_meta(path: str) -> MetaInfo | None:
    """The term/vote file, or ``None`` if there is none."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DataError(path, f"cannot be read ({e.strerror or e})", "term/vote") from e
    try:
        # PySyncObj's own format for this file; plain data only.
        meta: Any = _PlainUnpickler(io.BytesIO(raw)).load()
    except Exception as e:
        raise DataError(path, f"unreadable ({type(e).__name__})", "term/vote") from e
    term = meta.get("currentTerm", 0) if isinstance(meta, dict) else None
    vote = meta.get("votedForNodeId") if isinstance(meta, dict) else None
    commit = meta.get("raftCommitIndex", 1) if isinstance(meta, dict) else None
    if (
        type(term) is not int
        or term < 0
        or not (vote is None or isinstance(vote, str))
        or type(commit) is not int
    ):
        raise DataError(path, "unexpected content (damaged)", "term/vote")
    return MetaInfo(term=term, voted_for=vote, commit_index=commit)


def _checks(data_dir: str) -> list[tuple[str, object]]:
    """Every file's result (an info object or a DataError), cross-checks included."""
    dump_path = os.path.join(data_dir, DUMP_FILE)
    journal_path = os.path.join(data_dir, JOURNAL_FILE)
    meta_path = os.path.join(data_dir, META_FILE)
    results: list[tuple[str, object]] = []

    dump: SnapshotInfo | None = None
    if os.path.exists(dump_path):
        try:
            dump = verify_file(dump_path)
            results.append((dump_path, dump))
        except DataError as e:
            results.append((dump_path, e))
    journal: JournalInfo | None = None
    if os.path.exists(journal_path):
        try:
            journal = check_journal(journal_path)
            results.append((journal_path, journal))
        except DataError as e:
            results.append((journal_path, e))
    meta: MetaInfo | None = None
    try:
        meta = check_meta(meta_path)
        if meta is not None:
            results.append((meta_path, meta))
    except DataError as e:
        results.append((meta_path, e))

    # Cross-checks, each on files that are fine by themselves.
    if (
        journal is not None
        and journal.first_idx is not None
        and journal.first_idx > 1
        and not os.path.exists(dump_path)
    ):
        first = journal.first_idx
        problem = f"missing, but the journal starts at entry {first}: the state before is lost"
        results.append((dump_path, DataError(dump_path, problem, "snapshot")))
    newest_term = max(
        journal.last_term if journal is not None else 0,
        dump.header.last[2] if dump is not None else 0,
    )
    if newest_term > 0:
        if meta is None and not os.path.exists(meta_path):
            results.append(
                (
                    meta_path,
                    DataError(
                        meta_path,
                        f"missing, but the log has entries of term {newest_term}",
                        "term/vote",
                    ),
                )
            )
        elif meta is not None and meta.term < newest_term:
            results.append(
                (
                    meta_path,
                    DataError(
                        meta_path,
                        f"term {meta.term} is older than the log's term {newest_term}",
                        "term/vote",
                    ),
                )
            )
    return results


def check_data_dir(data_dir: str) -> None:
    """Raise the first ``DataError`` found in a node's data dir (nothing if it is empty)."""
    for _, result in _checks(data_dir):
        if isinstance(result, DataError):
            raise result


def verify_data_dir(data_dir: str) -> list[FileReport]:
    """One report per file (and per cross-check that failed), for ``raftq data verify``."""
    reports: list[FileReport] = []
    for path, result in _checks(data_dir):
        if isinstance(result, DataError):
            reports.append(FileReport(path, False, result.problem))
        elif isinstance(result, SnapshotInfo):
            h = result.header
            reports.append(
                FileReport(
                    path,
                    True,
                    f"snapshot ok: up to entry {h.last[1]} (term {h.last[2]}), "
                    f"{result.file_size} bytes, checksum verified",
                )
            )
        elif isinstance(result, JournalInfo):
            span = (
                "no entries"
                if result.first_idx is None
                else f"entries {result.first_idx}..{result.last_idx} (last term {result.last_term})"
            )
            text = f"journal ok: {result.entries} records, {span}"
            if result.format == 1:
                text += " (PySyncObj's format 1: rewritten in format 2 at the node's next start)"
            if result.torn is not None:
                text += (
                    f"; then {result.torn}: a write torn by a crash, never acknowledged "
                    f"(its last {result.torn_bytes} bytes are dropped at the node's next start)"
                )
            reports.append(FileReport(path, True, text))
        elif isinstance(result, MetaInfo):
            reports.append(
                FileReport(
                    path,
                    True,
                    f"term/vote ok: term {result.term}, voted for {result.voted_for or 'nobody'}, "
                    f"commit index {result.commit_index}",
                )
            )
    return reports
