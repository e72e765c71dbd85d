"""The web UI: databases, schemas, tables, a table's records and the history, kept current.

A listing page holds a version token; its fragment polls with it and gets 204 while nothing
changed, so an idle page costs one cheap request every few seconds while its tab is visible.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from sync.changes import gate
from sync.changes.gate import Freshness, Status
from sync.exceptions import SyncError
from sync.models import ChangeEvent, Database, ReflectionRun, Schema, Table
from sync.reflection import registry
from sync.remote import relations
from sync.web import access, change_feed, table_listing, table_reads
from sync.web.pages import freshness, grid, listing, push, table_rows
from sync.web.pages.decorators import HtmxHttpRequest, login_required, staff_required
from sync.web.pages.forms import RegisterForm
from sync.web.pages.listing import TableFilters
from sync.web.query import query_int, query_kind, query_text, query_value

POLL_SECONDS = 2
POLL_TRIGGER = (
    f"every {POLL_SECONDS}s [document.visibilityState === 'visible' && !window.dbsyncPushed],"
    " dbsync:changed from:body"
)
RECORDS_LIMIT = 50
MAX_PAGE = 10**9


@dataclass(frozen=True)
class DatabaseRow:
    database: Database
    badge: freshness.Badge
    schemas: int
    tables: int
    watch_mode: str


def readable(request: HttpRequest, database_id: int) -> Database:
    """Return the database if the user may read it; 404 alike for unknown and not granted."""
    return get_object_or_404(access.readable_databases(request.user), pk=database_id)


def listing_page(
    request: HtmxHttpRequest,
    name: str,
    token: str,
    context_of: Callable[[], dict[str, Any]],
    status: int = 200,
    database_id: int | None = None,
) -> HttpResponse:
    """Answer a poll that holds the current version with 204; else the page or its fragment.

    The fragment polls every POLL_SECONDS while its tab is visible, unless the push channel
    is connected (pages.js sets dbsyncPushed), and at once when the channel says the
    database changed.
    """
    polled = bool(request.htmx) and not request.htmx.boosted
    if polled and request.GET.get("v") == token:
        return HttpResponse(status=204)
    query = request.GET.copy()
    query["v"] = token
    context = context_of() | {
        "version": token,
        "poll_url": f"{request.path}?{query.urlencode()}",
        "poll_trigger": POLL_TRIGGER,
        "push_url": push.push_url(request),
        "push_database": database_id or "",
    }
    template = f"sync/_{name}.html" if polled else f"sync/{name}.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_GET
@login_required
def databases(request: HtmxHttpRequest) -> HttpResponse:
    """List the readable databases with their freshness, counts and (for staff) actions."""
    return databases_page(request, RegisterForm())


def databases_page(request: HtmxHttpRequest, form: RegisterForm, status: int = 200) -> HttpResponse:
    search, number = search_of(request), page_number(request)
    page = listing.databases_of(access.readable_databases(request.user), search, number)
    badges = freshness.looked_at_each(page.rows)
    token = freshness.version(
        request.user.is_staff,
        page.total,
        page.number,
        *[
            (d.id, d.name, d.redacted_url, d.imported_at, badge.version, d.last_error)
            for d, badge in zip(page.rows, badges, strict=True)
        ],
    )

    def context() -> dict[str, Any]:
        counts = listing.object_counts(page.rows)
        rows = [
            DatabaseRow(d, badge, *counts[d.id], freshness.watch_mode(d))
            for d, badge in zip(page.rows, badges, strict=True)
        ]
        return {"page": page, "rows": rows, "search": search, "form": form}

    return listing_page(request, "databases", token, context, status)


@require_GET
@login_required
def schemas(request: HtmxHttpRequest, database_id: int) -> HttpResponse:
    """List a database's schemas: opening or polling the page passes the list gate."""
    database = readable(request, database_id)
    badge = freshness.opened(database)
    search, dropped, number = search_of(request), dropped_of(request), page_number(request)
    token = freshness.version(badge.version, database.catalog_fingerprint)

    def context() -> dict[str, Any]:
        page = listing.schemas_of(database, search, dropped, number)
        return {"database": database, "badge": badge, "page": page, "search": search,
                "dropped": dropped}  # fmt: skip

    return listing_page(request, "schemas", token, context, database_id=database.id)


