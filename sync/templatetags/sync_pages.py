"""Template filters of the pages: how long ago, and a page link that keeps the filters."""

from datetime import datetime

from django import template
from django.http import QueryDict

from sync.models import ChangeEvent, ReflectionRun
from sync.web.pages import freshness

register = template.Library()


@register.filter
def ago(moment: datetime | None) -> str:
    """Say how long ago a moment was, as pages.js says it when it refreshes the text."""
    return freshness.ago(moment)


@register.filter
def duration(run: ReflectionRun) -> str:
    """Return how long a reflection ran, or say that it still runs."""
    if run.finished_at is None:
        return "running"
    milliseconds = round((run.finished_at - run.started_at).total_seconds() * 1000)
    return f"{milliseconds} ms" if milliseconds < 10_000 else f"{milliseconds / 1000:.1f} s"


@register.simple_tag
def with_query(query: QueryDict, **changes: object) -> str:
    """Return the query string with some parameters changed (None removes one)."""
    copy = query.copy()
    copy.pop("v", None)  # the version token belongs to polls only
    for name, value in changes.items():
        if value is None:
            copy.pop(name, None)
        else:
            copy[name] = str(value)
    return "?" + copy.urlencode() if copy else "?"


@register.filter
def actor(event: ChangeEvent) -> str:
    """Say who made a change: "by alice from psql", or that nobody vouches for who."""
    if not event.role:
        return "by someone unknown (not logged: the watch is not installed or missed it)"
    return f"by {event.role}" + (f" from {event.application}" if event.application else "")


@register.filter
def whom(role: str) -> str:
    """A listed change's author in a word: the role, or "unknown"."""
    return role or "unknown"


@register.filter
def words(name: str) -> str:
    """Write an identifier-like label in words: materialized_view -> materialized view."""
    return name.replace("_", " ")
