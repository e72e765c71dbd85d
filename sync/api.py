"""API plumbing shared by the viewsets: strict query parameters, pagination, error responses.

Kept apart from views.py because REST framework's settings import these by dotted path.
"""

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from sync.exceptions import SyncError


def exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    """Answer dbsync's own errors with their HTTP status and message; the rest as DRF does."""
    if isinstance(error, SyncError):
        return Response({"detail": str(error)}, status=error.http_status)
    return drf_exception_handler(error, context)


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """Limit/offset pagination that answers 400 to a malformed limit or offset."""

    default_limit = 100
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        return self.checked(request, self.limit_query_param, self.default_limit, 1)

    def get_offset(self, request: Request) -> int:
        return self.checked(request, self.offset_query_param, 0, 0)

    def checked(self, request: Request, name: str, default: int, minimum: int) -> int:
        raw = request.query_params.get(name)
        if raw in (None, ""):
            return default
        value = query_int(request, name)
        if value is None or value < minimum:
            raise ValidationError({name: [f"must be at least {minimum}"]})
        return min(value, self.max_limit) if name == self.limit_query_param else value


def query_int(request: Request, name: str, required: bool = False) -> int | None:
    """Return a whole-number query parameter; 400 if it is malformed or missing when required."""
    raw = request.query_params.get(name, "")
    if raw == "":
        if required:
            raise ValidationError({name: ["this query parameter is required"]})
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ValidationError({name: [f"must be a whole number, got {raw[:40]!r}"]})
    return int(raw)


def query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in {"true", "false", "1", "0"}:
        raise ValidationError({name: [f"must be true or false, got {raw[:40]!r}"]})
    return raw in {"true", "1"}
