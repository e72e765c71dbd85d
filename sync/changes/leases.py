"""The task side of the gate: a running reflection's lease on its database, renewed as it works."""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import cast

from django.conf import settings

from sync.changes import recency, store
from sync.changes.store import STATE_ERRORS, changed_key, dirty_key, lease_key

logger = logging.getLogger(__name__)


class LeaseState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"


# Set state:token only if the lease is free or already holds this token.
CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, -string.len(ARGV[1])) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

# Delete the lease only if it still holds this token: a lapsed lease may belong to another run.
RELEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, -string.len(ARGV[1])) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


# RELEASE, answering 2 where a change was noticed meanwhile (the dirty mark is set): a notice
# that came after the run's last look at the mark, while the lease still deduplicated it, would
# otherwise wait for the next list or renewal.
RELEASE_SEEING_DIRTY = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, -string.len(ARGV[1])) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
    return 1
end
return 0
"""


class Lease:
    """A running reflection's hold on its database, renewed by a thread while the run works."""

    def __init__(self, database_id: int, token: str) -> None:
        self.database_id, self.token = database_id, token
        self.released = False
        self.left_dirty = False  # released with a change noticed and not reflected
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="dbsync-lease", daemon=True)

    def claim(self, state: LeaseState = LeaseState.RUNNING, seconds: int | None = None) -> bool:
        """Move the lease to a state if this run holds it or it is free; False otherwise."""
        seconds = seconds or settings.SYNC_LEASE_SECONDS
        keys = (lease_key(self.database_id),)
        args = (self.token, f"{state}:{self.token}", seconds)
        return bool(store.script(CLAIM)(keys=keys, args=args))

    def start_renewing(self) -> None:
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(settings.SYNC_LEASE_SECONDS / 3):
            try:
                if not self.claim():
                    logger.warning("lease of database %s taken over", self.database_id)
                    return
            except STATE_ERRORS as error:
                logger.warning(
                    "lease of database %s not renewed: Redis: %s", self.database_id, error
                )

    def take_dirty(self) -> str | None:
        """Clear the dirty mark before a snapshot begins; return the trigger that set it."""
        return cast(str | None, store.client().getdel(dirty_key(self.database_id)))

    def dirty(self) -> bool:
        return bool(store.client().exists(dirty_key(self.database_id)))

    def succeeded(self, reflected_at: datetime) -> float | None:
        """Mark the database fresh; return the seconds since the change it shows was heard of."""
        recency.mark_recent(self.database_id, reflected_at)
        heard = cast(str | None, store.client().getdel(changed_key(self.database_id)))
        return None if heard is None else max(0.0, reflected_at.timestamp() - float(heard))

    def retry_after(self, seconds: int) -> None:
        """Back the database off and keep the lease for the retry, `seconds` from now."""
        store.client().set(store.backoff_key(self.database_id), seconds, ex=seconds)
        self._stop.set()
        self.claim(LeaseState.RETRYING, seconds + settings.SYNC_LEASE_SECONDS)
        self.released = True  # the retry holds it now

    def failed(self, seconds: int) -> None:
        """Back the database off after a failure that is not retried."""
        store.client().set(store.backoff_key(self.database_id), seconds, ex=seconds)

    def release(self) -> None:
        self._stop.set()
        if not self.released:
            keys = (lease_key(self.database_id), dirty_key(self.database_id))
            self.left_dirty = store.script(RELEASE_SEEING_DIRTY)(keys=keys, args=(self.token,)) == 2
            self.released = True


@contextmanager
def lease(database_id: int, token: str) -> Iterator[Lease | None]:
    """Hold the lease of a database for run `token`, renewed; None if another run holds it."""
    held = Lease(database_id, token)
    if not held.claim():
        yield None
        return
    held.start_renewing()
    try:
        yield held
    finally:
        held.release()


def release(database_id: int, token: str) -> None:
    try:
        store.script(RELEASE)(keys=(lease_key(database_id),), args=(token,))
    except STATE_ERRORS:
        unanswered(database_id, token)
        raise


# Takes and releases whose answer never came (a Redis that hung, then woke up): the server may
# have run them after the client gave up, leaving a lease that no queued message will ever free
# until it lapses. Each is released, by its token, when Redis answers this process again.
_unanswered: set[tuple[int, str]] = set()


def unanswered(database_id: int, token: str) -> None:
    """Remember a take or release of the lease whose answer never came."""
    _unanswered.add((database_id, token))


def release_unanswered() -> None:
    """Release the leases that takes or releases of this process may have left behind."""
    for database_id, token in list(_unanswered):
        release(database_id, token)
        _unanswered.discard((database_id, token))


def holder(database_id: int) -> tuple[LeaseState, str] | None:
    """Return the state and task id of the run holding the lease, if any."""
    held = cast(str | None, store.client().get(lease_key(database_id)))
    if not held:
        return None
    state, _, token = held.partition(":")
    return LeaseState(state), token
