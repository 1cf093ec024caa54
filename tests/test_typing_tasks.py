"""mypy --strict sees a task's signature through ``@app.task``: a correct use of the typed
tasks passes, and each deliberately wrong call or result type below is an error on its line.
(examples/typed_tasks.py is checked by `make typecheck` itself.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs mypy in a process of its own

REPO = Path(__file__).resolve().parents[1]

TASKS = """
import raftq

app = raftq.App("127.0.0.1:1")


@app.task(queue="q")
async def send(to: str, n: int = 1) -> bool:
    return True


@app.task
def area(w: int, h: int) -> int:
    return w * h

"""

GOOD = """
async def main() -> None:
    ok: bool = await (await send.enqueue("a", n=2)).wait()
    size: int = area.options(priority=3, key="k").enqueue_sync(2, h=3).wait(1_000)
    print(ok, size, send.name, area.queue)
"""

# Each line that mypy must refuse, with the words of its error.
BAD = [
    ("await send.enqueue(to=3)", 'Argument "to" to "enqueue" of "Task" has incompatible type'),
    ('await send.enqueue(too="x")', 'Unexpected keyword argument "too"'),
    ("await area.enqueue(1)", 'Missing positional argument "h"'),
    ("wrong: str = await (await area.enqueue(1, 2)).wait()", "Incompatible types in assignment"),
    ("s: str = area.enqueue_sync(2, 3).wait()", "Incompatible types in assignment"),
    ('area.enqueue_sync(1, "2")', 'Argument 2 to "enqueue_sync" of "Task" has incompatible'),
]


def _mypy(tmp: Path, name: str, body: str) -> str:
    path = tmp / f"{name}.py"
    path.write_text(TASKS + body)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.stdout + done.stderr


def test_a_correct_use_of_typed_tasks_passes_mypy_strict(tmp_path: Path) -> None:
    assert _mypy(tmp_path, "good", GOOD) == ""


def test_each_wrong_call_is_a_mypy_error_on_its_line(tmp_path: Path) -> None:
    body = "async def main() -> None:\n" + "".join(f"    {line}\n" for line, _ in BAD)
    out = _mypy(tmp_path, "bad", body)
    first = TASKS.count("\n") + 2  # the line of BAD[0]
    errors: dict[int, str] = {}
    for m in re.finditer(r"bad\.py:(\d+): error: (.*)", out):
        errors.setdefault(int(m.group(1)), m.group(2))
    for i, (line, words) in enumerate(BAD):
        assert words in errors.get(first + i, ""), (line, out)
    assert len(errors) == len(BAD), out
