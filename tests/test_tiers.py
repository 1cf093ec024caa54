"""The test tiers of ``tests/conftest.py``: ``make check`` runs what is not marked heavy.

Both tests run pytest in a child process (so they are ``integration`` themselves): one shows
that no test of ``tests/integration/`` or of the chaos runs is left in the fast tier, the other
that the fast tier's guard fails an unmarked test that starts a process, and only that one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAST = "not integration and not chaos and not slow"


def _pytest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.integration
def test_no_process_or_chaos_test_is_in_the_fast_tier() -> None:
    paths = ["tests/integration", "tests/chaos/test_chaos.py"]
    heavy = _pytest("--collect-only", "-q", *paths)
    assert heavy.returncode == 0 and " tests collected" in heavy.stdout, heavy.stdout[-2000:]
    fast = _pytest("--collect-only", "-q", "-m", FAST, *paths)
    # Exit 5: everything collected was deselected.
    assert fast.returncode == 5, fast.stdout[-2000:]
    assert "::" not in fast.stdout, fast.stdout[-2000:]


@pytest.mark.integration
def test_the_fast_tier_fails_an_unmarked_test_that_starts_a_process(tmp_path: Path) -> None:
    module = tmp_path / "test_probe.py"
    module.write_text(
        "import subprocess, sys\n"
        "import pytest\n\n"
        "def test_unmarked_starts_one():\n"
        "    subprocess.run([sys.executable, '-c', 'pass'], check=True)\n\n"
        "@pytest.mark.integration\n"
        "def test_marked_starts_one():\n"
        "    subprocess.run([sys.executable, '-c', 'pass'], check=True)\n\n"
        "def test_in_process():\n"
        "    assert sum([1, 2]) == 3\n",
        encoding="utf-8",
    )
    # tests/conftest.py as a plugin: the probe module lives outside tests/.
    common = ("-p", "tests.conftest", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"))
    guarded = _pytest(*common, "-v", str(module), env={"RAFTQ_FAST_TIER": "1"})
    out = guarded.stdout
    assert guarded.returncode == 1, out[-3000:]
    assert "::test_unmarked_starts_one FAILED" in out, out[-3000:]
    assert "::test_marked_starts_one PASSED" in out, out[-3000:]
    assert "::test_in_process PASSED" in out, out[-3000:]
    assert "starts a process" in out and "is not marked" in out, out[-3000:]
    unguarded = _pytest(*common, "-q", str(module), env={"RAFTQ_FAST_TIER": ""})
    assert unguarded.returncode == 0, unguarded.stdout[-3000:]
