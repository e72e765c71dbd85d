"""How a record's values show in the records grid: NULL apart from '', long values cut short."""

import json
from dataclasses import dataclass

from sync.remote.relations import RecordsPage
from sync.remote.values import JSONValue

SHORT = 80  # characters shown before a value is cut; the rest is one click away


@dataclass(frozen=True)
class Cell:
    text: str  # the value as text ("" for NULL): the first SYNC_CELL_CHARS where it was cut
    null: bool = False
    octets: int | None = None  # bytes of the whole value's text where the read cut it
    column: str = ""  # the column's name, where the read cut it: to fetch the whole value

    @property
    def short(self) -> str:
        return self.text[:SHORT] + "…" if self.cut else self.text

    @property
    def cut(self) -> bool:
        return len(self.text) > SHORT or self.octets is not None


def cell(value: JSONValue) -> Cell:
    """Return the cell of one value as the API gives it (JSON types, numerics as strings)."""
    if value is None:
        return Cell("", null=True)
    if isinstance(value, str):
        return Cell(value)
    return Cell(json.dumps(value, ensure_ascii=False))


def cells(page: RecordsPage) -> list[list[Cell]]:
    """Return the cells of a page's rows, those the read cut with their whole length."""
    rows = [[cell(value) for value in row] for row in page.rows]
    for cut in page.cut:
        position = page.columns.index(cut.column)
        rows[cut.row][position] = Cell(rows[cut.row][position].text, False, cut.octets, cut.column)
    return rows
