"""The change feed's rows for the API and the pages: one database's, schema's or table's events,
for a user who may list it, filtered by the query string."""

from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db.models import QuerySet
from django.http import Http404, QueryDict
from django.utils.dateparse import parse_datetime

from sync.exceptions import BadParameter
from sync.models import ChangeEvent, Schema, Table
from sync.web import access
from sync.web.query import query_int, query_text, query_value

SCOPES = ("database", "schema", "table")
MAX_NAME = 64  # a role's or application's name: PostgreSQL keeps 63 bytes of either


def scoped_events(user: Any, scope: str, object_id: int) -> QuerySet[ChangeEvent]:
    """Return the events of a database, schema or table the user may list; 404 otherwise, the
    same for an object not granted as for one that does not exist."""
    if scope == "database":
        if not access.readable_databases(user).filter(pk=object_id).exists():
            raise Http404("no such database")
        return ChangeEvent.objects.filter(database_id=object_id)
    model: type[Schema] | type[Table] = Schema if scope == "schema" else Table
    if not access.only_readable(user, model.objects.filter(pk=object_id)).exists():
        raise Http404(f"no such {scope}")
    return ChangeEvent.objects.filter(**{f"{scope}_id": object_id})


def filtered(
    events: QuerySet[ChangeEvent], params: QueryDict, blank_is_every: bool = False
) -> QuerySet[ChangeEvent]:
    """Apply the feed's filters: kind, role, application, schema, table, since and until.

    An empty value is malformed, except where a form sends blank for "any" (blank_is_every).
    """
    kind = query_value(params, "kind")
    if kind or (kind == "" and not blank_is_every):
        if kind not in ChangeEvent.Kind.values:
            raise BadParameter("kind", f"must be one of {', '.join(ChangeEvent.Kind.values)}")
        events = events.filter(kind=kind)
    for name in ("role", "application"):
        value = query_text(params, name, most=MAX_NAME)
        if value:
            events = events.filter(**{name: value})
    for name in ("schema", "table"):
        object_id = query_int(params, name, least=1)
        if object_id is not None:
            events = events.filter(**{f"{name}_id": object_id})
    since = query_time(params, "since", blank_is_every)
    until = query_time(params, "until", blank_is_every)
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    return events


def query_time(params: QueryDict, name: str, blank_is_none: bool = False) -> datetime | None:
    """Return an ISO 8601 time parameter (UTC where it names no offset); 400 if malformed."""
    raw = query_value(params, name)
    if raw is None or (blank_is_none and raw == ""):
        return None
    try:
        parsed = parse_datetime(raw.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise BadParameter(
            name, f"must be an ISO 8601 time such as 2026-01-31T12:00:00Z, got {raw[:40]!r}"
        )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def table_history(table_id: int, limit: int = 20) -> list[ChangeEvent]:
    """Return a table's latest events, newest first (its page shows them)."""
    return list(ChangeEvent.objects.filter(table_id=table_id).order_by("-id")[:limit])


class LastChange(NamedTuple):
    """A listed table's latest event: when, what, by whom ("" where unknown)."""

    occurred_at: datetime
    kind: str
    role: str


def last_changes(table_ids: list[int]) -> dict[int, LastChange]:
    """Return the latest event of each of these tables, in one query (DISTINCT ON)."""
    if not table_ids:
        return {}
    latest = (
        ChangeEvent.objects.filter(table_id__in=table_ids)
        .order_by("table_id", "-id")
        .distinct("table_id")
        .values_list("table_id", "occurred_at", "kind", "role")
    )
    return {row[0]: LastChange(*row[1:]) for row in latest}
