"""`raftq worker` in-process: usage and import errors exit 2 with one line; a worker whose
claims the cluster refuses exits 1; flags override a Worker object's settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from raftq import Worker
from raftq.cli.common import UsageError
from raftq.cli.main import main
from raftq.cli.worker import _build, load_target
from raftq.client import ClaimedJob
from raftq.errors import Rejected


class _Refusing:
    async def claim(self, queues: Any, **kw: Any) -> list[ClaimedJob]:
        raise Rejected("forbidden", "this token may not claim from q", 403)


refused = Worker(client=_Refusing())
refused.add_handler("q", lambda job: None)


class _LoopOfClaims(_Refusing):
    """Refuses too, after noting the event loop its claim ran on."""

    def __init__(self) -> None:
        self.loops: list[str] = []

    async def claim(self, queues: Any, **kw: Any) -> list[ClaimedJob]:
        self.loops.append(type(asyncio.get_running_loop()).__module__)
        return await super().claim(queues, **kw)


on_loop = _LoopOfClaims()
looped = Worker(client=on_loop)
looped.add_handler("q", lambda job: None)
empty = Worker()
configurable = Worker(concurrency=1)
configurable.add_handler("a", lambda job: None)
configurable.add_handler("b", lambda job: None)


def handler(job: Any) -> None: ...


# `main` installs a stderr handler on the root logger: taken away after each test.
pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "expected MODULE:ATTR"),
        (["no_such_module_xyz:f", "-q", "a"], "cannot import 'no_such_module_xyz': Module"),
        (["json:nope", "-q", "a"], "'json' has no attribute 'nope'"),
        (["json:__name__", "-q", "a"], "is a str, not a handler function, a raftq.Worker or"),
        (["tests.worker.test_cli_worker:handler"], "give its queue(s) with --queue"),
        (["tests.worker.test_cli_worker:handler", "-q", "bad name"], "--queue: queue names"),
        (["tests.worker.test_cli_worker:refused", "-q", "other"], "no handler for it (q)"),
        (["tests.worker.test_cli_worker:empty"], "has no handler"),
        (["tests.worker.test_cli_worker:handler", "-q", "a", "--lease-ms", "5"], "lease_ms"),
        (["tests.worker.test_cli_worker:handler", "-q", "a", "-c", "0"], "must be at least 1"),
    ],
)
def test_usage_and_import_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["worker", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raftq: error: ") and message in err, err
    assert "Traceback" not in err


def test_a_refused_worker_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "tests.worker.test_cli_worker:refused"]) == 1
    err = capsys.readouterr().err
    assert "raftq: error: refused (forbidden): this token may not claim from q" in err


def test_a_worker_runs_on_uvloop(capsys: pytest.CaptureFixture[str]) -> None:
    """``raftq worker`` and ``Worker.run_forever`` run the worker on uvloop (a dependency):
    they ran on the standard loop, which spends more CPU per job, while the benchmark measured
    the worker on uvloop. ``raftq.runloop``."""
    on_loop.loops.clear()
    policy = asyncio.get_event_loop_policy()
    assert main(["worker", "tests.worker.test_cli_worker:looped"]) == 1
    with pytest.raises(Rejected):
        looped.run_forever()
    assert len(on_loop.loops) == 2 and all(m.startswith("uvloop") for m in on_loop.loops)
    assert asyncio.get_event_loop_policy() is policy  # the process's policy is left alone


def test_flags_override_a_worker_objects_settings() -> None:
    target = load_target("tests.worker.test_cli_worker:configurable")
    args = _parse(
        "tests.worker.test_cli_worker:configurable", "-q", "b", "-c", "3", "--lease-ms", "900",
        "--job-timeout-ms", "50", "--retry-in-ms", "0", "--grace-ms", "7", "--wait-ms", "5",
        "--name", "w9", "--nodes", "127.0.0.1:9", "--prefetch", "20",
    )  # fmt: skip
    worker, queues = _build(target, args)
    assert worker is configurable and queues == ["b"]
    o = worker.options
    assert (o.concurrency, o.lease_ms, o.job_timeout_ms, o.retry_in_ms) == (3, 900, 50, 0)
    assert (o.grace_ms, o.wait_ms, o.name, o.prefetch) == (7, 5, "w9", 20)
    assert worker.nodes == ["127.0.0.1:9"]


def test_a_function_becomes_the_handler_of_each_queue() -> None:
    args = _parse("tests.worker.test_cli_worker:handler", "-q", "a", "-q", "b")
    worker, queues = _build(load_target(args.target), args)
    assert worker.queues == ("a", "b") and queues == ["a", "b"]


def _parse(*argv: str) -> Any:
    from raftq.cli.main import build_parser  # noqa: PLC0415

    return build_parser().parse_args(["worker", *argv])


def test_prefetch_flag_takes_auto_or_a_count() -> None:
    target = load_target("tests.worker.test_cli_worker:configurable")
    args = _parse("tests.worker.test_cli_worker:configurable", "--prefetch", "auto")
    worker, _ = _build(target, args)
    assert worker.options.prefetch == "auto"
    with pytest.raises(UsageError, match=r"--prefetch: 'lots': expected auto or a count of jobs"):
        _parse("tests.worker.test_cli_worker:configurable", "--prefetch", "lots")
