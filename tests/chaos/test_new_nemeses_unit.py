"""The mechanisms of the disk, clock and forged-forward nemeses and of their positive controls,
pinned without a cluster: the forged_forward check, the EIO shim (real failed syscalls in a
real process), the tmpfs filler, and the journal-swallowing test fault."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from raftq_jepsen import disks, forger
from raftq_jepsen.checker import judge

from raftq.server import testfaults
from tests.chaos.hist import History


def _forged(h: History, status: int | None) -> None:
    p = h.invoke(2000, "forged", {"method": "GET", "path": "/v1/queues/q0", "kind": "k"})
    if status is None:
        h.info(p)
    elif 200 <= status < 300:
        h.ok(p, {"status": status})
    else:
        h.fail(p, f"http_{status}")


def test_forged_check_flags_every_answer_but_401(tmp_path: Path) -> None:
    h = History()
    h.enqueue(1, "a")
    for status in (401, 401, None):
        _forged(h, status)
    ok = judge(h.write(tmp_path / "good"))
    assert ok["checks"]["forged_forward"]["valid"] is True, ok["checks"]["forged_forward"]
    assert ok["checks"]["forged_forward"]["counts"] == {
        "refused_401": 2,
        "unanswered": 1,
        "forged": 3,
    }
    # Forged requests are not queue operations: no other check sees them.
    plain = judge_plain(tmp_path)
    for name in ("total_queue", "jobs", "linearizable"):  # "ms": the check's own run time
        counts = {k: v for k, v in ok["checks"][name]["counts"].items() if k != "ms"}
        assert counts == {k: v for k, v in plain[name]["counts"].items() if k != "ms"}, name

    h2 = History()
    h2.enqueue(1, "a")
    for status in (401, 200, 404, 503):
        _forged(h2, status)
    bad = judge(h2.write(tmp_path / "bad"))
    assert bad["valid"] is False
    assert bad["checks"]["forged_forward"]["violations"] == {
        "accepted": 1,
        "not_refused": 2,
        "none_answered": 0,
    }
    failing = {k for k, c in bad["checks"].items() if not c["valid"]}
    failing_ok = {k for k, c in ok["checks"].items() if not c["valid"]}
    assert failing - failing_ok == {"forged_forward"}


def test_a_forged_forward_window_without_one_answer_judges_nothing(tmp_path: Path) -> None:
    """A forger that sent nothing, or got no answer, must not pass for a node that refused
    every forged request (a positive control once passed that way)."""
    window = {"nemesis": "forged-forward", "start_ns": 0, "end_ns": 1, "detail": {"sent": 0}}
    for name, statuses in (("silent", ()), ("unanswered", (None, None))):
        h = History()
        h.enqueue(1, "a")
        for status in statuses:
            _forged(h, status)
        res = judge(h.write(tmp_path / name, nemeses=[window]))
        check = res["checks"]["forged_forward"]
        assert res["valid"] is False and check["violations"]["none_answered"] == 1, check
        # No window, nothing to answer: nothing claimed, nothing flagged.
        assert judge(h.write(tmp_path / f"{name}-none"))["checks"]["forged_forward"]["valid"]


def test_the_forger_takes_a_token_that_begins_with_a_dash() -> None:
    """Bug fixed (two CI runs: a forged-forward window sent nothing, twice judged valid): the
    run's token is random (``secrets.token_urlsafe``), one in 64 begins with ``-``, and passed
    as ``--token T`` argparse read it as an option: the forger exited at once (2)."""
    token = "-Xy_3" + "a" * 28
    words = forger.argv(token, "n2", 4.0, ["http://10.0.0.1:7001", "http://10.0.0.2:7001"])
    args = forger.parser().parse_args(words)
    assert (args.token, args.node_id, args.seconds) == (token, "n2", 4.0)
    assert args.urls == ["http://10.0.0.1:7001", "http://10.0.0.2:7001"]
    with pytest.raises(SystemExit):  # the form it had
        forger.parser().parse_args(["--token", token, "--node-id", "n2", "--seconds", "4", "u"])


def judge_plain(tmp_path: Path) -> dict[str, Any]:
    """The checks of the same history without its forged requests."""
    h = History()
    h.enqueue(1, "a")
    checks: dict[str, Any] = judge(h.write(tmp_path / "plain"))["checks"]
    return checks


_PROBE = """
import os, sys
d = sys.argv[1]
fd = os.open(os.path.join(d, "j"), os.O_WRONLY | os.O_CREAT | os.O_DSYNC)
out = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT)
for name, call in (("pwrite", lambda: os.pwrite(fd, b"x", 0)),
                   ("write", lambda: os.write(fd, b"x")),
                   ("fsync", lambda: os.fsync(fd)), ("fdatasync", lambda: os.fdatasync(fd)),
                   ("outside", lambda: os.write(out, b"x"))):
    try:
        call()
        print(name, "ok")
    except OSError as e:
        print(name, e.errno)
