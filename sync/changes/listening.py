"""The listener's bookkeeping: which databases it holds a live LISTEN connection to, reconnects."""

from collections.abc import Iterable
from typing import cast

from django.conf import settings

from sync.breaker import REDIS_BREAKER
from sync.changes.store import RECONNECTS_KEY, STATE_ERRORS, client, listening_key
from sync.models import Database


def mark_listening(database_ids: Iterable[int], seconds: int) -> None:
    """Say that the listener holds a live connection to each database, for `seconds`."""
    with client().pipeline(transaction=False) as pipe:
        for database_id in database_ids:
            pipe.set(listening_key(database_id), 1, ex=seconds)
        pipe.execute()


def listening(database_ids: Iterable[int]) -> list[bool]:
    """Return, for each database, whether the listener holds a live connection to it."""
    ids = list(database_ids)
    if not ids:
        return []
    values = cast(list[str | None], client().mget([listening_key(i) for i in ids]))
    return [value is not None for value in values]


def count_reconnect(database_id: int) -> None:
    """Count a LISTEN connection to the database opened again after it was lost."""
    client().hincrby(RECONNECTS_KEY, str(database_id), 1)


def reconnects() -> dict[int, int]:
    """Return the listener's reconnects so far, by database id."""
    counts = cast(dict[str, str], client().hgetall(RECONNECTS_KEY))
    return {int(database_id): int(count) for database_id, count in counts.items()}


def stop_listening(database_id: int) -> None:
    client().delete(listening_key(database_id))


def watch_mode(database: Database) -> str:
    """Return listen (triggers and a connected listener), poll, or off (nothing watches)."""
    try:
        with REDIS_BREAKER:
            listening = bool(client().exists(listening_key(database.id)))
    except STATE_ERRORS:
        listening = False
    if database.watch_installed_at is not None and listening:
        return "listen"
    if database.watch_installed_at is not None or settings.SYNC_POLL_INTERVAL > 0:
        return "poll"
    return "off"
