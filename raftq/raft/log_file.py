"""raftq's journal file (``raft.journal``): an append-only file of checksummed records.

Layout (format version 2; integers little-endian)::

    offset  size  field
    0       8     magic b"RAFTQLOG"
    8       4     format version (u32) = 2
    12      4     CRC-32 of bytes 0..11 (u32)
    16            records, each:
                    0   4  CRC-32 (zlib) of bytes 4.. of the record: the rest of the
                           header and the payload (u32)
                    4   4  payload length (u32)
                    8   8  entry index (u64)
                    16  8  entry term (u64)
                    24  n  payload: the entry's command, as PySyncObj hands it over

Invariants (kept by ``raftq.raft.pysyncobj.journal.DurableFileJournal``): the file appears at
its path only whole (a new file, or a compaction's rewrite, is written to a temp file, synced
and renamed); records are only ever appended at its end, and its end moves back only by a
durable ``ftruncate`` (a conflicting entry cut, a cleared log); the indexes follow each
other. So after any crash the file is a run of whole records that were written, then at most
one torn write (records cut short, zeros, or garbage where a write did not reach the disk).
``scan`` reads the run and stops at the first record that is short, fails its checksum or
breaks the index sequence; the journal truncates the file there at start. Every record that
was durable before a crash (an acknowledged one) is in the run: a record is appended only at
the end of the previous durable one, so nothing torn can come before it. For the same reason
a short or failing record with whole records after it was not torn by a crash but damaged on
disk (``Scan.damaged_inside``): the node refuses to start on it rather than forget what
follows.

The first journal format was PySyncObj's FileJournal (format 1: a header whose last-record
offset points past the records, no checksum; ``LEGACY_MAGIC``). A data dir that has one is
read once at start and rewritten in this format (``read_legacy``); ``raftq data verify``
still reads both.

No PySyncObj import here: ``raftq.raft.datadir`` (``raftq data verify``) reads the file too.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "LEGACY_MAGIC",
    "MAGIC",
    "RECORD_HEADER",
    "Entry",
    "Scan",
    "encode",
    "file_header",
    "is_legacy",
    "read_entries",
    "read_legacy",
    "scan",
    "scan_file",
    "write_journal",
]

Entry = tuple[bytes, int, int]  # (command, index, term): PySyncObj's journal entry

MAGIC = b"RAFTQLOG"
FORMAT_VERSION = 2
LEGACY_MAGIC = b"PYSYNCOBJ"
_FILE_HEADER = struct.Struct("<8sII")  # magic, format, CRC-32 of the first 12 bytes
HEADER_SIZE = _FILE_HEADER.size  # 16
RECORD_HEADER = struct.Struct("<IIQQ")  # crc, length, index, term
_CHECKED = struct.Struct("<IQQ")  # the header fields the CRC covers (with the payload)
_LEGACY_HEADER = 40  # name 24, library version 8, format 4, end of the last record 4


def file_header() -> bytes:
    head = MAGIC + struct.pack("<I", FORMAT_VERSION)
    return head + struct.pack("<I", zlib.crc32(head))


def encode(command: bytes, idx: int, term: int) -> bytes:
    """One record: its header (with the CRC over the rest of the header and the payload),
    then the payload."""
    checked = _CHECKED.pack(len(command), idx, term)
    crc = zlib.crc32(command, zlib.crc32(checked))
    return struct.pack("<I", crc) + checked + command


@dataclass(frozen=True, slots=True)
class Scan:
    """What ``scan`` found: the entries of the valid run, the byte where it ends, and why the
    scan stopped before the end of the file (``None``: the file ends with a whole record)."""

    entries: list[Entry]
    end: int
    size: int
    problem: str | None
    # Whole records follow the one that is short or fails its checksum: the file was damaged
    # after it was written (a flipped bit, a bad sector), not torn at its end by a crash.
    damaged_inside: bool = False


def is_legacy(head: bytes) -> bool:
    """Whether a journal file that starts with ``head`` is PySyncObj's format 1."""
    return head.startswith(LEGACY_MAGIC)


