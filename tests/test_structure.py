"""The shape of the package, read statically (``ast`` over ``raftq/**/*.py``; nothing imported).

- No import cycle among raftq's modules: module-level imports only (an import inside a function
  or under ``if TYPE_CHECKING:`` runs later or never, so it cannot make a module half-built).
- The layers below the package face (``raftq/server/``, ``raftq/core/``, ``raftq/raft/``) do
  not import the face ``raftq`` itself: its names are for users; the arrow runs downwards.
- PySyncObj is imported only under ``raftq/raft/pysyncobj/``: one place pinned to its internals.
- ``raftq/core`` imports only itself and the allow-list of ``tests/core/test_purity.py``.

Each failure names the file and line of every offending import. The positive controls at the
end run the same checks on small made-up packages, so a check that could not fail would show.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import raftq
from tests.core.test_purity import violations as core_purity_violations

PACKAGE_DIR = Path(raftq.__file__).parent
LAYERS_BELOW_FACE = ("raftq.server", "raftq.core", "raftq.raft")
PYSYNCOBJ_HOME = "raftq.raft.pysyncobj"


@dataclass(frozen=True)
class Import:
    """One imported module: where (``file:line``), what, and whether it runs at import time."""

    where: str
    module: str  # absolute; ``from X import Y`` gives X.Y when that is a module, else X
    names: tuple[str, ...]  # the names of a ``from`` import, () for ``import X``
    module_level: bool


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    body: list[ast.stmt], module_level: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in ``body``, with whether it runs when the module is imported."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, module_level
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, module_level)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from (
                (n, False) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)
            )
        else:  # try/if/with/class bodies run at import time
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    stmts = [c for c in children if isinstance(c, ast.stmt)]
                    handlers = [c for c in children if isinstance(c, ast.ExceptHandler)]
                    yield from _walk(stmts, module_level)
                    for h in handlers:
                        yield from _walk(h.body, module_level)


def imports_of(root: Path) -> dict[str, list[Import]]:
    """Module name -> its imports, for every module of the package at ``root``."""
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    out: dict[str, list[Import]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        rel = path.relative_to(root.parent).as_posix()
        found: list[Import] = []
        for node, module_level in _walk(tree.body, True):
            where = f"{rel}:{node.lineno}"
            if isinstance(node, ast.Import):
                found += [Import(where, a.name, (), module_level) for a in node.names]
                continue
            base = _absolute(node, name, is_package)
            for a in node.names:
                sub = f"{base}.{a.name}"
                target = sub if sub in files else base
                found.append(Import(where, target, (a.name,), module_level))
        out[name] = found
    return out


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    package = parts if is_package else parts[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


# -- the checks --------------------------------------------------------------------------------


def import_cycles(graph: dict[str, list[Import]]) -> list[str]:
    """Each cycle among the package's modules as ``a (file:line) -> b (...) -> ... -> a``."""
    edges = {
        m: {i.module: i.where for i in imps if i.module_level and i.module in graph}
        for m, imps in graph.items()
    }
    cycles: list[str] = []
    for component in _strongly_connected(edges):
        if len(component) == 1 and component[0] not in edges[component[0]]:
            continue
        cycles.append(_one_cycle(edges, set(component)))
    return cycles


