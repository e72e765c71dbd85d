"""API permissions: reads need a logged-in user, writes need staff; metrics, staff or a token."""

import hmac
from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class ReadAuthenticatedWriteStaff(BasePermission):
    message = "Reading needs a logged-in user; changing anything needs a staff user."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or bool(user.is_staff)


class StaffOrMetricsToken(BasePermission):
    """Staff, or a scraper sending `Authorization: Bearer <SYNC_METRICS_TOKEN>` (when set)."""

    message = "Metrics need a staff user, or the metrics token as a bearer token."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = settings.SYNC_METRICS_TOKEN
        scheme, _, sent = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if token and scheme.lower() == "bearer":
            return hmac.compare_digest(sent.strip().encode(), token.encode())
        return bool(request.user and request.user.is_staff)
