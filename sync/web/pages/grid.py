"""How a record's values show in the records grid: NULL apart from '', long values cut short."""

import json
from dataclasses import dataclass

from sync.remote.values import JSONValue

SHORT = 80  # characters shown before a value is cut; the rest is one click away


@dataclass(frozen=True)
class Cell:
    text: str  # the whole value as text ("" for NULL)
    null: bool = False

    @property
    def short(self) -> str:
        return self.text[:SHORT] + "…" if self.cut else self.text

    @property
    def cut(self) -> bool:
        return len(self.text) > SHORT


def cell(value: JSONValue) -> Cell:
    """Return the cell of one value as the API gives it (JSON types, numerics as strings)."""
    if value is None:
        return Cell("", null=True)
    if isinstance(value, str):
        return Cell(value)
    return Cell(json.dumps(value, ensure_ascii=False))


def cells(rows: list[list[JSONValue]]) -> list[list[Cell]]:
    return [[cell(value) for value in row] for row in rows]