@require_GET
@login_required
def tables(request: HtmxHttpRequest, database_id: int) -> HttpResponse:
    """List a database's tables and views, filtered; opening or polling passes the list gate."""
    database = readable(request, database_id)
    filters, number = table_filters(request, database), page_number(request)
    badge = freshness.opened(database)
    # The latest event too: an ALTER that changes no name leaves the fingerprint as it was.
    latest = ChangeEvent.objects.filter(database=database).aggregate(latest=Max("id"))["latest"]
    token = freshness.version(badge.version, database.catalog_fingerprint, latest)

    def context() -> dict[str, Any]:
        failing = table_listing.failing(database, badge.status)
        listed = listing.tables_of(database, filters, number, failing)
        return {"database": database, "badge": badge, "page": listed.page, "kinds": listed.kinds,
                "facts_error": listed.facts_error, "filters": filters, "links": row_links(database),
                "folded": sum(kind.folded for kind in listed.kinds),
                "headers": sort_headers(filters),
                "rows_html": table_rows.rows_html(listed.page.rows, row_links(database), filters),
                }  # fmt: skip

    return listing_page(request, "tables", token, context, database_id=database.id)


def row_links(database: Database) -> dict[str, str]:
    """Return the start of each row's links, reversed once per page instead of once per row."""
    return {
        "table": reverse("table", args=[0]).removesuffix("0/"),
        "schema": reverse("tables", args=[database.id]) + "?schema=",
        "partitions": reverse("tables", args=[database.id]) + "?parent=",
    }


@dataclass(frozen=True)
class SortHeader:
    key: str
    label: str
    ordering: str  # the ordering= its link asks for
    sorted: str  # "ascending", "descending" or "" (its aria-sort)
    numeric: bool = False


def sort_headers(filters: TableFilters) -> list[SortHeader]:
    """Return the sortable column headers: a click sorts by one, a second click reverses it."""
    current = filters.ordering
    labels = {"name": "Name", "schema": "Schema", "kind": "Kind", "rows": "Rows", "size": "Size"}
    return [
        SortHeader(
            key,
            label,
            current.toggled(key),
            ("descending" if current.descending else "ascending") if key == current.key else "",
            key in table_listing.FACT_KEYS,
        )
        for key, label in labels.items()
    ]


def table_filters(request: HttpRequest, database: Database) -> TableFilters:
    """Read the filters of the tables page; a schema of another database is a 404."""
    schema_id = query_int(request.GET, "schema", least=1) if request.GET.get("schema") else None
    schema = None
    if schema_id is not None:
        schema = get_object_or_404(Schema, pk=schema_id, database=database)
    parent_id = query_int(request.GET, "parent", least=1) if request.GET.get("parent") else None
    parent = None
    if parent_id is not None:
        parent = get_object_or_404(Table, pk=parent_id, database=database)
    return TableFilters(
        search=search_of(request),
        kind=query_kind(request.GET, blank_is_every=True),
        schema=schema,
        dropped=dropped_of(request),
        parent=parent,
        flat=query_value(request.GET, "flat") == "on",
        ordering=table_listing.parse_ordering(query_value(request.GET, "ordering")),
    )


def search_of(request: HttpRequest) -> str:
    return query_text(request.GET, "q").strip()


def dropped_of(request: HttpRequest) -> bool:
    """The "show dropped" checkbox: a form sends "on" when it is ticked."""
    return query_value(request.GET, "dropped") == "on"


def page_number(request: HttpRequest) -> int:
    """Read ?page=: a whole number from 1, 1 when absent or blank."""
    if not request.GET.get("page"):
        return 1
    return query_int(request.GET, "page", least=1, most=MAX_PAGE) or 1


