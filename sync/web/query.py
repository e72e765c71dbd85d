"""Strict query parameters and path ids: one value each, in bounds, or a 400 that says why."""

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

# Ids and offsets: up to 18 digits, so that any of them fits PostgreSQL's bigint.
MAX_WHOLE = 10**18 - 1
MAX_SEARCH = 200


def query_value(request: Request, name: str) -> str | None:
    """Return the one value of a query parameter, None when absent; 400 if repeated or with NUL.

    An empty value is a value: `limit=` is a malformed limit, not a missing one.
    """
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ValidationError({name: [f"given {len(values)} times: give it once"]})
    if not values:
        return None
    raw = values[0]
    if "\x00" in raw:
        raise ValidationError({name: ["must not contain a NUL character"]})
    return raw


def query_int(
    request: Request, name: str, required: bool = False, least: int = 0, most: int = MAX_WHOLE
) -> int | None:
    """Return a whole-number query parameter within bounds; 400 if malformed, out of bounds,
    repeated, or missing when required."""
    raw = query_value(request, name)
    if raw is None:
        if required:
            raise ValidationError({name: ["this query parameter is required"]})
        return None
    return whole_number(raw, name, least, most)


def whole_number(raw: str, name: str, least: int = 0, most: int = MAX_WHOLE) -> int:
    """Return raw as a whole number from least to most; 400 naming `name` if it is not one."""
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    if value is None or not least <= value <= most:
        raise ValidationError(
            {name: [f"must be a whole number from {least} to {most}, got {raw[:40]!r}"]}
        )
    return value


def query_text(request: Request, name: str, most: int = MAX_SEARCH) -> str:
    """Return a text query parameter ("" when absent); 400 if longer than `most` characters."""
    raw = query_value(request, name) or ""
    if len(raw) > most:
        raise ValidationError({name: [f"must be at most {most} characters, got {len(raw)}"]})
    return raw


def query_bool(request: Request, name: str) -> bool:
    raw = query_value(request, name)
    raw = "false" if raw is None else raw
    if raw not in {"true", "false", "1", "0"}:
        raise ValidationError({name: [f"must be true or false, got {raw[:40]!r}"]})
    return raw in {"true", "1"}


class StrictIdMixin:
    """Answer 400, not 404, to a malformed id in the path (an unknown one stays a 404)."""

    lookup_value_regex = "[^/]+"  # every id reaches the view, which says what is wrong with it
    kwargs: dict[str, Any]

    def get_object(self) -> Any:
        self.kwargs["pk"] = str(whole_number(str(self.kwargs["pk"]), "id", least=1))
        return super().get_object()  # type: ignore[misc]
