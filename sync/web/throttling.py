"""Refuse logins after repeated failures, before any password is hashed.

Counted per client address and per user name in the cache, over SYNC_LOGIN_FAILURE_WINDOW
seconds. Both the API's HTTP Basic authentication and every Django login (the pages' and the
admin's forms) go through the backend here; the API answers 429 with Retry-After saying the
seconds left, the forms say that the login is locked and for how long.
"""

import logging
import math
import time
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from redis.exceptions import RedisError
from rest_framework.authentication import BasicAuthentication
from rest_framework.exceptions import Throttled

from sync.breaker import REDIS_BREAKER

logger = logging.getLogger(__name__)


def _keys(request: Any, username: str | None) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    keys = [f"login-failures:address:{address}"] if address else []
    return keys + ([f"login-failures:user:{username.lower()}"] if username else [])


def blocked_for(request: Any, username: str | None) -> int:
    """Return the seconds left before this address and user name may log in again (0: now).

    Each count's window ends where its first failure started it (the `:until` key beside it).
    """
    keys = _keys(request, username)
    try:
        with REDIS_BREAKER:
            found = cache.get_many([*keys, *(f"{key}:until" for key in keys)])
    except RedisError:
        # Without the cache there is no count: logins stay possible (passwords still checked).
        logger.warning("login throttle: the cache is down; failures are not counted")
        return 0
    now = time.time()
    left = [
        max(1, math.ceil(found.get(f"{key}:until", now + 1) - now))
        for key in keys
        if found.get(key, 0) >= settings.SYNC_LOGIN_FAILURE_LIMIT
    ]
    return max(left, default=0)


def blocked(request: Any, username: str | None) -> bool:
    """Return whether this address or this user name failed too often lately."""
    return blocked_for(request, username) > 0


def locked_message(seconds: int) -> str:
    return (
        "Too many failed logins from this address or for this user name: logins are locked "
        f"for {seconds} more second{'s' if seconds != 1 else ''}."
    )


def unlock(username: str) -> None:
    """Forget the failed logins counted against a user name (an operator's remedy)."""
    key = f"login-failures:user:{username.lower()}"
    cache.delete_many([key, f"{key}:until"])


def record_failure(request: Any, username: str | None) -> None:
    """Count one failed login against the address and the user name."""
    window = settings.SYNC_LOGIN_FAILURE_WINDOW
    try:
        with REDIS_BREAKER:
            for key in _keys(request, username):
                # The window runs from the first failure; its end is kept, for Retry-After.
                if cache.add(key, 0, timeout=window):
                    cache.set(f"{key}:until", time.time() + window, timeout=window)
                cache.incr(key)
    except (RedisError, ValueError):
        logger.warning("login throttle: a failed login could not be counted")


class ThrottledModelBackend(ModelBackend):
    """Django's model backend, refusing without a password check while throttled."""

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kw: Any
    ) -> Any:
        if blocked(request, username):
            raise PermissionDenied("too many failed logins")
        user = super().authenticate(request, username=username, password=password, **kw)
        if user is None:
            record_failure(request, username)
        return user


class ThrottledBasicAuthentication(BasicAuthentication):
    """HTTP Basic that answers 429 (with Retry-After) while logins are throttled."""

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> Any:
        wait = blocked_for(request, userid)
        if wait:
            # Throttled adds "Expected available in N seconds." to the detail itself.
            raise Throttled(
                wait, detail="Too many failed logins from this address or for this user name."
            )
        return super().authenticate_credentials(userid, password, request)


class LockedLoginMixin:
    """A login form that says the login is locked, and for how long, instead of "wrong"."""

    request: Any

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = getattr(self, "data", {})
        wait = blocked_for(self.request, data.get("username"))
        if wait:
            raise ValidationError(locked_message(wait), code="locked")
        return super().clean()  # type: ignore[misc,no-any-return]


class LockedAuthenticationForm(LockedLoginMixin, AuthenticationForm):
    """The pages' login form."""


class LockedAdminAuthenticationForm(LockedLoginMixin, AdminAuthenticationForm):
    """The admin's login form."""
