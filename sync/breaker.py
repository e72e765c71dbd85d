"""A circuit breaker: after a failure, fail at once for a few seconds instead of waiting again.

A Redis that hangs (a partition, a host gone) costs every call its full socket timeout. Guard
the calls with a Breaker and only the first one waits: for `cooldown` seconds after it, the
block fails at once with BreakerOpen; then one call goes through as a probe, and closes the
breaker if it succeeds or opens it again if it fails.

    REDIS = Breaker("redis", cooldown=5)

    try:
        with REDIS:
            value = client.get(key)
    except RedisError:  # BreakerOpen is one: the caller's existing error path serves it
        ...

The whole API: Breaker(name, cooldown, errors), `with breaker:`, breaker.is_open, BreakerOpen.
State is per process (after a fork the child starts closed) and safe across threads.
"""

import os
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType

from redis.exceptions import RedisError


class BreakerOpen(RedisError):
    """The breaker is open: the call was not made. A RedisError, so callers need no new except."""


_breakers: "weakref.WeakSet[Breaker]" = weakref.WeakSet()


class Breaker:
    """Open for `cooldown` seconds after a block raised one of `errors`; closed after a success."""

    def __init__(
        self,
        name: str,
        cooldown: float = 5.0,
        errors: tuple[type[BaseException], ...] = (RedisError, OSError),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.cooldown, self.errors, self.clock = name, cooldown, errors, clock
        self._lock = threading.Lock()
        self._opened_at: float | None = None  # None: closed
        self._probing = False  # a probe is under way: the others still fail at once
        _breakers.add(self)

    @property
    def is_open(self) -> bool:
        """Whether calls fail at once now (open, or half-open with a probe under way)."""
        with self._lock:
            return self._opened_at is not None and (self._probing or not self._cooled())

    def __enter__(self) -> "Breaker":
        with self._lock:
            if self._opened_at is not None:
                if self._probing or not self._cooled():
                    raise BreakerOpen(f"{self.name} failed moments ago: not asked again yet")
                self._probing = True  # this call is the probe
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            if error is None:
                self._opened_at, self._probing = None, False
            elif isinstance(error, self.errors) and not isinstance(error, BreakerOpen):
                self._opened_at, self._probing = self.clock(), False
            else:
                self._probing = False  # an error of another kind says nothing of the server

    def reset(self) -> None:
        """Close the breaker (a forked child, a test)."""
        with self._lock:
            self._opened_at, self._probing = None, False

    def _cooled(self) -> bool:
        return self._opened_at is not None and self.clock() - self._opened_at >= self.cooldown


def _reset_after_fork() -> None:
    for breaker in list(_breakers):
        breaker._lock = threading.Lock()  # a lock held by another thread at the fork stays held
        breaker.reset()


os.register_at_fork(after_in_child=_reset_after_fork)


def _redis_breaker() -> Breaker:
    from django.conf import settings

    return Breaker("redis", cooldown=settings.SYNC_REDIS_COOLDOWN)


# The one breaker of dbsync's Redis, shared by everything that asks it on a request's path (the
# gate's state, the login throttle): after one of them found Redis hung, none waits on it.
REDIS_BREAKER = _redis_breaker()