def scan(buf: bytes | mmap.mmap, size: int) -> Scan:
    """Read the records of a format-2 journal held in ``buf`` (``size`` bytes) up to the first
    one that is short, fails its checksum or does not follow the previous index. Raises
    ``ValueError`` if the file header itself is not this format's."""
    if size < HEADER_SIZE:
        raise ValueError(f"truncated ({size} bytes, shorter than its header)")
    magic, fmt, crc = _FILE_HEADER.unpack_from(buf, 0)
    if magic != MAGIC or crc != zlib.crc32(bytes(buf[:12])):
        raise ValueError("not a raftq journal (bad header)")
    if fmt != FORMAT_VERSION:
        raise ValueError(f"journal format {fmt}, expected {FORMAT_VERSION}")
    entries: list[Entry] = []
    offset = HEADER_SIZE
    last: int | None = None
    problem: str | None = None
    while offset < size:
        if offset + RECORD_HEADER.size > size:
            problem = f"record at byte {offset} is cut off ({size - offset} bytes)"
            break
        crc, n, idx, term = RECORD_HEADER.unpack_from(buf, offset)
        body = offset + RECORD_HEADER.size
        if body + n > size:
            problem = f"record at byte {offset} is cut off (length {n}, {size - body} left)"
            break
        checked = bytes(buf[offset + 4 : body + n])
        if zlib.crc32(checked) != crc:
            problem = f"record at byte {offset} fails its checksum"
            break
        if last is not None and idx != last + 1:
            problem = f"record at byte {offset} holds entry {idx} after entry {last}"
            break
        entries.append((checked[RECORD_HEADER.size - 4 :], idx, term))
        last = idx
        offset = body + n
    # A whole record out of sequence ends the log as it is; a short or failing one may hide
    # whole records after it.
    unreadable = problem is not None and "holds entry" not in problem
    inside = unreadable and _whole_after(buf, size, offset, last)
    return Scan(entries=entries, end=offset, size=size, problem=problem, damaged_inside=inside)


def _record_at(buf: bytes | mmap.mmap, size: int, offset: int) -> tuple[int, int] | None:
    """(index, end) of a whole record with a good checksum at ``offset``, else None."""
    if offset < HEADER_SIZE or offset + RECORD_HEADER.size > size:
        return None
    crc, n, idx, _ = RECORD_HEADER.unpack_from(buf, offset)
    end = offset + RECORD_HEADER.size + n
    if end > size or zlib.crc32(bytes(buf[offset + 4 : end])) != crc:
        return None
    return idx, end


def _whole_after(buf: bytes | mmap.mmap, size: int, bad: int, last: int | None) -> bool:
    """Whether a whole record with a good checksum follows the bad record at ``bad``: where
    its own length says the next one starts, or (its length damaged) wherever the index after
    it appears. A crash tears only the end of the file (records are appended after durable
    ones), so whole records after a bad one mean damage inside the log."""
    if bad + RECORD_HEADER.size <= size:
        (n,) = struct.unpack_from("<I", buf, bad + 4)
        after = _record_at(buf, size, bad + RECORD_HEADER.size + n)
        if after is not None:
            return True
    if last is None:
        return False
    wanted = struct.pack("<Q", last + 2)
    at = bad + 8
    for _ in range(64):  # each hit costs a checksum; a damaged log has them early
        at = buf.find(wanted, at + 1)
        if at < 0:
            return False
        found = _record_at(buf, size, at - 8)
        if found is not None and found[0] == last + 2:
            return True
    return False


def scan_file(fd: int) -> Scan:
    """``scan`` over an open file (read through a read-only mmap: no copy of the file)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return scan(b"", 0)
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm:
        return scan(mm, size)


def read_legacy(fd: int) -> list[Entry]:
    """The entries of PySyncObj's format-1 journal (FileJournal's reader: records up to the
    header's last-record offset). ``ValueError`` if a record runs past that offset or the
    file (``raftq.raft.datadir`` checked the file more closely before the node started)."""
    size = os.fstat(fd).st_size
    (end,) = struct.unpack("<I", os.pread(fd, 4, _LEGACY_HEADER - 4))
    if end > size:
        raise ValueError(f"its header says records end at byte {end}, the file has {size}")
    data = os.pread(fd, end, 0)
    entries: list[Entry] = []
    offset = _LEGACY_HEADER
    while offset < end:
        (n,) = struct.unpack_from("<I", data, offset)
        if n < 16 or offset + 8 + n > end:
            raise ValueError(f"record at byte {offset} runs past the end of the log")
        idx, term = struct.unpack_from("<QQ", data, offset + 4)
        entries.append((data[offset + 20 : offset + 4 + n], idx, term))
        offset += n + 8
    return entries


def read_entries(path: str) -> list[Entry]:
    """The entries a node would start with from the journal at ``path``, read-only: the
    valid run of a format-2 file, or a format-1 file's records; none if there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        if is_legacy(os.pread(fd, len(LEGACY_MAGIC), 0)):
            return read_legacy(fd)
        if os.fstat(fd).st_size == 0:
            return []
        return scan_file(fd).entries
    finally:
        os.close(fd)


def write_journal(path: str, entries: Iterable[Entry], *, sync: bool) -> int:
    """Write a new journal file holding ``entries`` at ``path`` (which must not exist; the
    caller renames it into place) and return its size. Plain buffered writes, never an
    mmap: on a full disk an mmap write kills the process with SIGBUS, where a write raises
    ENOSPC and the node stops with its reason."""
    end = HEADER_SIZE
    with open(path, "xb") as f:
        f.write(file_header())
        for command, idx, term in entries:
            record = encode(bytes(command), idx, term)
            f.write(record)
            end += len(record)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    return end
