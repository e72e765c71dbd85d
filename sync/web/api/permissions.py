"""API permissions: reads need a logged-in user, writes need staff."""

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class ReadAuthenticatedWriteStaff(BasePermission):
    message = "Reading needs a logged-in user; changing anything needs a staff user."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or bool(user.is_staff)
