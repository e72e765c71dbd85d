"""The Changes page: a database's change events, newest first, grouped by transaction."""

from dataclasses import dataclass
from typing import Any

from django.db.models import Max
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from sync.models import ChangeEvent
from sync.web import change_feed
from sync.web.pages import freshness
from sync.web.pages.decorators import HtmxHttpRequest, login_required
from sync.web.pages.views import listing_page, readable
from sync.web.query import query_int, query_text

PAGE_SIZE = 100


@dataclass(frozen=True)
class Transaction:
    """Consecutive events of one transaction (or, unlogged, of one reflection)."""

    key: str
    events: list[ChangeEvent]

    @property
    def first(self) -> ChangeEvent:
        return self.events[0]


def by_transaction(events: list[ChangeEvent]) -> list[Transaction]:
    """Group a page of events, newest first, into runs of the same transaction."""
    groups: list[Transaction] = []
    for event in events:
        if groups and groups[-1].key == event.group_key:
            groups[-1].events.append(event)
        else:
            groups.append(Transaction(event.group_key, [event]))
    return groups


@require_GET
@login_required
def changes(request: HtmxHttpRequest, database_id: int) -> HttpResponse:
    """List a database's change events, filterable, kept current while the tab is visible."""
    database = readable(request, database_id)
    events = change_feed.filtered(
        ChangeEvent.objects.filter(database=database), request.GET, blank_is_every=True
    )
    before = query_int(request.GET, "before", least=1) if request.GET.get("before") else None
    latest = ChangeEvent.objects.filter(database=database).aggregate(latest=Max("id"))["latest"]
    badge = freshness.looked_at(database)
    token = freshness.version(badge.version, latest)

    def context() -> dict[str, Any]:
        shown = events.filter(id__lt=before) if before else events
        rows = list(shown.select_related("run").order_by("-id")[: PAGE_SIZE + 1])
        older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
        return {
            "database": database, "badge": badge, "groups": by_transaction(rows[:PAGE_SIZE]),
            "older": older, "kinds": ChangeEvent.Kind.choices, "filters": filters_of(request),
        }  # fmt: skip

    return listing_page(request, "changes", token, context)


def filters_of(request: HtmxHttpRequest) -> dict[str, str]:
    return {
        name: query_text(request.GET, name, most=change_feed.MAX_NAME).strip()
        for name in ("kind", "role", "application")
    }
