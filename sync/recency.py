"""Per-database reflection state in Redis: the recency key, the in-flight lock, the back-off."""

import functools
from datetime import datetime
from enum import StrEnum

import redis
from django.conf import settings
from django.core.cache import cache


class LockState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"


def recency_key(database_id: int) -> str:
    return f"database_reflected_recently:{database_id}"


def backoff_key(database_id: int) -> str:
    return f"reflection_backoff:{database_id}"


def lock_key(database_id: int) -> str:
    return f"dbsync:reflection_in_flight:{database_id}"


# Set state:token only if the lock is free or already holds this token.
CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, -string.len(ARGV[1])) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

# Delete the lock only if it still holds this token: a lapsed lock may belong to another run.
RELEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, -string.len(ARGV[1])) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@functools.cache
def lock_client() -> redis.Redis:
    """Return this process's Redis client for locks; short timeouts, as requests wait on it."""
    return redis.Redis.from_url(
        settings.SYNC_LOCK_REDIS_URL,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        decode_responses=True,
    )


def is_recent(database_id: int) -> bool:
    return cache.get(recency_key(database_id)) is not None


def mark_recent(database_id: int, reflected_at: datetime) -> None:
    cache.set(recency_key(database_id), reflected_at.isoformat(), settings.SYNC_REFLECTION_INTERVAL)
    cache.delete(backoff_key(database_id))


def expire(database_id: int) -> None:
    """Forget that a database was reflected recently, so the next list queues a reflection."""
    cache.delete(recency_key(database_id))


def backing_off(database_id: int) -> bool:
    return cache.get(backoff_key(database_id)) is not None


def back_off(database_id: int, seconds: int) -> None:
    cache.set(backoff_key(database_id), seconds, seconds)


def acquire(database_id: int, token: str) -> bool:
    """Take the free in-flight lock for a run about to be queued; False if it is taken."""
    value = f"{LockState.QUEUED}:{token}"
    return bool(lock_client().set(lock_key(database_id), value, nx=True, ex=settings.SYNC_LOCK_TTL))


def holder(database_id: int) -> tuple[LockState, str] | None:
    """Return the state and token of the run holding the lock, if any."""
    held = lock_client().get(lock_key(database_id))
    if not held:
        return None
    state, _, token = str(held).partition(":")
    return LockState(state), token


def claim(database_id: int, token: str, state: LockState, seconds: int) -> bool:
    """Move the lock to a new state if this token holds it or it is free; False otherwise."""
    client = lock_client()
    result = client.eval(CLAIM, 1, lock_key(database_id), token, f"{state}:{token}", str(seconds))
    return bool(result)


def release(database_id: int, token: str) -> None:
    lock_client().eval(RELEASE, 1, lock_key(database_id), token)
