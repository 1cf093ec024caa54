"""``raftq cluster up``: run every node of a config file as child processes on this machine.

Each node is ``python -m raftq serve --config FILE --node ID`` in its own process group, so a
Ctrl-C in the terminal reaches only the launcher, which then stops the nodes in order: SIGTERM
to each, up to ``stop_timeout_s`` for them to exit, then SIGKILL. A second Ctrl-C skips the
wait.

A node that exits while the cluster is meant to be running is reported, and the others keep
serving: a cluster of three goes on with two, which is the point of running one. The dead
node is started again after ``restart_dead_s`` seconds when that is set (``--restart-dead``),
or when a line ``r`` is typed on the launcher's terminal; a node that died ``_MAX_RESTARTS``
times in a row within ``_FLAPPING_S`` of its start, or that refused to start (exit status 2: a
config or usage error, which a restart does not cure) is left down. The launcher exits
non-zero at the end if a node died or failed to stop.

The nodes' stdout and stderr are merged and copied to ``out`` line by line, prefixed with the
node id (``n1 | ...``); the launcher's own lines carry the prefix ``cluster``.

If the launcher itself is killed with SIGKILL the nodes keep running (they are in their own
process groups); stop them with the pids it printed at start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final, TextIO

from raftq.cli.common import EXIT_USAGE
from raftq.config import ClusterConfig
from raftq.node.spawn import serve_argv, start_node

__all__ = ["CommandBuilder", "run_cluster", "serve_command"]

CommandBuilder = Callable[[str], Sequence[str]]
"""Node id -> the argv that runs that node."""

_LABEL: Final = "cluster"
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_FLAPPING_S: Final = 30.0  # a node that dies this soon after starting...
_MAX_RESTARTS: Final = 3  # ... this many times in a row is left down


def serve_command(
    config_path: Path, *, log_level: str | None = None, log_format: str | None = None
) -> CommandBuilder:
    """The default command: ``sys.executable -m raftq serve --config FILE --node ID``."""

    def build(node_id: str) -> list[str]:
        return serve_argv(config_path, node_id, log_level=log_level, log_format=log_format)

    return build


class _Output:
    """Serialises lines from several threads onto one stream, each with a padded prefix."""

    def __init__(self, out: TextIO, width: int) -> None:
        self._out = out
        self._width = width
        self._lock = threading.Lock()

    def line(self, label: str, text: str) -> None:
        with self._lock:
            self._out.write(f"{label:<{self._width}} | {text.rstrip()}\n")
            self._out.flush()


@dataclass(slots=True)
class _Child:
    node_id: str
    proc: subprocess.Popen[str]
    reader: threading.Thread = field(init=False)
    started: float = field(default_factory=time.monotonic)
    quick_deaths: int = 0  # deaths in a row, each within _FLAPPING_S of its start
    died_at: float | None = None  # reported dead, not restarted yet

    def start_copying(self, output: _Output) -> None:
        def copy() -> None:
            if self.proc.stdout is None:  # never: started with stdout=PIPE
                return
            with self.proc.stdout:
                for line in self.proc.stdout:
                    output.line(self.node_id, line)

        self.reader = threading.Thread(target=copy, name=f"raftq-out-{self.node_id}", daemon=True)
        self.reader.start()


class _Stop:
    """Set by the stop signals (or by a caller's event): 1 = stop gracefully, 2+ = stop now."""

    def __init__(self, external: threading.Event | None) -> None:
        self.event = external if external is not None else threading.Event()
        self.count = 0

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.event.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Install the signal handlers (main thread only; elsewhere the event is the only way)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self.on_signal) for s in _STOP_SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def run_cluster(
    config: ClusterConfig,
    command: CommandBuilder,
    *,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    stop_timeout_s: float = 10.0,
    poll_interval_s: float = 0.1,
    restart_dead_s: float | None = None,
    commands: TextIO | None = None,
) -> int:
    """Start every node of ``config`` with ``command(node_id)`` and supervise them.

    Blocks until SIGINT/SIGTERM/SIGHUP (when called from the main thread) or until ``stop``
    is set, then stops the nodes. A node that dies meanwhile is reported and the others keep
    running; it is started again ``restart_dead_s`` seconds later when that is set, or when
    ``commands`` (the terminal: ``sys.stdin`` when it is one) gives the line ``r``. When every
    node is down and none will be restarted, the launcher stops.

    Returns:
        0 when the cluster was stopped on request and every node ran until then and exited
        with status 0 in time; 1 when a node died, could not start, exited non-zero or had
        to be killed.
    """
    stream = out if out is not None else sys.stdout
    output = _Output(stream, max(len(_LABEL), *(len(n.id) for n in config.nodes)))
    stopper = _Stop(stop)
    children: list[_Child] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    failed = False

    def start(node_id: str) -> _Child | None:
        try:
            proc = start_node(
                list(command(node_id)),
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                process_group=True,  # terminal signals reach the launcher only
            )
        except OSError as e:
            output.line(_LABEL, f"cannot start node {node_id}: {e}")
            return None
        child = _Child(node_id, proc)
        child.start_copying(output)
        node = config.node(node_id)
        output.line(
            _LABEL, f"{node_id} api {config.api_url(node_id)} raft {node.raft} pid {proc.pid}"
        )
        return child

    with stopper.installed():
        try:
            where = f" of {config.source}" if config.source else ""
            output.line(_LABEL, f"starting {len(config.nodes)} nodes{where}")
            for node in config.nodes:
                if stopper.event.is_set():
                    break
                child = start(node.id)
                if child is None:
                    failed = True
                    break
                children.append(child)
            if not failed:
                output.line(_LABEL, "running; Ctrl-C stops every node")
                if commands is None and sys.stdin is not None and sys.stdin.isatty():
                    commands = sys.stdin
                supervisor = _Supervisor(output, start, restart_dead_s, _Restarts(commands))
                failed = supervisor.run(children, stopper, poll_interval_s)
        finally:
            failed = _stop_all(children, stopper, output, stop_timeout_s) or failed
    output.line(_LABEL, "stopped" if not failed else "stopped, with errors (see above)")
    return 1 if failed else 0


