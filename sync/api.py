"""API plumbing shared by the viewsets: strict query parameters, pagination, error responses.

Kept apart from views.py because REST framework's settings import these by dotted path.
"""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from sync.exceptions import SyncError


def exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    """Answer every API error in one shape: {"code", "detail"} and, for bad input, "fields".

    `code` is stable and machine-readable (a SyncError's code, else REST framework's code of
    the error: "invalid", "not_found", "not_authenticated", "permission_denied", ...);
    `detail` says what to change; `fields` maps each bad parameter or field to its messages.
    """
    if isinstance(error, SyncError):
        return Response(error_body(error.code, str(error)), status=error.http_status)
    response = drf_exception_handler(error, context)  # sets WWW-Authenticate, Retry-After
    if response is None:
        return None
    if isinstance(error, ValidationError):
        fields = field_messages(error.detail)
        detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
        response.data = error_body("invalid", detail, fields)
    else:
        code = error.default_code if isinstance(error, APIException) else "not_found"
        response.data = error_body(str(code), str(response.data.get("detail", code)))
    return response


def error_body(
    code: str, detail: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


def field_messages(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten a ValidationError's detail into {field: [messages]}; "input" for the whole body."""
    if isinstance(detail, dict):
        fields: dict[str, list[str]] = {}
        for name, value in detail.items():
            key = "input" if name == "non_field_errors" else f"{prefix}{name}"
            fields |= (
                field_messages(value, f"{key}.")
                if isinstance(value, dict)
                else {key: [str(message) for message in _as_list(value)]}
            )
        return fields
    return {prefix.rstrip(".") or "input": [str(message) for message in _as_list(detail)]}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer an unknown URL under /api/ in the API's error shape; elsewhere as Django does."""
    if request.path.startswith("/api/"):
        body = error_body("not_found", f"no API endpoint at {request.path[:200]}")
        return JsonResponse(body, status=404)
    return defaults.page_not_found(request, exception or Http404())


def server_error(request: HttpRequest) -> HttpResponse:
    """Answer an unexpected error under /api/ in the API's error shape; elsewhere as Django does."""
    if request.path.startswith("/api/"):
        body = error_body("server_error", "dbsync failed on this request; it has been logged")
        return JsonResponse(body, status=500)
    return defaults.server_error(request)


# Ids and offsets: up to 18 digits, so that any of them fits PostgreSQL's bigint.
MAX_WHOLE = 10**18 - 1
MAX_SEARCH = 200


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


def query_value(request: Request, name: str) -> str | None:
    """Return the one value of a query parameter, None when absent; 400 if repeated or with NUL.

    An empty value is a value: `limit=` is a malformed limit, not a missing one.
    """
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ValidationError({name: [f"given {len(values)} times: give it once"]})
    if not values:
        return None
    raw = values[0]
    if "\x00" in raw:
        raise ValidationError({name: ["must not contain a NUL character"]})
    return raw


def query_int(
    request: Request, name: str, required: bool = False, least: int = 0, most: int = MAX_WHOLE
) -> int | None:
    """Return a whole-number query parameter within bounds; 400 if malformed, out of bounds,
    repeated, or missing when required."""
    raw = query_value(request, name)
    if raw is None:
        if required:
            raise ValidationError({name: ["this query parameter is required"]})
        return None
    return whole_number(raw, name, least, most)


def whole_number(raw: str, name: str, least: int = 0, most: int = MAX_WHOLE) -> int:
    """Return raw as a whole number from least to most; 400 naming `name` if it is not one."""
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    if value is None or not least <= value <= most:
        raise ValidationError(
            {name: [f"must be a whole number from {least} to {most}, got {raw[:40]!r}"]}
        )
    return value


def query_text(request: Request, name: str, most: int = MAX_SEARCH) -> str:
    """Return a text query parameter ("" when absent); 400 if longer than `most` characters."""
    raw = query_value(request, name) or ""
    if len(raw) > most:
        raise ValidationError({name: [f"must be at most {most} characters, got {len(raw)}"]})
    return raw


def query_bool(request: Request, name: str) -> bool:
    raw = query_value(request, name)
    raw = "false" if raw is None else raw
    if raw not in {"true", "false", "1", "0"}:
        raise ValidationError({name: [f"must be true or false, got {raw[:40]!r}"]})
    return raw in {"true", "1"}


class StrictIdMixin:
    """Answer 400, not 404, to a malformed id in the path (an unknown one stays a 404)."""

    lookup_value_regex = "[^/]+"  # every id reaches the view, which says what is wrong with it
    kwargs: dict[str, Any]

    def get_object(self) -> Any:
        self.kwargs["pk"] = str(whole_number(str(self.kwargs["pk"]), "id", least=1))
        return super().get_object()  # type: ignore[misc]
