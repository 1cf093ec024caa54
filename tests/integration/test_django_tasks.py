"""Django's task framework on raftq (``raftq.contrib.django``): the project under
``examples/django_project/`` enqueues with Django's API (``task.enqueue``, ``aenqueue``,
``get_result``) against a real 3-node cluster, and its ``manage.py raftq_worker`` runs the
tasks in a real process."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.utils import timezone

from raftq.client import SyncClient
from raftq.contrib.django.backend import RaftqBackend
from raftq.contrib.django.compat import (
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)
from raftq.contrib.django.convert import to_ms
from tests.integration.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "examples" / "django_project"
SUCCESSFUL, FAILED, READY = (TaskResultStatus(s) for s in ("SUCCESSFUL", "FAILED", "READY"))


def _nodes(cluster: Cluster) -> str:
    return ",".join(cluster.api[n] for n in cluster.ids)


@pytest.fixture(scope="module")
def tasks(shared_cluster: Cluster) -> Iterator[ModuleType]:
    """The project's settings (TASKS on the cluster) in this process; its ``demo_app.tasks``."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RAFTQ_NODES", _nodes(shared_cluster))
    patch.setenv("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    patch.syspath_prepend(str(PROJECT))
    django.setup()
    try:
        yield importlib.import_module("demo_app.tasks")
    finally:
        task_backends["default"].close()
        patch.undo()


def _worker(cluster: Cluster, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``python examples/django_project/manage.py raftq_worker ARGS`` (this checkout's raftq)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "RAFTQ_NODES": _nodes(cluster), "PYTHONPATH": path}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(PROJECT / "manage.py"), "raftq_worker", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )


@pytest.fixture(scope="module")
def worker(shared_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A worker process on the "default" queue for the module; yields its log file."""
    log = tmp_path_factory.mktemp("django") / "worker.log"
    proc = _worker(shared_cluster, log, "--queue", "default", "--concurrency", "4")
    try:
        yield log
    finally:
        proc.kill()
        proc.wait(10)


def _finished(result: TaskResult[Any], log: Path, timeout: float = 15) -> TaskResult[Any]:
    deadline = time.monotonic() + timeout
    while not result.is_finished:
        if time.monotonic() > deadline:
            raise AssertionError(f"task {result.id} is {result.status}:\n{log.read_text()}")
        time.sleep(0.05)
        result.refresh()
    return result


def test_a_task_runs_in_the_worker_and_its_result_comes_back(
    tasks: ModuleType, worker: Path, shared_cluster: Cluster
) -> None:
    before = timezone.now()
    result = tasks.add.enqueue(2, 3)
    assert result.status == READY and result.args == [2, 3]
    _finished(result, worker)
    assert result.status == SUCCESSFUL, result.errors
    assert result.return_value == 5 and result.attempts == 1 and result.errors == []
    assert result.enqueued_at is not None and result.finished_at is not None
    assert before - timedelta(seconds=5) < result.enqueued_at <= result.finished_at
    again = tasks.add.get_result(result.id)  # a fresh read by id, as another process would
    assert (again.status, again.return_value, again.task.func) == (SUCCESSFUL, 5, tasks.add.func)
    with SyncClient(_nodes(shared_cluster)) as client:
        job = client.get_job(int(result.id))
    assert job["queue"] == "default" and job["priority"] == 4  # Django's default 0
    assert job["payload"]["task"] == "demo_app.tasks.add" and job["result"] == 5


def test_the_projects_command_enqueues_and_prints_the_result(
    shared_cluster: Cluster, worker: Path
) -> None:
    # The guide's example as a user runs it: another process, settings from RAFTQ_NODES.
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "add_numbers", "20", "22"],
        cwd=REPO,
        env={**os.environ, "RAFTQ_NODES": _nodes(shared_cluster), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "42\n"), done.stderr + worker.read_text()


def test_a_task_that_takes_context_gets_its_result_id_and_attempt(
    tasks: ModuleType, worker: Path
) -> None:
    result = _finished(tasks.whoami.enqueue(greeting="hi"), worker)
    assert result.status == SUCCESSFUL, result.errors
    assert result.return_value == {"greeting": "hi", "id": result.id, "attempt": 1}


def test_a_failing_task_is_failed_with_its_exception(tasks: ModuleType, worker: Path) -> None:
    result = _finished(tasks.fail.enqueue("boom"), worker)
    assert result.status == FAILED and result.attempts == 1
    [error] = result.errors
    assert error.exception_class is ValueError
    assert error.traceback.rstrip().endswith("ValueError: boom"), error.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value
    # A return value that is not JSON fails the task, as Django requires.
    bad = _finished(tasks.not_json.enqueue(), worker)
    assert bad.status == FAILED and bad.errors[0].exception_class is TypeError


def test_with_max_attempts_a_failed_attempt_is_retried(tasks: ModuleType, worker: Path) -> None:
    result = tasks.flaky.using(backend="retrying").enqueue()
    deadline = time.monotonic() + 10
    while not result.errors:  # the first attempt failed; the retry waits out the backoff
        assert time.monotonic() < deadline and not result.is_finished, worker.read_text()
        time.sleep(0.05)
        result.refresh()
    assert (result.status, result.attempts) == (READY, 1)
    assert result.errors[0].exception_class is ConnectionError
    _finished(result, worker)
    assert (result.status, result.return_value, result.attempts) == (SUCCESSFUL, 2, 2)


def test_run_after_defers_the_task(
    tasks: ModuleType, worker: Path, shared_cluster: Cluster
) -> None:
    run_after = timezone.now() + timedelta(seconds=1.5)
    result = tasks.add.using(run_after=run_after).enqueue(1, 1)
    with SyncClient(_nodes(shared_cluster)) as client:
        job = client.get_job(int(result.id))
    assert job["state"] == "delayed" and job["run_at_ms"] == to_ms(run_after)
    result.refresh()
    assert result.status == READY and result.task.run_after == run_after
    _finished(result, worker)
    assert result.status == SUCCESSFUL and result.return_value == 2
    assert result.finished_at is not None and result.finished_at >= run_after


def test_unknown_ids_have_no_result(tasks: ModuleType, worker: Path) -> None:
    for result_id in ("999999999", "abc", "-1"):
        with pytest.raises(TaskResultDoesNotExist):
            tasks.add.get_result(result_id)


def test_bad_options_and_worker_arguments_are_refused_in_one_line(tasks: ModuleType) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        RaftqBackend("bad", {"OPTIONS": {"nodez": "x", "max_attempts": 0}})
    assert str(refused.value) == (
        "TASKS['bad']: unknown option 'nodez'; give OPTIONS 'nodes' or 'config' (one of them); "
        "OPTIONS 'max_attempts' must be a positive integer, got 0"
    )
    with pytest.raises(ImproperlyConfigured, match=r"^TASKS\['bad'\]: OPTIONS 'nodes' is empty$"):
        RaftqBackend("bad", {"OPTIONS": {"nodes": []}})
    with pytest.raises(CommandError, match="--queue nope: not in the backend's QUEUES"):
        call_command("raftq_worker", queue=["nope"])
    with pytest.raises(CommandError, match="--backend other: "):
        call_command("raftq_worker", backend="other")


async def test_async_enqueue_and_get_result_with_an_async_task(
    tasks: ModuleType, worker: Path
) -> None:
    result = await tasks.add_async.aenqueue(4, 5)
    try:
        deadline = time.monotonic() + 15
        while not result.is_finished and time.monotonic() < deadline:
            await result.arefresh()
        again = await tasks.add_async.aget_result(result.id)
    finally:
        await task_backends["default"].aclose()
    assert (result.status, result.return_value) == (SUCCESSFUL, 9), worker.read_text()
    assert (again.status, again.return_value) == (SUCCESSFUL, 9)


def test_priorities_order_the_tasks_and_sigterm_stops_the_worker(
    tasks: ModuleType, shared_cluster: Cluster, tmp_path: Path
) -> None:
    # Enqueued lowest first while no worker serves "reports"; one worker slot then runs them.
    results = [
        tasks.stamp.using(priority=p).enqueue(label)
        for label, p in (("low", -100), ("mid", 0), ("high", 100), ("higher", 81))
    ]
    with SyncClient(_nodes(shared_cluster)) as client:
        levels = [client.get_job(int(r.id))["priority"] for r in results]
    assert levels == [0, 4, 9, 9]
    log = tmp_path / "reports.log"
    proc = _worker(shared_cluster, log, "--queue", "reports", "--concurrency", "1")
    try:
        for r in results:
            _finished(r, log)
        ran = sorted((r.return_value[1], r.return_value[0]) for r in results)
        assert [label for _, label in ran] == ["high", "higher", "mid", "low"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