class _Restarts:
    """Restart requests typed on the launcher's terminal (a line ``r``), read by a thread."""

    def __init__(self, commands: TextIO | None) -> None:
        self.interactive = commands is not None
        self._asked = threading.Event()
        if commands is not None:
            threading.Thread(
                target=self._read, args=(commands,), name="raftq-launcher-input", daemon=True
            ).start()

    def _read(self, commands: TextIO) -> None:
        for line in commands:
            if line.strip().lower() in ("r", "restart"):
                self._asked.set()

    def asked(self) -> bool:
        """Whether a restart was typed since the last call."""
        if self._asked.is_set():
            self._asked.clear()
            return True
        return False


class _Supervisor:
    """Watches the running nodes until a stop request: reports a node that dies, leaves the
    others running, and starts it again when asked to (``--restart-dead`` or a typed ``r``)."""

    def __init__(
        self,
        output: _Output,
        start: Callable[[str], _Child | None],
        restart_dead_s: float | None,
        restarts: _Restarts,
    ) -> None:
        self._output = output
        self._start = start
        self._restart_dead_s = restart_dead_s
        self._restarts = restarts
        self._left_down: set[str] = set()  # dead and not to be restarted
        self.died = False

    def run(self, children: list[_Child], stopper: _Stop, poll_interval_s: float) -> bool:
        """Until a stop request (or every node down for good). True when a node died."""
        while not stopper.event.is_set():
            now = time.monotonic()
            for child in children:
                code = child.proc.poll()
                if code is not None and child.died_at is None:
                    self._report_death(child, code, now)
            typed = self._restarts.asked()
            for i, child in enumerate(children):
                if self._restart_now(child, now, typed):
                    fresh = self._start(child.node_id)
                    if fresh is None:
                        self._left_down.add(child.node_id)
                        continue
                    fresh.quick_deaths = child.quick_deaths
                    children[i] = fresh
            if all(self._down_for_good(c) for c in children):
                self._output.line(_LABEL, "every node is down")
                return True
            stopper.event.wait(poll_interval_s)
        self._output.line(_LABEL, "stopping every node (Ctrl-C again to kill them now)")
        return self.died

    def _restart_now(self, child: _Child, now: float, typed: bool) -> bool:
        if child.died_at is None or child.node_id in self._left_down:
            return False
        delay = self._restart_dead_s
        return typed or (delay is not None and now - child.died_at >= delay)

    def _down_for_good(self, child: _Child) -> bool:
        may_restart = self._restarts.interactive or self._restart_dead_s is not None
        return child.node_id in self._left_down or (child.died_at is not None and not may_restart)

    def _report_death(self, child: _Child, code: int, now: float) -> None:
        """One line for a node that died, saying what happens next."""
        self.died = True
        child.died_at = now
        quick = now - child.started < _FLAPPING_S
        child.quick_deaths = child.quick_deaths + 1 if quick else 1
        what = (
            f"node {child.node_id} exited unexpectedly ({_describe(code)}); the others keep running"
        )
        if code == EXIT_USAGE:  # it refused its config or arguments: a restart cannot help
            self._left_down.add(child.node_id)
            why = "it refused to start: fix the cause, then start the launcher again"
        elif child.quick_deaths >= _MAX_RESTARTS:
            self._left_down.add(child.node_id)
            why = (
                f"it died {child.quick_deaths} times within {_FLAPPING_S:.0f} s of starting: "
                "left down (see its last lines above)"
            )
        elif self._restart_dead_s is not None:
            why = f"restarting it in {self._restart_dead_s:g} s"
        elif self._restarts.interactive:
            why = "type r and Enter to restart it"
        else:
            why = "--restart-dead restarts dead nodes"
        self._output.line(_LABEL, f"{what}; {why}")


def _stop_all(
    children: Sequence[_Child], stopper: _Stop, output: _Output, stop_timeout_s: float
) -> bool:
    """SIGTERM, wait, SIGKILL. True when a node had to be killed or exited non-zero."""
    already_exited = {c.node_id for c in children if c.proc.poll() is not None}
    for child in children:
        if child.proc.poll() is None:
            child.proc.terminate()
    signals_seen = stopper.count
    deadline = time.monotonic() + stop_timeout_s
    while any(c.proc.poll() is None for c in children):
        if time.monotonic() >= deadline or stopper.count > signals_seen:
            break
        time.sleep(0.05)
    failed = False
    for child in children:
        if child.proc.poll() is None:
            output.line(_LABEL, f"node {child.node_id} did not stop in time: killing it")
            child.proc.kill()
            child.proc.wait()
            failed = True
        elif child.node_id not in already_exited and child.proc.returncode != 0:
            output.line(_LABEL, f"node {child.node_id} {_describe(child.proc.returncode)}")
            failed = True
    for child in children:
        child.reader.join(timeout=2.0)
    return failed


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