@require_GET
@login_required
def table(request: HttpRequest, table_id: int) -> HttpResponse:
    """Show a table's columns and a page of its records, both read from its database now."""
    tables = Table.objects.select_related("schema", "database", "parent")
    table = get_object_or_404(
        tables.filter(database__in=access.readable_databases(request.user)), pk=table_id
    )
    offset = (query_int(request.GET, "offset") if request.GET.get("offset") else None) or 0
    context: dict[str, Any] = {
        "table": table, "database": table.database, "offset": offset,
        "history": change_feed.table_history(table.id),
        "partitions": partitions_of(table),
    }  # fmt: skip
    status = 200
    try:
        context["columns"] = table_reads.read_columns(table)
        if access.may_read_records(request.user, table.database):
            relations.check_page(RECORDS_LIMIT, offset)
            records = table_reads.read_records(table, RECORDS_LIMIT, offset)
            context |= records_context(records)
        else:
            context["records_denied"] = access.records_denied(table.database)
    except SyncError as error:
        context["error"], status = str(error), error.http_status
    return render(request, "sync/table.html", context, status=status)


def partitions_of(table: Table) -> listing.Page[listing.ListedTable] | None:
    """Return the first page of a partitioned table's partitions, None for any other relation."""
    if table.kind != Table.Kind.PARTITIONED_TABLE:
        return None
    filters = TableFilters(parent=table)
    return listing.by_name(
        table_listing.folded(Table.objects.live().filter(parent=table), flat=True),
        filters.ordering,
        Table.objects.live().filter(parent=table).count(),
        1,
    )


def records_context(records: relations.RecordsPage) -> dict[str, Any]:
    shown = len(records.rows)
    after = records.offset + shown
    more = after < records.count or (records.count_is_estimate and shown == records.limit)
    return {
        "records": records,
        "cells": grid.cells(records),
        "first_row": records.offset + 1 if shown else 0,
        "last_row": after,
        "previous_offset": max(0, records.offset - records.limit) if records.offset else None,
        "next_offset": after if more else None,
    }


@require_GET
@login_required
def history(request: HtmxHttpRequest, database_id: int) -> HttpResponse:
    """List a database's reflections, the latest first; kept current while one runs."""
    database = readable(request, database_id)
    number = page_number(request)
    running = Q(outcome=ReflectionRun.Outcome.RUNNING)
    summary = ReflectionRun.objects.filter(database=database).aggregate(
        runs=Count("id"), last=Max("id"), running=Count("id", filter=running)
    )
    badge = freshness.looked_at(database)
    token = freshness.version(badge.version, *summary.values())

    def context() -> dict[str, Any]:
        return {"database": database, "badge": badge, "page": listing.runs_of(database, number)}

    return listing_page(request, "history", token, context, database_id=database.id)


@require_POST
@login_required
@staff_required
def register(request: HtmxHttpRequest) -> HttpResponse:
    """Register a database (staff): dbsync connects once before saving it."""
    form = RegisterForm(request.POST)
    if form.is_valid():
        try:
            database, _ = registry.register(
                form.cleaned_data["name"], form.cleaned_data["url"], check=True
            )
        except SyncError as error:
            form.add_error("url", str(error))
        else:
            messages.success(request, f"{database.name} registered.")
            warning = registry.superuser_warning(database)
            if warning:
                messages.warning(request, f"Warning: {warning}.")
            report(request, database, freshness.import_now(database), "import")
            return redirect("databases")
    return databases_page(request, form, status=400)


@require_POST
@login_required
@staff_required
def refresh(request: HttpRequest, database_id: int) -> HttpResponse:
    """Queue a reflection of the database now (staff)."""
    database = readable(request, database_id)
    report(request, database, freshness.refresh(database), "reflection")
    return back(request)


@require_POST
@login_required
@staff_required
def import_now(request: HttpRequest, database_id: int) -> HttpResponse:
    """Queue the full import of the database now (staff)."""
    database = readable(request, database_id)
    report(request, database, freshness.import_now(database), "import")
    return back(request)


def report(request: HttpRequest, database: Database, queued: Freshness, what: str) -> None:
    """Say what became of a staff action: queued now, or why not."""
    level = messages.INFO
    if queued.status == Status.UNAVAILABLE:
        level = messages.ERROR
    elif queued.queued_now:
        level = messages.SUCCESS
    messages.add_message(request, level, f"{database.name}: {gate.describe(queued, what)}.")


def back(request: HttpRequest) -> HttpResponse:
    """Go back to the page the action was sent from, if it is one of ours."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(reverse("databases"))