def _strongly_connected(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _one_cycle(edges: dict[str, dict[str, str]], component: set[str]) -> str:
    """A shortest cycle through the component's first module (breadth-first), spelled out."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(edges[node]):
                if child not in component:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    path.reverse()
                    path.append(start)
                    return (
                        " -> ".join(f"{a} ({edges[a][b]})" for a, b in itertools.pairwise(path))
                        + f" -> {start}"
                    )
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def face_imports(
    graph: dict[str, list[Import]], package: str, layers: tuple[str, ...]
) -> list[str]:
    """Imports of the package face (``import raftq``, ``from raftq import name``) by modules
    of ``layers``; submodules named through the face (``from raftq import core``) are fine."""
    found: list[str] = []
    for m, imps in graph.items():
        if not any(m == layer or m.startswith(layer + ".") for layer in layers):
            continue
        for i in imps:
            if i.module == package:
                what = (
                    f"from {package} import {', '.join(i.names)}"
                    if i.names
                    else f"import {package}"
                )
                found.append(f"{i.where}: {what}")
    return found


def misplaced_imports(graph: dict[str, list[Import]], top: str, home: str) -> list[str]:
    """Imports of the library ``top`` from modules outside the package ``home``."""
    found = (
        f"{i.where}: imports {i.module}"
        for m, imps in graph.items()
        if not (m == home or m.startswith(home + "."))
        for i in imps
        if i.module == top or i.module.startswith(top + ".")
    )
    return list(dict.fromkeys(found))  # one line per statement, not per imported name


def core_impurities(root: Path, core: str) -> list[str]:
    """``test_purity``'s verdict on every module under ``core`` (subpackages included)."""
    core_dir = root.parent.joinpath(*core.split("."))
    found: list[str] = []
    for path in sorted(core_dir.rglob("*.py")):
        name = module_name(root, path)
        name = f"{name}.__init__" if path.name == "__init__.py" else name
        rel = path.relative_to(root.parent).as_posix()
        found += [f"{rel}:{v}" for v in core_purity_violations(path.read_text("utf-8"), name)]
    return found


# -- raftq -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return imports_of(PACKAGE_DIR)


def test_no_import_cycles(graph: dict[str, list[Import]]) -> None:
    cycles = import_cycles(graph)
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(cycles)


def test_lower_layers_do_not_import_the_package_face(graph: dict[str, list[Import]]) -> None:
    found = face_imports(graph, "raftq", LAYERS_BELOW_FACE)
    assert not found, (
        "raftq/server, raftq/core and raftq/raft must not import the package face raftq "
        "(import the defining module instead):\n" + "\n".join(found)
    )


def test_pysyncobj_is_imported_only_under_its_engine_package(
    graph: dict[str, list[Import]],
) -> None:
    found = misplaced_imports(graph, "pysyncobj", PYSYNCOBJ_HOME)
    assert not found, "pysyncobj may be imported only under raftq/raft/pysyncobj/:\n" + "\n".join(
        found
    )


def test_core_imports_only_itself_and_the_allow_list() -> None:
    found = core_impurities(PACKAGE_DIR, "raftq.core")
    assert not found, "raftq/core imports outside its allow-list:\n" + "\n".join(found)


# -- positive controls: each check catches what it must ----------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "import os\n\nfrom pkg.c import x\n",
            "c.py": "from . import a\nx = 1\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n",
            "e.py": "import pkg.d\n\ndef f():\n    from pkg import e\n",
        },
    )
    assert import_cycles(imports_of(root)) == [
        "pkg.a (pkg/a.py:1) -> pkg.b (pkg/b.py:3) -> pkg.c (pkg/c.py:1) -> pkg.a"
    ]


def test_a_self_import_and_a_try_block_import_count(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "s.py": "try:\n    import pkg.s\nexcept ImportError:\n    pass\n",
        },
    )
    assert import_cycles(imports_of(root)) == ["pkg.s (pkg/s.py:2) -> pkg.s"]


def test_face_imports_are_reported(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "__version__ = '1'\n",
            "core/__init__.py": "",
            "core/x.py": "from pkg import __version__\nfrom pkg import core\n",
            "server/__init__.py": "",
            "server/y.py": "def f():\n    import pkg\n",
            "server/z.py": "from .. import __version__ as v\n",
            "cli.py": "from pkg import __version__\n",
        },
    )
    assert face_imports(imports_of(root), "pkg", ("pkg.core", "pkg.server")) == [
        "pkg/core/x.py:1: from pkg import __version__",
        "pkg/server/y.py:2: import pkg",
        "pkg/server/z.py:1: from pkg import __version__",
    ]


def test_misplaced_library_imports_are_reported(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "raft/__init__.py": "",
            "raft/node.py": "from pysyncobj import SyncObj\n",
            "raft/pysyncobj/__init__.py": "import pysyncobj.journal\n",
            "cli.py": "def f():\n    import pysyncobj\n",
        },
    )
    assert misplaced_imports(imports_of(root), "pysyncobj", "pkg.raft.pysyncobj") == [
        "pkg/cli.py:2: imports pysyncobj",
        "pkg/raft/node.py:1: imports pysyncobj",
    ]


def test_core_impurities_are_reported(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/ok.py": "import heapq\nimport msgpack\n",
            "core/sub/__init__.py": "",
            "core/sub/bad.py": "import heapq\nimport time\n",
        },
    )
    assert core_impurities(root, "pkg.core") == ["pkg/core/sub/bad.py:2: import time"]
