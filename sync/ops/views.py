"""The operators' endpoints: /healthz for load balancers, /metrics for Prometheus."""

import hmac
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from sync.ops import health, scrape


class StaffOrMetricsToken(BasePermission):
    """Staff, or a scraper sending `Authorization: Bearer <SYNC_METRICS_TOKEN>` (when set)."""

    message = "Metrics need a staff user, or the metrics token as a bearer token."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = settings.SYNC_METRICS_TOKEN
        scheme, _, sent = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if token and scheme.lower() == "bearer":
            return hmac.compare_digest(sent.strip().encode(), token.encode())
        return bool(request.user and request.user.is_staff)


def healthz(request: HttpRequest) -> JsonResponse:
    """Answer 200 when every part is up, 503 naming the parts that are down."""
    states = health.report()
    down = [part for part, state in states.items() if state != "ok"]
    return JsonResponse(
        {"status": "down" if down else "ok", "parts": states}, status=503 if down else 200
    )


class MetricsView(APIView):
    """Prometheus metrics of this host's processes (text format), for staff or the token."""

    permission_classes = [StaffOrMetricsToken]
    schema = None  # not part of the REST API's schema

    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(scrape.exposition(), content_type=CONTENT_TYPE_LATEST)
