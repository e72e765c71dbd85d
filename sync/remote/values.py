"""Make the values a page's statement reads JSON, keeping each one exactly as it was stored."""

import math
from collections.abc import Callable, Sequence
from datetime import date, time
from decimal import Decimal
from typing import Any, TypeAlias

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
Renderer: TypeAlias = Callable[[Any], JSONValue]  # makes a driver value JSON


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
    if value is None or isinstance(value, bool | int | str | dict):
        return value  # a dict is a json or jsonb value, parsed by the driver
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
