"""The daemon thread pool of sync handlers."""

from __future__ import annotations

import threading
import time

import pytest

from raftq.worker.threads import DaemonThreadPool


def test_runs_work_on_at_most_max_daemon_threads_and_reuses_them() -> None:
    pool = DaemonThreadPool(2, thread_name_prefix="t")
    names: set[str] = set()
    gate = threading.Event()

    def job(i: int) -> int:
        names.add(threading.current_thread().name)
        assert threading.current_thread().daemon
        gate.wait(5)
        return i * 2

    futures = [pool.submit(job, i) for i in range(5)]
    time.sleep(0.1)
    assert sum(f.running() for f in futures) == 2  # the others wait for a free thread
    gate.set()
    assert [f.result(5) for f in futures] == [0, 2, 4, 6, 8]
    assert names <= {"t_0", "t_1"}
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(job, 1)


def test_shutdown_can_cancel_pending_work_without_waiting() -> None:
    pool = DaemonThreadPool(1, thread_name_prefix="t")
    gate = threading.Event()
    running = pool.submit(gate.wait, 5)
    pending = pool.submit(lambda: "never")
    time.sleep(0.05)
    pool.shutdown(wait=False, cancel_futures=True)
    assert pending.cancelled() and not running.done()
    gate.set()
    assert running.result(5) is True
