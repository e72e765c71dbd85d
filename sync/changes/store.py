"""The state Redis: its client, the keys of each database's reflection state, its Lua scripts."""

import redis
from django.conf import settings
from redis.commands.core import Script
from redis.exceptions import RedisError

STATE_ERRORS = (RedisError, OSError)


def lease_key(database_id: int) -> str:
    return f"dbsync:lease:{database_id}"


def backoff_key(database_id: int) -> str:
    return f"dbsync:backoff:{database_id}"


def dirty_key(database_id: int) -> str:
    return f"dbsync:dirty:{database_id}"


def poll_key(database_id: int) -> str:
    return f"dbsync:polled:{database_id}"


def listening_key(database_id: int) -> str:
    return f"dbsync:listening:{database_id}"


def changed_key(database_id: int) -> str:
    return f"dbsync:changed-at:{database_id}"


RENEWALS_KEY = "dbsync:renewals"  # sorted set: database id -> when its renewal was queued
RECONNECTS_KEY = "dbsync:listener-reconnects"  # hash: database id -> LISTEN reconnects so far


def client() -> redis.Redis:
    """Return this process's client of the state Redis; short timeouts, as requests wait on it."""
    url = settings.SYNC_STATE_REDIS_URL
    if _client.url != url:  # a test may point the state at a Redis of its own
        _client.url = url
        _client.redis = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, decode_responses=True
        )
    return _client.redis


class _Client:
    url = ""
    redis: redis.Redis


_client = _Client()


def script(source: str) -> Script:
    """Return the Lua script on the state client: sent by its digest, loaded when missing."""
    return client().register_script(source)
