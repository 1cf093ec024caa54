"""Start a node as a process: the one place that spells ``python -m raftq serve``.

``serve_argv`` builds the command line of one node; ``start_node`` starts it. The launcher
(``raftq cluster up``), the benchmark's throwaway cluster, the test clusters and the
Jepsen-style harness all start their nodes through these two, so a change to how a node is
started (a flag, the interpreter, the environment) is made once.

What every started node gets, and why:
- stdin is ``/dev/null``: a node never reads it, and must not hold the caller's terminal;
- stderr goes where stdout goes: a node's log is one stream, in the order it was written;
- the environment is the caller's unless ``env`` is given (then exactly ``env``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any, Literal, overload

__all__ = ["serve_argv", "start_node"]

Output = int | IO[Any] | None
"""Where a node's output goes: a file object, ``subprocess.PIPE``/``DEVNULL``, or ``None``
(the caller's own stdout)."""


def serve_argv(
    config_path: str | os.PathLike[str],
    node_id: str,
    *,
    log_level: str | None = None,
    log_format: str | None = None,
    python: str = sys.executable,
    program: Sequence[str] | None = None,
    prefix: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """The argv that runs node ``node_id`` of the config file ``config_path``.

    ``[*prefix, *program, "serve", "--config", FILE, "--node", ID, --log-level..., *extra]``.

    Args:
        log_level, log_format: passed as ``--log-level`` / ``--log-format`` when given.
        python: the interpreter of the default ``program`` (``python -m raftq``).
        program: the argv that runs raftq's command line, in place of ``python -m raftq``
            (e.g. a ``python -c`` boot script that patches something first, then calls
            ``raftq.cli.main.main``).
        prefix: a wrapper the node runs under, e.g. ``("ip", "netns", "exec", NS)`` or
            ``("strace", "-f", ...)``.
        extra: more ``serve`` arguments, appended last.
    """
    head = [python, "-m", "raftq"] if program is None else list(program)
    argv = [*prefix, *head, "serve", "--config", os.fspath(config_path), "--node", node_id]
    if log_level is not None:
        argv += ["--log-level", log_level]
    if log_format is not None:
        argv += ["--log-format", log_format]
    return [*argv, *extra]


@overload
def start_node(
    argv: Sequence[str],
    *,
    stdout: Output,
    text: Literal[True],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    process_group: bool = False,
    new_session: bool = False,
) -> subprocess.Popen[str]: ...


@overload
def start_node(
    argv: Sequence[str],
    *,
    stdout: Output,
    text: Literal[False] = False,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    process_group: bool = False,
    new_session: bool = False,
) -> subprocess.Popen[bytes]: ...


def start_node(
    argv: Sequence[str],
    *,
    stdout: Output,
    text: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    process_group: bool = False,
    new_session: bool = False,
) -> subprocess.Popen[str] | subprocess.Popen[bytes]:
    """Start ``argv`` (usually ``serve_argv(...)``) as a node process; returns at once.

    Args:
        stdout: where the node's stdout and stderr go (see ``Output``).
        text: read a piped stdout as text (undecodable bytes replaced), else bytes.
        env: the node's whole environment (``None``: this process's).
        cwd: the node's working directory (``None``: this process's).
        process_group: run the node in its own process group, so the signals of the
            caller's terminal (Ctrl-C) reach the caller only.
        new_session: run the node (and what ``argv``'s prefix starts) in a new session:
            one process group to signal as a whole.

    Raises:
        OSError: the program cannot be started (not found, not executable...).
    """
    args = list(argv)
    environ = None if env is None else dict(env)
    group = 0 if process_group else None
    if text:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=environ,
            cwd=cwd,
            start_new_session=new_session,
            process_group=group,
        )
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env=environ,
        cwd=cwd,
        start_new_session=new_session,
        process_group=group,
    )
