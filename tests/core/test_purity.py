"""raftq/core is pure: it imports only from an allow-list (DESIGN.md §1).

No clock, randomness, I/O, threads, logging, pysyncobj or aiohttp: every replica must compute
the same state from the same log, and an import is where such a dependency starts. The check
reads the source with ``ast`` (imports anywhere: module level, functions, TYPE_CHECKING
blocks), so it needs no import of the code it checks; positive controls below prove that it
catches what it must.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import raftq.core

CORE = Path(raftq.core.__file__).parent
PACKAGE = "raftq.core"

# Pure and deterministic standard modules, and msgpack (the wire format).
ALLOWED = frozenset(
    {
        "__future__",
        "collections",
        "collections.abc",
        "dataclasses",
        "enum",
        "typing",
        "heapq",
        "bisect",  # pure: tally.py buckets latencies
        "itertools",  # islice in snapshot.py: pure iteration helpers
        "hashlib",
        "io",
        "re",
        "msgpack",
    }
)
# Builtins that reach outside the process or import behind the checker's back.
FORBIDDEN_CALLS = frozenset(
    {"__import__", "open", "input", "print", "eval", "exec", "compile", "breakpoint"}
)


def _allowed(module: str) -> bool:
    return module in ALLOWED or module == PACKAGE or module.startswith(PACKAGE + ".")


def _resolve(node: ast.ImportFrom, module_name: str) -> str:
    """The absolute module of ``from ... import`` in module ``module_name``."""
    if node.level == 0:
        return node.module or ""
    parts = module_name.split(".")[: -node.level]  # the package the dots refer to
    return ".".join([*parts, node.module] if node.module else parts)


def violations(source: str, module_name: str = "raftq.core.example") -> list[str]:
    """Every import outside the allow-list and every forbidden builtin call in ``source``,
    each as ``line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            at = f"{node.lineno}: "
            found += [f"{at}import {a.name}" for a in node.names if not _allowed(a.name)]
        elif isinstance(node, ast.ImportFrom):
            at = f"{node.lineno}: "
            module = _resolve(node, module_name)
            if module == "raftq":  # ``from raftq import core`` is fine, anything else is not
                found += [f"{at}from raftq import {a.name}" for a in node.names if a.name != "core"]
            elif not _allowed(module):
                found.append(f"{at}from {module} import ...")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(f"{node.lineno}: call {node.func.id}()")
    return found


def _core_modules() -> list[Path]:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 12, "raftq/core moved?"
    return files


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    module = f"{PACKAGE}.{path.stem}" if path.stem != "__init__" else PACKAGE + ".__init__"
    assert violations(path.read_text(encoding="utf-8"), module) == []


def test_core_has_no_subpackages_that_escape_the_check() -> None:
    assert [p.name for p in CORE.iterdir() if p.is_dir() and p.name != "__pycache__"] == []


# -- positive controls: the checker catches what it must ------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import random",
        "import os",
        "import os.path",
        "import socket",
        "import threading",
        "import asyncio",
        "import logging",
        "import uuid",
        "import datetime",
        "import pysyncobj",
        "import aiohttp",
        "import msgpack, time",
        "import random as r",
        "from time import monotonic",
        "from datetime import datetime",
        "from os import environ",
        "from pysyncobj import SyncObj",
        "from aiohttp import web",
        "from raftq.server import app",
        "from raftq import errors",
        "from raftq import server",
        "import raftq.raft.node",
        "from .. import errors",
        "from ..server import app",
        "def f():\n    import time\n    return time.time()",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio",
        "try:\n    import uvloop\nexcept ImportError:\n    pass",
        "x = __import__('time')",
        "open('/tmp/x')",
        "print('hello')",
        "eval('1')",
    ],
)
def test_checker_catches_forbidden_code(source: str) -> None:
    assert violations(source) != [], source


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import heapq\nimport hashlib\nimport io\nimport re\nimport msgpack",
        "from collections import deque\nfrom collections.abc import Callable",
        "from dataclasses import dataclass\nfrom enum import StrEnum",
        "from typing import IO, TYPE_CHECKING, Any",
        "from raftq.core.job import Job",
        "import raftq.core.limits",
        "from . import ops",
        "from .ops import advance_queue",
        "from raftq import core",
    ],
)
def test_checker_accepts_allowed_code(source: str) -> None:
    assert violations(source) == [], source
