"""The data-driven core scenarios: every ``testdata/*.txt`` script replayed on a fresh Machine.

Format and commands: ``tests/core/scenarios.py``. A case whose output differs fails with a
unified diff naming the script line of the command; all cases of a script run, so one failure
shows every difference. ``RAFTQ_REWRITE=1 pytest tests/core/test_scenarios.py`` writes the
actual outputs into the scripts instead (then read ``git diff`` before committing).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.core.scenarios import Case, ScriptError, Session, parse, render

TESTDATA = Path(__file__).parent / "testdata"
REWRITE = os.environ.get("RAFTQ_REWRITE") == "1"


def _scripts() -> list[Path]:
    scripts = sorted(TESTDATA.glob("*.txt"))
    assert scripts, f"no scenario scripts in {TESTDATA.name}/"
    return scripts


def run_script(path: Path, *, rewrite: bool = False) -> list[str]:
    """Replay ``path``; the differences found (each a message with a diff), or, with
    ``rewrite``, none: the script is written back with the actual outputs."""
    rel = f"{path.parent.name}/{path.name}"
    items, cases = parse(path.read_text(encoding="utf-8"), rel)
    session = Session()
    outputs: dict[int, list[str]] = {}
    problems: list[str] = []
    for case in cases:
        try:
            outputs[case.line] = actual = session.run(case)
        except ScriptError as e:
            raise ScriptError(f"{rel}:{case.line}: {e}") from None
        session.m.check_invariants()  # every step leaves a consistent state, whatever it printed
        if actual != case.expected:
            problems.append(_difference(rel, case, actual))
    if rewrite:
        path.write_text(render(items, outputs), encoding="utf-8")
        return []
    return problems


def _difference(rel: str, case: Case, actual: list[str]) -> str:
    diff = difflib.unified_diff(case.expected, actual, "expected", "actual", lineterm="")
    return f"{rel}:{case.line}: {case.command}\n" + "\n".join(diff)


@pytest.mark.parametrize("path", _scripts(), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    problems = run_script(path, rewrite=REWRITE)
    assert not problems, "\n\n".join(problems)


# -- the runner itself ----------------------------------------------------------------------


def test_runner_reports_a_changed_expected_line(tmp_path: Path) -> None:
    """Positive control: a script whose expected output is wrong fails, naming the line."""
    script = tmp_path / "bad.txt"
    script.write_text(
        "# comment\n"
        "enqueue now=1000 queue=q payload=a priority=3\n"
        "----\n"
        "enqueued 1\n"
        "job 1 q queued p3 ready=1000 attempts=0/5\n"
        "\n"
        "claim now=1000 queues=q\n"
        "----\n"
        "claimed nothing\n"
        "job 1 q queued p3 ready=1000 attempts=0/5\n",
        encoding="utf-8",
    )
    problems = run_script(script)
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path.name}/bad.txt:7: claim now=1000 queues=q\n")
    assert "-claimed nothing" in problems[0]
    assert "+claimed job 1 q p3 attempt=1 token=1 expires=31000 payload=a" in problems[0]


def test_rewrite_fills_in_outputs_and_keeps_comments(tmp_path: Path) -> None:
    script = tmp_path / "new.txt"
    script.write_text("# a comment\n\ntick now=5\n----\nwhatever\n\nstate\n----\n", "utf-8")
    assert run_script(script, rewrite=True) == []
    assert script.read_text("utf-8") == (
        "# a comment\n\ntick now=5\n----\nticked clock=5\n\nstate\n----\n"
    )
    assert run_script(script) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tick now=5\nticked\n", "x.txt:1: a command line must be followed by '----'"),
        ("frob now=5\n----\n", "x.txt:1: unknown command 'frob'"),
        ("tick now=5 color=red\n----\n", "x.txt:1: unknown argument(s): color"),
        ("tick now=soon\n----\n", "x.txt:1: now= must be an integer, got 'soon'"),
        ("ack now=5 job=1\n----\n", "x.txt:1: missing argument token="),
        ("tick now\n----\n", "x.txt:1: bad argument 'now'"),
    ],
)
def test_bad_scripts_name_the_line_and_cause(tmp_path: Path, text: str, message: str) -> None:
    script = tmp_path / "x.txt"
    script.write_text(text, encoding="utf-8")
    with pytest.raises(ScriptError) as e:
        run_script(script)
    assert str(e.value).startswith(message.replace("x.txt", f"{tmp_path.name}/x.txt"))