"""


def _probe(lib: Path, data: Path, flag: Path, outside: Path) -> dict[str, str]:
    env = dict(os.environ, LD_PRELOAD=str(lib), RAFTQ_JEPSEN_EIO_FLAG=str(flag),
               RAFTQ_JEPSEN_EIO_DIR=str(data))  # fmt: skip
    out = subprocess.run([sys.executable, "-c", _PROBE, str(data), str(outside)], env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return dict(line.split() for line in out.splitlines())


@pytest.mark.integration
def test_eio_shim_fails_data_dir_writes_only_while_flagged(tmp_path: Path) -> None:
    lib = disks.build_eio_shim(tmp_path / "eio")
    data, flag = tmp_path / "data", tmp_path / "flag"
    data.mkdir()
    eio = str(errno.EIO)
    flag.write_text("")
    failing = _probe(lib, data, flag, tmp_path / "outside")
    assert failing == {"pwrite": eio, "write": eio, "fsync": eio, "fdatasync": eio,
                       "outside": "ok"}  # fmt: skip
    flag.unlink()
    assert set(_probe(lib, data, flag, tmp_path / "outside").values()) == {"ok"}


@pytest.mark.integration
def test_tmpfs_fill_gives_enospc_and_free_undoes_it(tmp_path: Path) -> None:
    """Needs root (mount), as every test of tests/chaos/."""
    mnt = tmp_path / "mnt"
    disks.mount_tmpfs(mnt, "jepsen-unit", size_mb=4)
    try:
        assert mnt in disks.stale_mounts("jepsen")
        taken = disks.fill(mnt)
        assert taken >= 3 * 1024 * 1024
        with pytest.raises(OSError) as e:
            (mnt / "more").write_bytes(b"\0" * 8192)
        assert e.value.errno == errno.ENOSPC
        disks.free(mnt)
        (mnt / "more").write_bytes(b"\0" * 8192)
    finally:
        disks.umount(mnt)
    assert mnt not in disks.stale_mounts("jepsen")


def test_swallowing_os_reports_success_for_failed_writes(tmp_path: Path) -> None:
    """journal-ignores-write-errors: what the journal modules' ``os`` becomes."""
    sw: Any = testfaults._SwallowingOs()
    closed = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    os.close(closed)  # every call on it fails with EBADF
    assert sw.pwrite(closed, b"abc", 0) == 3  # swallowed: "everything written"
    assert sw.write(closed, b"ab") == 2
    sw.fsync(closed)
    sw.fdatasync(closed)
    assert sw.path is os.path  # everything else is the real os
    with pytest.raises(OSError):
        os.pwrite(closed, b"abc", 0)


_CLOCKS = """
import datetime, time
wall, mono = time.time(), time.monotonic()
time.sleep(0.05)  # sleeps keep working (libfaketime's DONT_FAKE_MONOTONIC breaks them)
print(wall, mono, datetime.datetime.now().timestamp())
"""


@pytest.mark.integration
def test_wallclock_shim_steps_the_wall_clock_only(tmp_path: Path) -> None:
    lib = disks.build_shim("wallclock_shim.c", tmp_path / "wall")
    offset = tmp_path / "offset"
    env = dict(os.environ, LD_PRELOAD=str(lib), RAFTQ_JEPSEN_WALL_OFFSET_FILE=str(offset))
    for shift in (-7200.0, 0.0, 5 * 3600.0):
        offset.write_text(f"{shift}\n")
        before = (time.time(), time.monotonic())
        out = subprocess.run([sys.executable, "-c", _CLOCKS], env=env, capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
        wall, mono, now = (float(x) for x in out)
        assert abs(wall - before[0] - shift) < 5, (shift, wall - before[0])
        assert abs(now - wall) < 5  # gettimeofday/localtime agree with clock_gettime
        assert 0 <= mono - before[1] < 5  # the monotonic clock is the real one
