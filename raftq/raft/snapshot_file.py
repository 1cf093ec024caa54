"""raftq's snapshot file (``raft.dump``): the raft position PySyncObj needs plus our core
snapshot, checksummed, written atomically. No pickle anywhere.

Layout (format version 1; integers little-endian)::

    offset  size  field
    0       8     magic b"RAFTQSNP"
    8       4     format version (u32) = 1
    12      4     M = length of the raft header (u32)
    16      M     raft header: msgpack [[last_cmd, last_idx, last_term],
                                        [prev_cmd, prev_idx, prev_term], [node addresses]
                                        (, {address: [id, api]})]
    16+M    B     body: the core snapshot (``raftq.core.snapshot``: msgpack stream + SHA-256)
    16+M+B  8     B (u64): written last, so the file is written in one pass
    24+M+B  32    SHA-256 of every byte before it

The fourth element of the raft header, the id and API address of the members added at runtime
(the config does not list them), is written only when there are such members and the cluster
enabled log version 2: the previous release refuses a header of four elements, and it may be
sent this snapshot during a rolling upgrade until every node runs a release that reads it.

Invariant: the file is exactly ``16 + M + B + 40`` bytes. ``write_file`` makes a file appear
at its path only complete and durable (temp file, fsync, rename, fsync of the directory), so a
reader never sees a partial one; a damaged file (a flipped bit, a truncated copy) fails the
checksum and is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO

import msgpack

from raftq.core.snapshot import Checksum
from raftq.errors import DataError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Entry",
    "RaftHeader",
    "SnapshotInfo",
    "builtin_sha256",
    "fsync_dir",
    "fsync_file",
    "open_body",
    "open_verified",
    "read_header",
    "remove_temp_files",
    "temp_path",
    "verify_file",
    "write_file",
]

MAGIC = b"RAFTQSNP"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<8sII")  # magic, version, M
_LENGTH = struct.Struct("<Q")  # B
_SUM_SIZE = 32
_MAX_HEADER = 64 * 2**20  # the raft header holds two log entries: far below this
_READ = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"  # PySyncObj's own dump format (gzip of a pickle)

# A log entry as PySyncObj keeps it: (command bytes, index, term). Tuples, not lists:
# PySyncObj compares them with its journal's entries.
Entry = tuple[bytes, int, int]


@dataclass(frozen=True, slots=True)
class RaftHeader:
    """What PySyncObj stores next to the state: the last two applied log entries and the
    cluster's node addresses (``host:port``), and where the members the config does not list
    are reached (``(address, id, api)``, sorted; empty in a header the previous release reads)."""

    last: Entry
    prev: Entry
    cluster: tuple[str, ...]
    directory: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A verified snapshot file."""

    path: str
    header: RaftHeader
    body_offset: int
    body_size: int
    file_size: int


def _find_builtin_sha256() -> Callable[[], Checksum]:
    for name in ("_sha2", "_sha256"):  # CPython's own SHA-256: 3.12 on, 3.11
        try:
            factory: Callable[[], Checksum] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        return factory
    return hashlib.sha256  # a CPython built without it: OpenSSL's (the same digest)


# SHA-256 computed by CPython's own code, not OpenSSL's: the same digest, so the same files.
# For a process forked from a threaded one (the snapshot writer): OpenSSL takes locks of its
# own, which another thread may have held at the fork, and then the child waits forever.
# About 4x slower than OpenSSL's here (146 against 644 MB/s), so only the writer uses it.
builtin_sha256: Callable[[], Checksum] = _find_builtin_sha256()


def fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode_header(h: RaftHeader) -> bytes:
    value: list[object] = [list(h.last), list(h.prev), list(h.cluster)]
    if h.directory:  # else the three elements the previous release reads
        value.append({raft: [i, api] for raft, i, api in h.directory})
    packed: bytes = msgpack.packb(value)
    return packed


def _entry(value: object) -> Entry:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], bytes)
        or not all(type(x) is int and x >= 0 for x in value[1:])
    ):
        raise ValueError(f"bad log entry {value!r:.80}")
    return (value[0], value[1], value[2])


