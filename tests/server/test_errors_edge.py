"""raftq's errors: one tree under ``RaftqError``, raised below HTTP, mapped to HTTP in one
place (``raftq.server.errors.api_error``); ``ApiError`` stays at the HTTP edge."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import raftq
from raftq.errors import (
    AuthError,
    NoLeader,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    RaftqError,
    Rejected,
)
from raftq.server.errors import ApiError, api_error

PACKAGE = Path(raftq.__file__).parent


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(raftq.__path__, "raftq.")]


def test_every_exception_raftq_defines_derives_from_raftq_error() -> None:
    outside: list[str] = []
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if not (inspect.isclass(obj) and issubclass(obj, BaseException)):
                continue
            if obj.__module__ != name or obj is ApiError:  # ApiError: the HTTP edge's own
                continue
            if obj.__name__.startswith("_"):  # a module's private signal, caught inside it
                continue
            if not issubclass(obj, RaftqError):
                outside.append(f"{name}.{obj.__name__}")
    assert outside == []


def _imported(path: Path) -> set[str]:
    """``module.name`` of every ``from module import name`` in ``path`` (and bare modules)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_the_service_layer_knows_nothing_of_http() -> None:
    for path in sorted((PACKAGE / "service").glob("*.py")):
        server = {n for n in _imported(path) if n.startswith(("raftq.server", "aiohttp"))}
        assert server == set(), path.name


def test_the_embedded_node_uses_the_server_only_to_mount_it() -> None:
    server = {n for n in _imported(PACKAGE / "node" / "embedded.py") if "raftq.server" in n}
    assert server <= {
        "raftq.server.ServerSettings",
        "raftq.server.add_routes",
        "raftq.server.application",  # Node.serve: the API on a listener of the node's own
        "raftq.server.testfaults",
        "raftq.server.auth.security_from_config",
        "raftq.server.clock_probe.PeerClocks",
    }


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Rejected("stale_token", "stale", 409), 409, "stale_token"),
        (Rejected("invalid", "priority: must be in 0..9, got 10", 400), 400, "invalid"),
        (AuthError("who are you"), 401, "unauthorized"),
        (AuthError("not your queue", 403), 403, "forbidden"),
        (NotLeader("n2"), 503, "not_leader"),
        (NotLeader(None), 503, "no_leader"),
        (NoLeader("no leader"), 503, "no_leader"),
        (Overloaded("full"), 503, "overloaded"),
        (OutcomeUnknown("lost"), 503, "outcome_unknown"),
    ],
)
def test_one_mapping_of_errors_to_http(error: RaftqError, status: int, code: str) -> None:
    answer = api_error(error, retry_after_s=2)
    assert answer is not None
    assert (answer.status, answer.code, answer.message) == (status, code, str(error))
    assert answer.retry_after_s == (2 if status == 503 else None)
