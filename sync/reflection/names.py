"""The name cache: current qualified names of relations by (database, oid), in Django's cache."""

import logging
from collections.abc import Mapping

from django.core.cache import cache
from redis.exceptions import RedisError

from sync.breaker import REDIS_BREAKER
from sync.remote.catalog import QualifiedName

logger = logging.getLogger(__name__)

# Names are rewritten by every reflection that changes them; the timeout only bounds memory.
NAME_TIMEOUT = 7 * 24 * 3600


def name_key(database_id: int, oid: int) -> str:
    return f"name:{database_id}:{oid}"


def remember(database_id: int, names: Mapping[int, QualifiedName]) -> None:
    """Store the qualified names of relations; a cache outage is logged, never raised."""
    if not names:
        return
    entries = {name_key(database_id, oid): name for oid, name in names.items()}
    try:
        with REDIS_BREAKER:
            cache.set_many(entries, timeout=NAME_TIMEOUT)
    except (RedisError, OSError):
        logger.warning(
            "name cache unavailable: %d names of database %s not stored", len(entries), database_id
        )


def lookup(database_id: int, oid: int) -> QualifiedName | None:
    """Return the cached qualified name of a relation, or None on a miss or outage."""
    try:
        with REDIS_BREAKER:  # a Redis that hangs costs one read its timeout, not every read
            found = cache.get(name_key(database_id, oid))
    except (RedisError, OSError):
        logger.warning("name cache unavailable: lookup of %s/%s skipped", database_id, oid)
        return None
    return tuple(found) if found else None
