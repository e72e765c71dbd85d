"""Per-database reflection state in Redis: the recency key, the in-flight lock, the back-off.

The recency key lives in the Django cache, as the design has it; the lock and the back-off live
beside it, in Redis itself, so that the gate decides between them in one atomic round trip.
"""

import functools
from datetime import datetime
from enum import StrEnum

import redis
from django.conf import settings
from django.core.cache import cache
from redis.commands.core import Script
from redis.exceptions import RedisError


class LockState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"


def recency_key(database_id: int) -> str:
    return f"database_reflected_recently:{database_id}"


def backoff_key(database_id: int) -> str:
    return f"dbsync:reflection_backoff:{database_id}"


def lock_key(database_id: int) -> str:
    return f"dbsync:reflection_in_flight:{database_id}"


BACKING_OFF = "backing-off"

# Whoever holds the lock; else nothing while the back-off lasts; else take it: one round trip
# for the gate, and no run can slip in between the checks and the taking.
TAKE = f"""
local held = redis.call('GET', KEYS[1])
if held then return held end
if redis.call('EXISTS', KEYS[2]) == 1 then return '{BACKING_OFF}' end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""

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
    lock_client().delete(backoff_key(database_id))


def expire(database_id: int) -> None:
    """Forget that a database was reflected recently, so the next list queues a reflection."""
    cache.delete(recency_key(database_id))


def backing_off(database_id: int) -> bool:
    return bool(lock_client().exists(backoff_key(database_id)))


def back_off(database_id: int, seconds: int) -> None:
    lock_client().set(backoff_key(database_id), seconds, ex=seconds)


def take(database_id: int, token: str) -> tuple[LockState, str] | None:
    """Take the free in-flight lock for a run about to be queued, unless backing off.

    Return the state and token of the run holding the lock (this one's if it was taken now),
    or None while the database is backed off after a failure.
    """
    release_unanswered()
    value = f"{LockState.QUEUED}:{token}"
    keys = (lock_key(database_id), backoff_key(database_id))
    try:
        held = _script(TAKE)(keys=keys, args=(value, settings.SYNC_LOCK_TTL))
    except RedisError:
        _unanswered.add((database_id, token))
        raise
    return None if held == BACKING_OFF else _parsed(held)


# Takes and releases whose answer never came (a Redis that hung, then woke up): the server may
# have run them after the client gave up, leaving a lock that no queued message will ever free
# until it lapses. Each is released, by its token, when Redis answers this process again.
_unanswered: set[tuple[int, str]] = set()


def release_unanswered() -> None:
    """Release the locks that takes or releases of this process may have left behind."""
    for database_id, token in list(_unanswered):
        release(database_id, token)
        _unanswered.discard((database_id, token))


def acquire(database_id: int, token: str) -> bool:
    """Take the free in-flight lock for a run about to be queued; False if it is taken."""
    value = f"{LockState.QUEUED}:{token}"
    return bool(lock_client().set(lock_key(database_id), value, nx=True, ex=settings.SYNC_LOCK_TTL))


def holder(database_id: int) -> tuple[LockState, str] | None:
    """Return the state and token of the run holding the lock, if any."""
    held = lock_client().get(lock_key(database_id))
    return _parsed(str(held)) if held else None


def claim(database_id: int, token: str, state: LockState, seconds: int) -> bool:
    """Move the lock to a new state if this token holds it or it is free; False otherwise."""
    keys = (lock_key(database_id),)
    return bool(_script(CLAIM)(keys=keys, args=(token, f"{state}:{token}", seconds)))


def release(database_id: int, token: str) -> None:
    try:
        _script(RELEASE)(keys=(lock_key(database_id),), args=(token,))
    except RedisError:
        _unanswered.add((database_id, token))
        raise


def _parsed(held: str) -> tuple[LockState, str]:
    state, _, token = held.partition(":")
    return LockState(state), token


def _script(source: str) -> Script:
    """Return the Lua script on the lock client: sent by its digest, loaded when missing."""
    return lock_client().register_script(source)
