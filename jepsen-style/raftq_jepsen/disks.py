"""Disk faults of the hosts: a small filesystem per node data dir, and failing syscalls.

- ``disk-full``: each node's data dir is a size-limited tmpfs (``mount -t tmpfs -o size=...``,
  source name ``jepsen-nK`` so a killed run's mounts are found and removed); the nemesis fills
  it with a filler file (ENOSPC for the node's next allocation) and frees it at heal.
- ``disk-error``: a tiny LD_PRELOAD library (``eio_shim.c``, compiled here with ``cc`` at run
  time) makes write/pwrite/pwrite64/writev/pwritev/fsync/fdatasync on files under the node's
  data dir fail with EIO while that node's flag file exists; the nemesis creates and removes
  the flag.

Both are real failed syscalls in the node process: nothing in raftq knows about them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "FILLER",
    "TMPFS_MB",
    "build_eio_shim",
    "build_shim",
    "fill",
    "free",
    "mount_tmpfs",
    "stale_mounts",
    "umount",
]

logger = logging.getLogger(__name__)

TMPFS_MB = 96  # per node: room for the journal and two snapshots of a 60 s run, with margin
FILLER = "jepsen-filler"  # the file that fills a node's tmpfs (top level of its data dir)
HERE = Path(__file__).resolve().parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def mount_tmpfs(path: Path, source: str, size_mb: int = TMPFS_MB) -> None:
    """Mount a tmpfs of ``size_mb`` on ``path`` (created), named ``source`` in /proc/mounts."""
    path.mkdir(parents=True, exist_ok=True)
    proc = _run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", source, str(path))
    if proc.returncode != 0:
        raise RuntimeError(f"mount -t tmpfs on {path} failed: {proc.stderr.strip()}")


def umount(path: Path) -> None:
    """Unmount ``path``; lazily if busy (a process of ours still holds a file there)."""
    if _run("umount", str(path)).returncode != 0:
        _run("umount", "-l", str(path))


def stale_mounts(prefix: str) -> list[Path]:
    """tmpfs mount points whose source name starts with ``prefix-`` (a killed run's)."""
    out = []
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "tmpfs" and parts[0].startswith(f"{prefix}-"):
                out.append(Path(parts[1]))
    return out


def fill(path: Path) -> int:
    """Fill the filesystem of ``path`` with ``path/FILLER``; the bytes it took.

    Allocates what is free at once, then tops up in small writes until ENOSPC, so that even a
    one-page allocation of the node fails afterwards."""
    filler = path / FILLER
    taken = 0
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        st = os.statvfs(path)
        free_bytes = st.f_bavail * st.f_frsize
        if free_bytes > 0:
            with contextlib.suppress(OSError):
                os.posix_fallocate(fd, 0, free_bytes)
                taken = free_bytes
        chunk = b"\0" * 4096
        while True:
            try:
                taken += os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return taken
    finally:
        os.close(fd)


def free(path: Path) -> None:
    """Remove the filler of ``path`` (nothing if there is none)."""
    with contextlib.suppress(FileNotFoundError):
        (path / FILLER).unlink()


def build_shim(source: str, out_dir: Path) -> Path:
    """Compile the LD_PRELOAD library ``source`` (a C file next to this module) into
    ``out_dir``; the library's path.

    Raises:
        RuntimeError: no C compiler, or it failed (``.ci/system-deps`` installs gcc)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError(f"{source} needs a C compiler: apt-get install gcc")
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"libjepsen_{source.removesuffix('.c')}.so"
    proc = _run(cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(HERE / source), "-ldl")
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {source} failed: {proc.stderr.strip()}")
    return lib


def build_eio_shim(out_dir: Path) -> Path:
    """The disk-error library (``eio_shim.c``)."""
    return build_shim("eio_shim.c", out_dir)
