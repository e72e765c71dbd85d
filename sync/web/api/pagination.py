"""Limit/offset pagination of the API's lists, strict about its bounds (REST framework setting)."""

from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from sync.web.query import MAX_WHOLE, query_int


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """Limit/offset pagination that answers 400 to a limit or offset out of bounds."""

    default_limit = 100
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        limit = query_int(request, self.limit_query_param, least=1, most=self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        return query_int(request, self.offset_query_param) or 0

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
