"""The baseline of bench/list_latency.py: the least Django view that answers a table list.

Served beside the API by the same gunicorn (settings bench.minimal_settings): the same rows as
`GET /api/v1/tables/?database=ID` (the first 100, and their count), for a reader authenticated
by the same token, with one ORM query for the token, one for the rows and one for the count,
sent as JSON: no REST framework, no freshness gate, no pagination links.
"""

from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from rest_framework.authtoken.models import Token

from sync.models import ChangeEvent, Table

FIELDS = ("id", "database", "schema", "oid", "name", "kind", "dropped_at")


def minimal_list(request: HttpRequest) -> HttpResponse:
    key = request.headers.get("Authorization", "").removeprefix("Token ")
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return HttpResponse(status=401)
    tables = Table.objects.filter(database_id=int(request.GET["database"]), dropped_at=None)
    rows = list(tables.values(*FIELDS, schema_name=F("schema__name"))[:100])
    return JsonResponse({"count": tables.count(), "results": rows})


CHANGE_FIELDS = (
    "id", "database", "schema", "table", "object_type", "kind", "oid", "name_before",
    "name_after", "schema_before", "schema_after", "occurred_at", "time_seen", "recorded_at",
    "role", "application", "command_tag", "xid", "client_addr", "backend_pid",
)  # fmt: skip


def minimal_changes(request: HttpRequest, database_id: int) -> HttpResponse:
    """The baseline of bench/change_feed.py: the newest 50 events of a database, as JSON."""
    key = request.headers.get("Authorization", "").removeprefix("Token ")
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return HttpResponse(status=401)
    events = ChangeEvent.objects.filter(database_id=database_id).order_by("-id")
    return JsonResponse({"results": list(events.values(*CHANGE_FIELDS)[:50])})


urlpatterns = [
    path("bench/minimal-list/", minimal_list),
    path("bench/minimal-changes/<int:database_id>/", minimal_changes),
    path("", include("project.urls")),
]
