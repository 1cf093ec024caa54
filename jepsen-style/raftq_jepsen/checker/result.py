"""The per-check result shape written to ``results.json``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["MAX_EXAMPLES", "Findings"]

MAX_EXAMPLES = 5  # examples kept per violation kind; the counts are always complete


class Findings:
    """Violation counts and a few examples per kind, plus informational counts."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.violations: dict[str, int] = dict.fromkeys(kinds, 0)
        self.examples: dict[str, list[Any]] = defaultdict(list)
        self.counts: dict[str, Any] = {}

    def flag(self, kind: str, example: Any) -> None:
        self.violations[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(example)

    def result(self, **extra: Any) -> dict[str, Any]:
        return {
            "valid": not any(self.violations.values()),
            "violations": dict(self.violations),
            "counts": dict(self.counts),
            "examples": {k: v for k, v in self.examples.items() if v},
            **extra,
        }
