"""The change feed's API: GET databases/ID/changes/, schemas/ID/changes/, tables/ID/changes/."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from sync.models import ChangeEvent
from sync.web import change_feed
from sync.web.api import openapi as doc
from sync.web.api.serializers import ChangeEventSerializer
from sync.web.query import MAX_SEARCH, query_int, whole_number


class NewestFirst(CursorPagination):
    """Cursor pages, newest first: a page stays whole however fast events arrive."""

    ordering = ("-id",)
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        limit = query_int(request.query_params, "limit", least=1, most=self.max_page_size)
        return self.page_size if limit is None else limit


TEXT = {"type": "string", "maxLength": change_feed.MAX_NAME, "pattern": "^[^\\x00]*$"}
TIME = {"type": "string", "format": "date-time"}
FEED_PARAMETERS = [
    OpenApiParameter(
        "id", doc.whole(1), OpenApiParameter.PATH, description="id of the database, schema or table"
    ),
    OpenApiParameter("kind", str, enum=ChangeEvent.Kind.values, description="kind of change"),
    OpenApiParameter("role", TEXT, description="the role that ran the DDL (exact)"),
    OpenApiParameter("application", TEXT, description="its application_name (exact)"),
    OpenApiParameter("schema", doc.whole(1), description="events of this schema and its relations"),
    OpenApiParameter("table", doc.whole(1), description="events of this relation"),
    OpenApiParameter("since", TIME, description="events at or after this time (ISO 8601)"),
    OpenApiParameter("until", TIME, description="events before this time (ISO 8601)"),
    OpenApiParameter(
        "cursor",
        {"type": "string", "maxLength": MAX_SEARCH * 5},
        description="the next or previous link's cursor",
    ),
    OpenApiParameter("limit", doc.whole(1, 500), description="events per page, 1 to 500; 50"),
]


@extend_schema(
    parameters=FEED_PARAMETERS,
    responses={200: ChangeEventSerializer(many=True), **doc.READ_ERRORS},
)
class ChangeFeedViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[ChangeEvent]):
    """Who changed what, and when: the events of a database, a schema or a table, newest first.

    The actor (role, application, command tag, transaction) is known where the database's watch
    is installed; elsewhere actor_known is false and time_seen true. Client address and backend
    pid are shown to staff only.
    """

    serializer_class = ChangeEventSerializer
    pagination_class = NewestFirst
    scope = "database"  # set per route (urls.py)

    def get_queryset(self) -> QuerySet[ChangeEvent]:
        object_id = whole_number(str(self.kwargs["pk"]), "id", least=1)
        events = change_feed.scoped_events(self.request.user, self.scope, object_id)
        return change_feed.filtered(events, self.request.query_params)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Answer one page as plain dicts read by values(): the serializer's fields, without
        building a model instance and a serializer per row (half the page's time over 100,000
        events, bench/change_feed.py); tests/test_changes_api.py checks both agree."""
        rows = self.paginate_queryset(self.get_queryset().values(*VALUE_FIELDS))
        staff = bool(request.user and request.user.is_staff)
        return self.get_paginated_response([shown(row, staff) for row in rows or ()])


VALUE_FIELDS = [
    name for name in ChangeEventSerializer.Meta.fields
    if name not in ("actor_known", "transaction")
] + ["run"]  # fmt: skip
STAFF_ONLY = ("client_addr", "backend_pid")


def shown(row: dict[str, Any], staff: bool) -> dict[str, Any]:
    """Return a row as ChangeEventSerializer writes it (see ChangeEvent.group_key)."""
    run = row.pop("run")
    row["actor_known"] = bool(row["role"])
    row["transaction"] = f"xid-{row['xid']}" if row["xid"] is not None else f"run-{run}"
    if not staff:
        for name in STAFF_ONLY:
            del row[name]
    return row
