"""Turns of the periodic work: how many renewals are in flight, which databases a poll is due."""

import time
from collections.abc import Iterable

from django.conf import settings

from sync.changes.store import RENEWALS_KEY, backoff_key, client, lease_key, poll_key


def renewals_in_flight() -> int:
    """Return how many renewal reflections are queued or running (lost ones lapse)."""
    with client().pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(RENEWALS_KEY, "-inf", time.time() - settings.SYNC_LOCK_TTL)
        pipe.zcard(RENEWALS_KEY)
        return int(pipe.execute()[1])


def reflection_ended(database_id: int) -> None:
    """Say that a reflection task of the database ended: its renewal is no longer in flight."""
    client().zrem(RENEWALS_KEY, str(database_id))


def take_poll_turns(database_ids: Iterable[int], seconds: int) -> list[int]:
    """Return the databases due for a poll, and mark them polled for `seconds`.

    Not due: polled within `seconds`, backing off, or with a reflection in flight.
    """
    ids = list(database_ids)
    with client().pipeline(transaction=False) as pipe:
        for database_id in ids:
            pipe.exists(lease_key(database_id), backoff_key(database_id))
        busy = pipe.execute()
        candidates = [i for i, held in zip(ids, busy, strict=True) if not held]
        for database_id in candidates:
            pipe.set(poll_key(database_id), 1, ex=seconds, nx=True)
        taken = pipe.execute()
    return [i for i, turn in zip(candidates, taken, strict=True) if turn]
