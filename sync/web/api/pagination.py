"""Limit/offset pagination of the API's lists, strict about its bounds (REST framework setting)."""

from collections.abc import Sequence
from typing import Any

from django.db.models import Count, QuerySet, Window
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.views import APIView

from sync.web.query import MAX_WHOLE, query_int


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """Limit/offset pagination that answers 400 to a limit or offset out of bounds."""

    default_limit = 100
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        limit = query_int(
            request.query_params, self.limit_query_param, least=1, most=self.max_limit
        )
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        return query_int(request.query_params, self.offset_query_param) or 0

    def paginate_queryset(
        self, queryset: QuerySet[Any] | Sequence[Any], request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        """Cut one page; for a view that names its `list_fields`, as plain dicts of those fields,
        read with their total in one query.

        The fast path never builds a model instance or runs a serializer, which cost the most
        CPU of a list (bench/list_latency.py); tests/test_views.py checks that its rows are those
        the serializer gives.
        """
        fields: dict[str, str] | None = getattr(view, "list_fields", None)
        if fields is None or not isinstance(queryset, QuerySet):
            return super().paginate_queryset(queryset, request, view)
        self.request = request
        self.limit, self.offset = self.get_limit(request), self.get_offset(request)
        names, paths = zip(*fields.items(), strict=True)
        total = Window(Count("*"))  # over every row the filters keep, before the page is cut
        rows = list(queryset.values_list(*paths, total)[self.offset : self.offset + self.limit])
        self.count = rows[0][-1] if rows else (queryset.count() if self.offset else 0)
        return [dict(zip(names, row[:-1], strict=True)) for row in rows]

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """Document the bounds that get_limit and get_offset enforce."""
        limit = f"rows per page, 1 to {self.max_limit}; {self.default_limit} if not given"
        bounds = {
            self.limit_query_param: (1, self.max_limit, limit),
            self.offset_query_param: (0, MAX_WHOLE, "rows to skip; 0 if not given"),
        }
        return [
            {
                "name": name,
                "required": False,
                "in": "query",
                "description": description,
                "schema": {"type": "integer", "minimum": least, "maximum": most},
            }
            for name, (least, most, description) in bounds.items()
        ]
