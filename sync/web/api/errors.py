"""One JSON shape for every error answer: the API's exception handler, and 404 and 500 under /api/.

REST framework's settings and the URL configuration name these by dotted path.
"""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from sync.exceptions import BadParameter, SyncError


def exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    """Answer every API error in one shape: {"code", "detail"} and, for bad input, "fields".

    `code` is stable and machine-readable (a SyncError's code, else REST framework's code of
    the error: "invalid", "not_found", "not_authenticated", "permission_denied", ...);
    `detail` says what to change; `fields` maps each bad parameter or field to its messages.
    """
    if isinstance(error, BadParameter):  # the pages' and the API's one parser of parameters
        error = ValidationError({error.name: [error.message]})
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
