"""The recency key: whether a database was reflected within SYNC_REFLECTION_INTERVAL."""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from sync.changes import store
from sync.models import Database


def recency_key(database_id: int) -> str:
    return f"database_reflected_recently:{database_id}"


def reflected_moments_ago(database: Database) -> bool:
    """Whether the last reflection ended less than SYNC_MIN_REFLECTION_GAP seconds ago.

    A floor under the recency key, read from the row the caller already holds: whatever happens
    to the key, list traffic queues at most one reflection of a database per gap.
    """
    if database.reflected_at is None:
        return False
    gap = timedelta(seconds=settings.SYNC_MIN_REFLECTION_GAP)
    return timezone.now() - database.reflected_at < gap


def is_recent(database_id: int) -> bool:
    return cache.get(recency_key(database_id)) is not None


def mark_recent(database_id: int, reflected_at: datetime) -> None:
    """Mark the database fresh for SYNC_REFLECTION_INTERVAL and clear its back-off."""
    interval = settings.SYNC_REFLECTION_INTERVAL
    cache.set(recency_key(database_id), reflected_at.isoformat(), interval)
    store.client().delete(store.backoff_key(database_id))


def expire(database_id: int) -> None:
    """Forget that a database was reflected recently, so the next list queues a reflection."""
    cache.delete(recency_key(database_id))


def recent_among(database_ids: list[int]) -> list[bool]:
    """Return, for each database, whether its recency key is set (one round trip)."""
    found = cache.get_many([recency_key(i) for i in database_ids])
    return [recency_key(i) in found for i in database_ids]