def _decode_header(raw: bytes) -> RaftHeader:
    value = msgpack.unpackb(raw, raw=False)
    if not isinstance(value, list) or len(value) not in (3, 4) or not isinstance(value[2], list):
        raise ValueError("bad raft header")
    last, prev = _entry(value[0]), _entry(value[1])
    if not all(isinstance(a, str) for a in value[2]):
        raise ValueError("bad cluster list")
    if prev[1] + 1 != last[1]:
        raise ValueError(f"entries {prev[1]} and {last[1]} are not consecutive")
    directory = _directory(value[3]) if len(value) == 4 else ()
    return RaftHeader(last=last, prev=prev, cluster=tuple(value[2]), directory=directory)


def _directory(value: object) -> tuple[tuple[str, str, str], ...]:
    if not isinstance(value, dict):
        raise ValueError("bad member directory")
    entries = []
    for raft, info in value.items():
        if (
            not isinstance(raft, str)
            or not isinstance(info, list)
            or len(info) != 2
            or not all(isinstance(x, str) for x in info)
        ):
            raise ValueError(f"bad member directory entry {raft!r:.80}")
        entries.append((raft, info[0], info[1]))
    return tuple(sorted(entries))


def temp_path(path: str, pid: int) -> str:
    """The temp file the writer process ``pid`` writes the snapshot file ``path`` into."""
    return f"{path}.raftq-{pid}.tmp"


def write_file(
    path: str,
    header: RaftHeader,
    write_body: Callable[[Callable[[bytes], object]], None],
    sha256: Callable[[], Checksum] = hashlib.sha256,
) -> int:
    """Write a snapshot file at ``path`` atomically and durably; returns its size.

    ``write_body(write)`` streams the core snapshot through ``write`` (e.g.
    ``lambda w: write_snapshot(machine, w)``), so the state is never held twice in memory.
    The temp file is ``<path>.raftq-<pid>.tmp`` (``temp_path``): a name PySyncObj does not
    use, and two writers never share (``remove_temp_files`` clears those a crash left
    behind). ``sha256``: where the checksum is computed (``builtin_sha256`` in a forked
    child, see ``raftq.core.snapshot``); every choice gives the same file.
    """
    tmp = temp_path(path, os.getpid())
    raw_header = _encode_header(header)
    checksum = sha256()
    size = 0
    with open(tmp, "wb", buffering=_READ) as f:

        def out(chunk: bytes) -> None:
            checksum.update(chunk)
            f.write(chunk)

        out(_FIXED.pack(MAGIC, FORMAT_VERSION, len(raw_header)))
        out(raw_header)

        def write(chunk: bytes) -> None:
            nonlocal size
            out(chunk)
            size += len(chunk)

        write_body(write)
        out(_LENGTH.pack(size))
        f.write(checksum.digest())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))
    return _FIXED.size + len(raw_header) + size + _LENGTH.size + _SUM_SIZE


def remove_temp_files(path: str) -> list[str]:
    """Delete the temp files of interrupted writes of the snapshot file ``path``."""
    folder, name = os.path.split(path)
    removed = []
    for entry in os.listdir(folder or "."):
        if entry.startswith(name + ".raftq-") and entry.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, entry))
                removed.append(entry)
    return removed


def _bad(path: str, problem: str) -> DataError:
    return DataError(path, problem, "snapshot")


def read_header(path: str) -> RaftHeader:
    """The raft header of a snapshot file already verified (``check_data_dir`` at start),
    without reading the body again; ``DataError`` if it cannot be read."""
    try:
        with open(path, "rb") as f:
            fixed = f.read(_FIXED.size)
            if len(fixed) < _FIXED.size:
                raise _bad(path, "truncated (shorter than the header)")
            magic, _version, m = _FIXED.unpack(fixed)
            if magic != MAGIC or m > _MAX_HEADER:
                raise _bad(path, "not a raftq snapshot file (bad magic)")
            return _decode_header(f.read(m))
    except OSError as e:
        raise _bad(path, f"cannot be read ({e.strerror or e})") from e
    except ValueError as e:
        raise _bad(path, f"unreadable raft header ({e})") from e


