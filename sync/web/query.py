"""Strict query parameters and path ids, for the API and the pages alike: one value each, in
bounds, or BadParameter (a 400 that says why)."""

from typing import Any

from django.http import QueryDict

from sync.exceptions import BadParameter
from sync.models import Table

# Ids and offsets: up to 18 digits, so that any of them fits PostgreSQL's bigint.
MAX_WHOLE = 10**18 - 1
MAX_SEARCH = 200


def query_value(params: QueryDict, name: str) -> str | None:
    """Return the one value of a query parameter, None when absent; 400 if repeated or with NUL.

    An empty value is a value: `limit=` is a malformed limit, not a missing one.
    """
    values = params.getlist(name)
    if len(values) > 1:
        raise BadParameter(name, f"given {len(values)} times: give it once")
    if not values:
        return None
    raw = values[0]
    if "\x00" in raw:
        raise BadParameter(name, "must not contain a NUL character")
    return raw


def query_int(
    params: QueryDict, name: str, required: bool = False, least: int = 0, most: int = MAX_WHOLE
) -> int | None:
    """Return a whole-number query parameter within bounds; 400 if malformed, out of bounds,
    repeated, or missing when required."""
    raw = query_value(params, name)
    if raw is None:
        if required:
            raise BadParameter(name, "this query parameter is required")
        return None
    return whole_number(raw, name, least, most)


def whole_number(raw: str, name: str, least: int = 0, most: int = MAX_WHOLE) -> int:
    """Return raw as a whole number from least to most; 400 naming `name` if it is not one."""
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    if value is None or not least <= value <= most:
        raise BadParameter(name, f"must be a whole number from {least} to {most}, got {raw[:40]!r}")
    return value


def query_text(params: QueryDict, name: str, most: int = MAX_SEARCH) -> str:
    """Return a text query parameter ("" when absent); 400 if longer than `most` characters."""
    raw = query_value(params, name) or ""
    if len(raw) > most:
        raise BadParameter(name, f"must be at most {most} characters, got {len(raw)}")
    return raw


def query_bool(params: QueryDict, name: str) -> bool:
    raw = query_value(params, name)
    raw = "false" if raw is None else raw
    if raw not in {"true", "false", "1", "0"}:
        raise BadParameter(name, f"must be true or false, got {raw[:40]!r}")
    return raw in {"true", "1"}


def query_kind(params: QueryDict, blank_is_every: bool = False) -> str:
    """Return `kind`, a Table.Kind value, or "" when absent (or blank, where a form sends blank
    for every kind); 400 for any other."""
    kind = query_value(params, "kind")
    if kind is None or (blank_is_every and kind == ""):
        return ""
    if kind not in Table.Kind.values:
        raise BadParameter("kind", f"must be one of {', '.join(Table.Kind.values)}")
    return kind


class StrictIdMixin:
    """Answer 400, not 404, to a malformed id in the path (an unknown one stays a 404)."""

    lookup_value_regex = "[^/]+"  # every id reaches the view, which says what is wrong with it
    kwargs: dict[str, Any]

    def get_object(self) -> Any:
        self.kwargs["pk"] = str(whole_number(str(self.kwargs["pk"]), "id", least=1))
        return super().get_object()  # type: ignore[misc]
