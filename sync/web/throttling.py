"""Refuse logins after repeated failures, before any password is hashed.

Counted per client address and per user name in the cache, over SYNC_LOGIN_FAILURE_WINDOW
seconds. Both the API's HTTP Basic authentication and every Django login (the admin's form)
go through the backend here; the API answers 429 with Retry-After, the admin "wrong login".
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from redis.exceptions import RedisError
from rest_framework.authentication import BasicAuthentication
from rest_framework.exceptions import Throttled

from sync.breaker import REDIS_BREAKER

logger = logging.getLogger(__name__)


def _keys(request: Any, username: str | None) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    keys = [f"login-failures:address:{address}"] if address else []
    return keys + ([f"login-failures:user:{username.lower()}"] if username else [])


def blocked(request: Any, username: str | None) -> bool:
    """Return whether this address or this user name failed too often lately."""
    try:
        with REDIS_BREAKER:
            counts = cache.get_many(_keys(request, username))
    except RedisError:
        # Without the cache there is no count: logins stay possible (passwords still checked).
        logger.warning("login throttle: the cache is down; failures are not counted")
        return False
    return any(count >= settings.SYNC_LOGIN_FAILURE_LIMIT for count in counts.values())


def record_failure(request: Any, username: str | None) -> None:
    """Count one failed login against the address and the user name."""
    window = settings.SYNC_LOGIN_FAILURE_WINDOW
    try:
        with REDIS_BREAKER:
            for key in _keys(request, username):
                cache.add(key, 0, timeout=window)  # the window runs from the first failure
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
        if blocked(request, userid):
            wait = settings.SYNC_LOGIN_FAILURE_WINDOW
            raise Throttled(
                wait,
                detail=f"Too many failed logins from this address or for this user name; "
                f"try again in up to {wait} seconds.",
            )
        return super().authenticate_credentials(userid, password, request)
