"""``raftq cluster up``: run every node of a config file as child processes on this machine.

Each node is ``python -m raftq serve --config FILE --node ID`` in its own process group, so a
Ctrl-C in the terminal reaches only the launcher, which then stops the nodes in order: SIGTERM
to each, up to ``stop_timeout_s`` for them to exit, then SIGKILL. A second Ctrl-C skips the
wait. A node that exits while the cluster is meant to be running stops the others and makes
the launcher exit non-zero.

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

from raftq.config import ClusterConfig
from raftq.node.spawn import serve_argv, start_node

__all__ = ["CommandBuilder", "run_cluster", "serve_command"]

CommandBuilder = Callable[[str], Sequence[str]]
"""Node id -> the argv that runs that node."""

_LABEL: Final = "cluster"
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
) -> int:
    """Start every node of ``config`` with ``command(node_id)`` and supervise them.

    Blocks until SIGINT/SIGTERM/SIGHUP (when called from the main thread), until ``stop`` is
    set, or until a node exits; then stops the remaining nodes.

    Returns:
        0 when the cluster was stopped on request and every node exited with status 0 in
        time; 1 when a node died unexpectedly, could not start, exited non-zero or had to
        be killed.
    """
    stream = out if out is not None else sys.stdout
    output = _Output(stream, max(len(_LABEL), *(len(n.id) for n in config.nodes)))
    stopper = _Stop(stop)
    children: list[_Child] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    failed = False
    with stopper.installed():
        try:
            where = f" of {config.source}" if config.source else ""
            output.line(_LABEL, f"starting {len(config.nodes)} nodes{where}")
            for node in config.nodes:
                if stopper.event.is_set():
                    break
                argv = list(command(node.id))
                try:
                    proc = start_node(
                        argv,
                        stdout=subprocess.PIPE,
                        text=True,
                        env=env,
                        process_group=True,  # terminal signals reach the launcher only
                    )
                except OSError as e:
                    output.line(_LABEL, f"cannot start node {node.id}: {e}")
                    failed = True
                    break
                child = _Child(node.id, proc)
                child.start_copying(output)
                children.append(child)
                output.line(
                    _LABEL,
                    f"{node.id} api {config.api_url(node.id)} raft {node.raft} pid {proc.pid}",
                )
            if not failed:
                output.line(_LABEL, "running; Ctrl-C stops every node")
                failed = _supervise(children, stopper, output, poll_interval_s)
        finally:
            failed = _stop_all(children, stopper, output, stop_timeout_s) or failed
    output.line(_LABEL, "stopped" if not failed else "stopped, with errors (see above)")
    return 1 if failed else 0


def _supervise(
    children: Sequence[_Child], stopper: _Stop, output: _Output, poll_interval_s: float
) -> bool:
    """Wait for a stop request (False) or an unexpected exit (True)."""
    while not stopper.event.is_set():
        for child in children:
            code = child.proc.poll()
            if code is not None:
                output.line(_LABEL, f"node {child.node_id} exited unexpectedly ({_describe(code)})")
                return True
        stopper.event.wait(poll_interval_s)
    output.line(_LABEL, "stopping every node (Ctrl-C again to kill them now)")
    return False


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
