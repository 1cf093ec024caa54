"""The README and docs/guide.md run as written. The guide quotes the examples verbatim: each
Python block marked ``<!-- snippet: FILE#NAME -->`` must equal the region between
``# --8<-- [start:NAME]`` and ``# --8<-- [end:NAME]`` in FILE (dedented), and every region is
quoted. The examples themselves are run by tests/worker/test_examples.py and
tests/integration/test_embedding.py, so the guide's code is code the test suite runs; the
README's Python by tests/integration/test_readme.py."""

from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path

import pytest

from raftq.config import load_config

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "guide.md"
EXAMPLE = REPO / "examples" / "embedded_service.py"
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


README = REPO / "README.md"
_BLOCK = re.compile(r"```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)


def readme_blocks(lang: str) -> list[str]:
    return [m["code"] for m in _BLOCK.finditer(README.read_text()) if m["lang"] == lang]


def test_the_readme_python_runs_as_written() -> None:
    # Issue 20: the README's snippet used `async with` at top level, which no file runs. Each
    # block compiles as a module; tests/integration/test_readme.py runs it against a node.
    blocks = readme_blocks("python")
    assert blocks
    for i, code in enumerate(blocks):
        compile(code, f"README.md python block {i + 1}", "exec")


def test_the_readme_runs_raftq_one_way() -> None:
    # Issue 20: it mixed `.venv/bin/raftq` and `raftq`; it says once how `raftq` gets on PATH.
    commands = [
        line[2:]
        for block in readme_blocks("console")
        for line in block.splitlines()
        if line.startswith("$ ")
    ]
    assert "source .venv/bin/activate" in commands
    assert not [c for c in commands if ".venv/bin/raftq" in c or ".venv/bin/python" in c]
    assert [c for c in commands if c.startswith("raftq ")]


def test_the_embedded_example_runs_next_to_the_example_clusters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 20: the guide ran it on cluster/three-node.toml, colliding with `make run`'s ports
    # and data dir. It has its own config, the default of its --config.
    monkeypatch.delenv("RAFTQ_DATA_DIR", raising=False)
    spec = importlib.util.spec_from_file_location("embedded_service", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    config: Path = example.CONFIG
    assert config == EXAMPLE.with_name("embedded_service.toml")
    own = load_config(config)
    addresses = {a for n in own.nodes for a in (n.raft, n.api)}
    for path in sorted((REPO / "cluster").glob("*.toml")):
        other = load_config(path)
        assert not addresses & {a for n in other.nodes for a in (n.raft, n.api)}, path
        assert other.data_dir != own.data_dir, path
    assert "embedded_service.py --config" not in GUIDE.read_text()
