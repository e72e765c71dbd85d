"""Make the values a page's statement reads JSON, keeping each one exactly as it was stored."""

import math
from collections.abc import Callable, Sequence
from datetime import date, time
from decimal import Decimal
from typing import Any, TypeAlias

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
Renderer: TypeAlias = Callable[[Any], JSONValue]  # makes a driver value JSON


class RawJSON(str):
    """A json or jsonb value's text as PostgreSQL holds it: written into an answer as it is.

    Parsed, a number in it would become a double: 2.50 would read 2.5, 1e400 infinity.
    """

    __slots__ = ()


def raw_json(value: Any) -> JSONValue:
    """Return a json value's text (or a list of them, for an array) marked as raw JSON."""
    if isinstance(value, list):
        return [None if item is None else raw_json(item) for item in value]
    return RawJSON(value)


def as_text(value: JSONValue) -> JSONValue:
    """Return a value with its numbers and raw JSON as strings, for clients that need them so.

    A JavaScript client reads integers past 2**53 and JSON numbers past a double's precision
    inexactly; their text is exact everywhere.
    """
    if isinstance(value, list):
        return [as_text(item) for item in value]
    if isinstance(value, RawJSON):
        return str(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return value


def rendered(
    values: Sequence[tuple[Any, ...]],
    width: int,
    renderers: tuple[Renderer | None, ...],
) -> list[list[JSONValue]]:
    """Return the first width values of each row, made JSON by their column's renderer."""
    if not any(renderers):
        return [list(row[:width]) for row in values]
    return [
        [
            value if render is None or value is None else render(value)
            for value, render in zip(row[:width], renderers, strict=True)
        ]
        for row in values
    ]


def render(value: Any) -> JSONValue:
    """Return a driver value as a JSON-serialisable value that keeps it exactly."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return format(value, "f")  # str() would write 0.0000001 as 1E-7
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()  # PostgreSQL's own hex form of bytea
    if isinstance(value, list):
        return [render(item) for item in value]
    if isinstance(value, date | time):
        return value.isoformat()  # only reached through a domain over a domain
    return str(value)
