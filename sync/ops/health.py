"""Health of the parts dbsync needs: the service database, Redis (cache and state), the broker."""

import logging
from collections.abc import Callable

from celery import current_app
from django.core.cache import cache
from django.db import DatabaseError, connection
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from sync.changes import store

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_cache() -> None:
    cache.get("healthz")
    store.client().ping()


def check_broker() -> None:
    with current_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=0, timeout=2)


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
