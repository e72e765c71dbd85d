"""Health of the parts dbsync needs: the service database, Redis (cache and state), the broker."""

import logging
from collections.abc import Callable

import redis
from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connection
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from sync.breaker import REDIS_BREAKER

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


# Seconds each Redis part may take to answer: /healthz answers within about a second even
# while Redis hangs, naming the parts that did not answer.
HEALTH_TIMEOUT = 0.3


def ping(url: str) -> None:
    """Ask the Redis at url for a PONG, on a connection of its own with short timeouts."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=HEALTH_TIMEOUT, socket_timeout=HEALTH_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


def check_cache() -> None:
    # Through the breaker: while it is open, Redis failed moments ago and is not waited on.
    with REDIS_BREAKER:
        ping(str(settings.CACHES["default"]["LOCATION"]))
        ping(settings.SYNC_STATE_REDIS_URL)


def check_broker() -> None:
    url = str(current_app.conf.broker_write_url or current_app.conf.broker_url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        ping(url)
        return
    with current_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=0, timeout=1)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
}


def report() -> dict[str, str]:
    """Return "ok" or what went wrong, for each part."""
    states: dict[str, str] = {}
    for part, check in CHECKS.items():
        try:
            check()
            states[part] = "ok"
        except (DatabaseError, RedisError, BrokerError, OSError) as error:
            logger.warning("health: %s is down: %s", part, error)
            states[part] = f"down: {type(error).__name__}"
    return states
