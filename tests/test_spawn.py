"""``raftq.node.spawn``: the one helper that builds and starts a node's command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftq.node.spawn import serve_argv, start_node

# Reports what a started node would see: its stdin, its process group and session.
PROBE = r"""
import os, sys
print("stdin", repr(sys.stdin.read()), flush=True)
print("stderr here", file=sys.stderr, flush=True)
print("pgid", os.getpgid(0) == os.getpid(), "sid", os.getsid(0) == os.getpid(), flush=True)
print("cwd", os.getcwd(), "env", os.environ.get("RAFTQ_SPAWN_TEST"), flush=True)
"""


def test_serve_argv_default_is_python_m_raftq_serve() -> None:
    argv = serve_argv(Path("/x/c.toml"), "n1")
    assert argv == [sys.executable, "-m", "raftq", "serve", "--config", "/x/c.toml", "--node", "n1"]


def test_serve_argv_places_prefix_program_log_flags_and_extra() -> None:
    argv = serve_argv(
        "c.toml",
        "n2",
        log_level="info",
        log_format="json",
        program=("py", "-c", "BOOT", "hold"),
        prefix=("ip", "netns", "exec", "ns2"),
        extra=("--x", "1"),
    )
    assert argv == [
        *("ip", "netns", "exec", "ns2", "py", "-c", "BOOT", "hold"),
        *("serve", "--config", "c.toml", "--node", "n2"),
        *("--log-level", "info", "--log-format", "json", "--x", "1"),
    ]
    assert serve_argv("c.toml", "n3", python="/opt/py")[:3] == ["/opt/py", "-m", "raftq"]


@pytest.mark.integration
def test_start_node_merges_output_closes_stdin_and_passes_env_and_cwd(tmp_path: Path) -> None:
    log = tmp_path / "n1.log"
    env = {**os.environ, "RAFTQ_SPAWN_TEST": "yes"}
    with log.open("ab") as out:
        proc = start_node([sys.executable, "-c", PROBE], stdout=out, env=env, cwd=tmp_path)
    assert proc.wait(30) == 0
    assert log.read_text().splitlines() == [
        "stdin ''",  # /dev/null: a node never holds the caller's terminal
        "stderr here",  # merged into the one log, in order
        "pgid False sid False",
        f"cwd {tmp_path} env yes",
    ]


@pytest.mark.integration
def test_start_node_own_process_group_or_session() -> None:
    group = start_node([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, process_group=True)
    session = start_node([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, text=True,
                         new_session=True)  # fmt: skip
    group_out, _ = group.communicate(timeout=30)
    session_out, _ = session.communicate(timeout=30)
    assert b"pgid True sid False\n" in group_out
    assert "pgid True sid True\n" in session_out  # text mode: str lines


@pytest.mark.integration
def test_start_node_that_cannot_start_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        start_node([str(tmp_path / "no-such-program")], stdout=subprocess.DEVNULL)
