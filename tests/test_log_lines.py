"""docs/operations.md "What the log lines mean" lists every CRITICAL and WARNING line raftq
logs, and nothing else (issue 20 item 10): each ``<logger>.critical(...)`` /
``<logger>.warning(...)`` call under raftq/ is one row ``| LEVEL | `format` | `file` | ...``,
with the format string exactly as the source writes it. A new line without a row, or a row
whose line is gone or changed, fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## What the log lines mean"
_LEVELS = {"critical": "CRITICAL", "warning": "WARNING"}
# A table row: | LEVEL | `line` or ``line`` | `where` | ... (the code span may hold backticks
# when it is delimited by two).
_ROW = re.compile(r"^\| (CRITICAL|WARNING) \| (``?)(.+?)\2 \| `([^`]+)` \|")


def logged_lines() -> set[tuple[str, str, str]]:
    """``(LEVEL, format, file)`` of every critical/warning call in raftq/ (a format that is not
    a string literal is recorded as ``<expression>``)."""
    found = set()
    for path in sorted((ROOT / "raftq").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _LEVELS
                and node.args
            ):
                continue
            first = node.args[0]
            is_text = isinstance(first, ast.Constant) and isinstance(first.value, str)
            fmt = first.value if is_text else "<expression>"  # type: ignore[union-attr]
            found.add((_LEVELS[node.func.attr], fmt, path.relative_to(ROOT).as_posix()))
    return found


def documented_lines() -> set[tuple[str, str, str]]:
    text = (ROOT / "docs" / "operations.md").read_text()
    assert SECTION in text, f"docs/operations.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in section.splitlines():
        m = _ROW.match(line)
        if m is not None:
            rows.add((m.group(1), m.group(3), m.group(4)))
    return rows


def test_every_critical_and_warning_line_is_documented() -> None:
    logged, documented = logged_lines(), documented_lines()
    assert ("CRITICAL", "%s", "raftq/raft/fail_stop.py") in logged  # the scan finds them
    missing = sorted(logged - documented)
    assert not missing, (
        "log lines without a row in docs/operations.md, 'What the log lines mean' "
        "(| LEVEL | `format` | `file` | what it means | what to do |):\n"
        + "\n".join(f"  {level} {fmt!r} in {where}" for level, fmt, where in missing)
    )
    stale = sorted(documented - logged)
    assert not stale, "rows for log lines that raftq no longer logs:\n" + "\n".join(
        f"  {level} {fmt!r} in {where}" for level, fmt, where in stale
    )
