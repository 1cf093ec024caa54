"""docs/guide.md quotes the examples verbatim: each Python block marked
``<!-- snippet: FILE#NAME -->`` must equal the region between ``# --8<-- [start:NAME]`` and
``# --8<-- [end:NAME]`` in FILE (dedented), and every region is quoted. The examples
themselves are run by tests/worker/test_examples.py and tests/integration/test_embedding.py,
so the guide's code is code the test suite runs."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "guide.md"
_QUOTE = re.compile(
    r"<!-- snippet: (?P<file>[\w/.]+)#(?P<name>\w+) -->\n```python\n(?P<code>.*?)```", re.S
)
_REGION = re.compile(
    r"# --8<-- \[start:(?P<name>\w+)\]\n(?P<code>.*?)^\s*# --8<-- \[end:(?P=name)\]", re.S | re.M
)


def regions(path: Path) -> dict[str, str]:
    return {
        m["name"]: textwrap.dedent(m["code"]).strip("\n")
        for m in _REGION.finditer(path.read_text())
    }


def test_guide_snippets_are_the_examples_verbatim() -> None:
    quotes = list(_QUOTE.finditer(GUIDE.read_text()))
    assert len(quotes) >= 6
    quoted: set[tuple[str, str]] = set()
    for q in quotes:
        source = regions(REPO / q["file"])
        assert q["name"] in source, f"{q['file']} has no region {q['name']}"
        assert q["code"].strip("\n") == source[q["name"]], f"{q['file']}#{q['name']} drifted"
        quoted.add((q["file"], q["name"]))
    for path in sorted((REPO / "examples").glob("*.py")):
        rel = str(path.relative_to(REPO))
        for name in regions(path):
            assert (rel, name) in quoted, f"{rel}#{name} is not quoted in docs/guide.md"


def test_every_python_block_of_the_guide_is_a_quote() -> None:
    text = GUIDE.read_text()
    assert text.count("```python") == len(_QUOTE.findall(text))
