"""The repository stands alone: no tracked file points at something outside it (a sibling
directory of the clone, or an absolute path of the machine it was written on). A user who
clones the repository has neither."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Written in two pieces so that this file does not name them itself.
OUTSIDE = ("../" + "shared", "/" + "work/")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = []
    for name in filter(None, out.split("\0")):
        path = ROOT / name
        if path.is_file() and b"\0" not in path.read_bytes()[:8192]:  # binary files apart
            files.append(path)
    return files


@pytest.mark.integration
def test_no_tracked_file_points_outside_the_repository() -> None:
    files = _tracked_text_files()
    assert len(files) > 100  # the listing worked: the whole tree, not an empty one
    hits = []
    for path in files:
        text = path.read_text(errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            hits += [
                f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}" for s in OUTSIDE if s in line
            ]
    assert hits == [], "outside references:\n" + "\n".join(hits)
