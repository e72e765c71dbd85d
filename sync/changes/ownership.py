"""Which listener listens to which watched database: leases in Redis, shared out evenly.

Every listener beats: its id in a sorted set scored by the time of its last beat, and each
database it holds under an owner key that expires unless the beat renews it. A listener holds
its fair share, the databases split evenly over the live listeners (the shares add up to every
database): it gives back what is over and claims free databases up to it. So a new listener
takes its share from the others at their next balance, and the databases of one that died
become free when its keys expire, and are claimed by the others.
"""

import os
import random
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import cast

from django.conf import settings

from sync.changes import store

LISTENERS_KEY = "dbsync:listeners"  # sorted set: listener id -> Unix time of its last beat


def owner_key(database_id: int) -> str:
    return f"dbsync:listener-owner:{database_id}"


# Renew every owner key that still names this listener; return the ids of those it lost.
RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('PEXPIRE', key, ARGV[2])
    else
        table.insert(lost, i)
    end
end
return lost
"""

# Delete owner keys only where they still name this listener.
RELEASE = """
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


def new_listener_id() -> str:
    """Return an id for this listener process: its host and pid, for operators, and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_seconds() -> float:
    return float(settings.SYNC_LISTENER_LEASE_SECONDS)


def beat(listener: str, held: Sequence[int]) -> set[int]:
    """Say this listener lives and renew its owner keys; return the databases it no longer holds
    (the next balance drops them)."""
    store.client().zadd(LISTENERS_KEY, {listener: time.time()})
    if not held:
        return set()
    keys = [owner_key(i) for i in held]
    ttl = int(lease_seconds() * 1000)
    lost = cast(list[int], store.script(RENEW)(keys=keys, args=[listener, ttl]))
    return {held[i - 1] for i in lost}


def live_listeners() -> list[str]:
    """Return the listeners that beat within the lease; forget the others."""
    client = store.client()
    oldest = time.time() - lease_seconds()
    client.zremrangebyscore(LISTENERS_KEY, "-inf", oldest)
    return cast(list[str], client.zrangebyscore(LISTENERS_KEY, oldest, "+inf"))


def fair_share(listener: str, live: Iterable[str], databases: int) -> int:
    """Return how many databases this listener should hold: an even split, the remainder going
    one each to the first listeners by id, so that the shares of all add up to every database."""
    ranked = sorted(set(live) | {listener})
    share, remainder = divmod(databases, len(ranked))
    return share + (1 if ranked.index(listener) < remainder else 0)


def owners(database_ids: Sequence[int]) -> dict[int, str | None]:
    """Return the listener holding each database, None where nobody does."""
    if not database_ids:
        return {}
    held = cast(list[str | None], store.client().mget([owner_key(i) for i in database_ids]))
    return dict(zip(database_ids, held, strict=True))


def balance(listener: str, database_ids: Iterable[int]) -> set[int]:
    """Give back what is over this listener's share, claim free databases up to it; return what
    it holds now. Called at every refresh of the listener."""
    ids = sorted(set(database_ids))
    share = fair_share(listener, live_listeners(), len(ids))
    held_by = owners(ids)
    mine = [i for i in ids if held_by[i] == listener]
    random.shuffle(mine)  # which ones go back: any, but not always the same
    if len(mine) > share:
        release(listener, mine[share:])
        return set(mine[:share])
    free = [i for i in ids if held_by[i] is None]
    random.shuffle(free)  # listeners that claim at once mostly reach for different ones
    claimed = claim(listener, free[: share - len(mine)])
    return set(mine) | claimed


def claim(listener: str, database_ids: Sequence[int]) -> set[int]:
    """Take the owner key of each free database; return those this listener got."""
    if not database_ids:
        return set()
    ttl = int(lease_seconds() * 1000)
    with store.client().pipeline(transaction=False) as pipe:
        for database_id in database_ids:
            pipe.set(owner_key(database_id), listener, nx=True, px=ttl)
        results = pipe.execute()
    return {i for i, taken in zip(database_ids, results, strict=True) if taken}


def release(listener: str, database_ids: Sequence[int]) -> None:
    """Give the databases back, where this listener still holds them."""
    if database_ids:
        store.script(RELEASE)(keys=[owner_key(i) for i in database_ids], args=[listener])


def leave(listener: str, database_ids: Sequence[int]) -> None:
    """Give everything back and leave the set of live listeners (a clean stop)."""
    release(listener, database_ids)
    store.client().zrem(LISTENERS_KEY, listener)


def held_counts(database_ids: Sequence[int]) -> dict[str, int]:
    """Return how many of the databases each live listener holds (0 for one holding none)."""
    counts = dict.fromkeys(live_listeners(), 0)
    for owner in owners(database_ids).values():
        if owner is not None:
            counts[owner] = counts.get(owner, 0) + 1
    return counts