def verify_file(path: str) -> SnapshotInfo:
    """Check magic, version, sizes, the raft header and the whole-file checksum (and the core
    snapshot's own checksum) without building the state. ``DataError`` if anything is off."""
    info, f = open_verified(path)
    f.close()
    return info


def open_verified(path: str) -> tuple[SnapshotInfo, BinaryIO]:
    """``verify_file``, keeping the file open: read the body from this file object
    (``open_body``), never by opening ``path`` again, since another snapshot may be renamed over
    it meanwhile (Bug fixed: a local compaction's writer replaced the dump while a snapshot from
    the leader was being loaded, and the body was read from the new file at the old offset)."""
    try:
        f = open(path, "rb")  # noqa: SIM115  # returned open, or closed below
    except FileNotFoundError as e:
        raise _bad(path, "missing") from e
    except OSError as e:
        raise _bad(path, f"cannot be read ({e.strerror or e})") from e
    try:
        return _verify(path, f), f
    except OSError as e:
        f.close()
        raise _bad(path, f"cannot be read ({e.strerror or e})") from e
    except BaseException:
        f.close()
        raise


def _verify(path: str, f: BinaryIO) -> SnapshotInfo:
    file_size = os.fstat(f.fileno()).st_size
    fixed = f.read(_FIXED.size)
    if fixed[:2] == _GZIP_MAGIC:
        raise _bad(path, "PySyncObj's pickle format (written by an older raftq)")
    if len(fixed) < _FIXED.size:
        raise _bad(path, f"truncated ({file_size} bytes, shorter than the header)")
    magic, version, m = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise _bad(path, "not a raftq snapshot file (bad magic)")
    if version != FORMAT_VERSION:
        raise _bad(path, f"format version {version}, this raftq reads {FORMAT_VERSION}")
    b = file_size - _FIXED.size - m - _LENGTH.size - _SUM_SIZE
    if m > _MAX_HEADER or b < _SUM_SIZE:
        raise _bad(path, f"truncated ({file_size} bytes)")
    whole = hashlib.sha256(fixed)
    raw_header = f.read(m)
    whole.update(raw_header)
    body_sum = hashlib.sha256()
    remaining = b
    tail = b""  # the body's last 32 bytes: the core snapshot's own checksum
    while remaining:
        chunk = f.read(min(_READ, remaining))
        if not chunk:
            raise _bad(path, "truncated while reading")
        remaining -= len(chunk)
        whole.update(chunk)
        data = tail + chunk
        tail, body = data[-_SUM_SIZE:], data[:-_SUM_SIZE]
        body_sum.update(body)
    length = f.read(_LENGTH.size)
    whole.update(length)
    if _LENGTH.unpack(length)[0] != b:
        raise _bad(path, f"truncated or damaged ({file_size} bytes, body length mismatch)")
    if f.read(_SUM_SIZE) != whole.digest():
        raise _bad(path, "checksum mismatch (damaged)")
    if tail != body_sum.digest():
        raise _bad(path, "the state inside fails its checksum (damaged)")
    try:
        header = _decode_header(raw_header)
    except Exception as e:  # a header that passed the checksum but does not decode
        raise _bad(path, f"unreadable raft header ({e})") from e
    return SnapshotInfo(
        path=path,
        header=header,
        body_offset=_FIXED.size + m,
        body_size=b,
        file_size=file_size,
    )


class _Body(io.RawIOBase):
    """The body of a snapshot file as a stream (what ``Machine.restore`` reads)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        self._left -= len(data)
        return data


def open_body(info: SnapshotInfo, f: BinaryIO) -> IO[bytes]:
    """The core snapshot inside ``f``, the file ``open_verified`` checked, as a stream."""
    f.seek(info.body_offset)
    return _Body(f, info.body_size)  # type: ignore[return-value]  # RawIOBase reads bytes
