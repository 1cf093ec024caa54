"""A checked view of one TOML table: typed getters that record problems instead of raising.

Used by ``raftq.config`` so that validation reports every problem of a file in one go. Every
getter returns a usable fallback after recording a problem, so checking can carry on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["Table", "toml_type_name"]

_TYPE_NAMES: Final = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def toml_type_name(value: object) -> str:
    """The TOML name of a parsed value's type, for messages ("an integer", "a table", ...)."""
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


class Table:
    """Keys of one TOML table, read once each; ``finish()`` reports the keys nobody asked for.

    ``where`` names the table in messages: ``"cluster"``, ``"nodes[0]"``, ``"auth.tokens[1]"``
    (``""`` for the top level).
    """

    def __init__(self, data: object, where: str, problems: list[str]) -> None:
        self.where = where
        self._problems = problems
        self._known: list[str] = []
        # A value that is not a table is one problem; its "missing keys" would only be noise.
        self._broken = not isinstance(data, dict)
        if isinstance(data, dict):
            self._data: Mapping[str, object] = data
        else:
            self._data = {}
            problems.append(f"{where or 'the file'}: expected a table, got {toml_type_name(data)}")

    def path(self, key: str) -> str:
        """The dotted name of ``key`` inside this table, as messages show it."""
        return f"{self.where}.{key}" if self.where else key

    def problem(self, key: str, message: str) -> None:
        if not self._broken:
            self._problems.append(f"{self.path(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str) -> object | None:
        """The value as parsed (``None`` when absent), with no type check."""
        self._known.append(key)
        return self._data.get(key)

    def text(self, key: str, *, required: bool = False) -> str | None:
        """A non-empty string, or ``None`` when absent (a problem too when ``required``)."""
        value = self.raw(key)
        if value is None:
            if required:
                self.problem(key, "missing (required)")
            return None
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {toml_type_name(value)}")
            return None
        if not value.strip():
            self.problem(key, "must not be empty")
            return None
        return value

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        """An integer in ``low..high``; ``default`` when absent or invalid."""
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"expected an integer, got {toml_type_name(value)}")
            return default
        if not low <= value <= high:
            self.problem(key, f"{value} is out of range {low:_}..{high:_}")
            return default
        return value

    def texts(self, key: str) -> tuple[str, ...] | None:
        """An array of non-empty strings, or ``None`` when absent or invalid."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.problem(key, f"expected an array of strings, got {toml_type_name(value)}")
            return None
        items: list[str] = []
        ok = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.problem(f"{key}[{i}]", f"expected a string, got {toml_type_name(item)}")
                ok = False
            elif not item.strip():
                self.problem(f"{key}[{i}]", "must not be empty")
                ok = False
            else:
                items.append(item)
        return tuple(items) if ok else None

    def table(self, key: str) -> Table | None:
        """A sub-table, or ``None`` when absent."""
        value = self.raw(key)
        if value is None:
            return None
        return Table(value, self.path(key), self._problems)

    def tables(self, key: str) -> list[Table] | None:
        """An array of tables (``[[key]]``), or ``None`` when absent or not an array."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.problem(key, f"expected an array of tables ([[{key}]]), got a single value")
            return None
        return [
            Table(item, f"{self.path(key)}[{i}]", self._problems) for i, item in enumerate(value)
        ]

    def finish(self) -> None:
        """Report every key of this table that no getter asked for."""
        known = sorted(set(self._known))
        for key in self._data:
            if key not in known:
                where = self.where or "top level"
                self._problems.append(
                    f"{where}: unknown key {key!r} (known keys: {', '.join(known)})"
                )
