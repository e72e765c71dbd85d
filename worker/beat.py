"""Beat's scheduler: django-celery-beat's own, ticking only while it holds a lock in Redis.

Any number of beat processes may run; the one holding the lock schedules, renewing it at every
tick (at least every third of its expiry), and the others stand by, trying every second. The
active one writes each job's last run to the database as soon as it sends it, and one that
takes over reads the schedule again first: a job sent just before the takeover is not due, so no
job runs twice in one of its periods.
"""

import logging
import os
import socket
import uuid
from typing import Any

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from sync.changes import store

logger = logging.getLogger(__name__)

LOCK_KEY = "dbsync:beat-lock"
STANDBY_SECONDS = 1.0  # how often a standby tries the lock

# Take the lock if it is free, or renew it if this beat holds it.
HOLD = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Give the lock back only if this beat still holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def hold_lock(holder: str) -> bool:
    """Take or renew the lock for this beat; False if another one holds it."""
    ttl = int(settings.SYNC_BEAT_LOCK_SECONDS * 1000)
    return bool(store.script(HOLD)(keys=[LOCK_KEY], args=[holder, ttl]))


def lock_holder() -> str | None:
    """Return the beat holding the lock (host:pid:nonce), if any."""
    held = store.client().get(LOCK_KEY)
    return None if held is None else str(held)


class LockedDatabaseScheduler(DatabaseScheduler):
    """DatabaseScheduler that schedules only while it holds the beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.active = False
        super().__init__(*args, **kwargs)
        # Tick, and so renew, at least every third of the lock's expiry.
        # Set by the parent, which mypy cannot type.
        longest = float(self.max_interval)  # type: ignore[has-type]
        self.max_interval = min(longest, settings.SYNC_BEAT_LOCK_SECONDS / 3)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Schedule if this beat holds the lock; else stand by and try again shortly."""
        if not self.hold():
            return STANDBY_SECONDS
        return float(super().tick(*args, **kwargs))

    def hold(self) -> bool:
        try:
            held = hold_lock(self.holder)
        except store.STATE_ERRORS as error:
            logger.warning("beat: lock unknown, standing by: Redis: %s", error)
            held = False
        if held and not self.active:
            logger.info("beat %s: holding the lock, scheduling", self.holder)
            self.read_again()
        elif self.active and not held:
            logger.warning("beat %s: lock lost, standing by", self.holder)
        self.active = held
        return held

    def read_again(self) -> None:
        """Read every job's last run from the database: another beat may have sent it since."""
        self._dirty.clear()  # what this beat reserved before is not its to write any more
        self._initial_read = True
        self._heap = None

    def reserve(self, entry: Any) -> Any:
        """Advance the entry, and keep the advanced one in the schedule, as Celery's own does.

        django-celery-beat's leaves the old one there: when the heap is built again from the
        schedule (it changed while this beat read it, as another beat's start changes it), the
        old entry is due again and its job is sent twice.
        """
        advanced = super().reserve(entry)
        if self._schedule is not None and entry.name in self._schedule:
            self._schedule[entry.name] = advanced
        return advanced

    def should_sync(self) -> bool:
        """Write each job's last run as soon as it is sent, for a beat that takes over."""
        return True

    def close(self) -> None:
        """Give the lock back on a clean stop: the standby takes over at its next try."""
        super().close()
        if self.active:
            try:
                store.script(RELEASE)(keys=[LOCK_KEY], args=[self.holder])
            except store.STATE_ERRORS as error:
                logger.warning("beat: lock not given back: Redis: %s", error)
