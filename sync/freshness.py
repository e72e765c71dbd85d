"""The freshness gate of list views: queue one reflection when the recency key expired.

Never waits for a reflection and never raises into a view: a cache or broker outage is
logged and reported as a status.
"""

import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from sync import recency, tasks
from sync.models import Database
from sync.recency import LockState

logger = logging.getLogger(__name__)


class Status(StrEnum):
    FRESH = "fresh"
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


LOCK_STATUS = {
    LockState.QUEUED: Status.QUEUED,
    LockState.RUNNING: Status.RUNNING,
    LockState.RETRYING: Status.FAILED,
}


@dataclass(frozen=True)
class Freshness:
    status: Status
    task_id: str | None = None


def ensure_fresh(database: Database) -> Freshness:
    """Queue a reflection if the database was not reflected recently; report where it stands."""
    try:
        if recency.is_recent(database.id):
            return Freshness(Status.FRESH)
        held = recency.holder(database.id)
        if held is not None:
            return Freshness(LOCK_STATUS[held[0]], held[1])
        if recency.backing_off(database.id):
            return Freshness(Status.FAILED)
        return publish(database, force=False)
    except (RedisError, OSError):
        logger.warning("reflection state of %s unavailable: cache down", database.name)
        return Freshness(Status.UNAVAILABLE)


def request_reflection(database: Database) -> Freshness:
    """Queue a reflection now, fresh or not, unless one is already queued or running."""
    held = recency.holder(database.id)
    if held is not None:
        return Freshness(LOCK_STATUS[held[0]], held[1])
    return publish(database, force=True)


def status_of(database: Database) -> Freshness:
    """Report where a database stands without queuing anything."""
    try:
        held = recency.holder(database.id)
        if held is not None:
            return Freshness(LOCK_STATUS[held[0]], held[1])
        if recency.is_recent(database.id):
            return Freshness(Status.FRESH)
        if recency.backing_off(database.id) or database.last_error:
            return Freshness(Status.FAILED)
        return Freshness(Status.QUEUED if database.reflected_at is None else Status.FRESH)
    except (RedisError, OSError):
        return Freshness(Status.UNAVAILABLE)


def publish(database: Database, force: bool) -> Freshness:
    """Take the in-flight lock and publish one task; whoever loses the race reports the winner."""
    token = uuid.uuid4().hex
    if not recency.acquire(database.id, token):
        held = recency.holder(database.id)
        return Freshness(LOCK_STATUS[held[0]], held[1]) if held else Freshness(Status.QUEUED)
    task = tasks.reflect_db_objects
    try:
        # A connection of its own and no retries: a dead broker fails this request at once.
        with task.app.connection_for_write() as connection:
            task.apply_async(
                (database.id,), {"force": force}, task_id=token, connection=connection, retry=False
            )
    except (BrokerError, RedisError, OSError):
        recency.release(database.id, token)
        logger.warning("could not queue a reflection of %s: broker unavailable", database.name)
        return Freshness(Status.UNAVAILABLE)
    return Freshness(Status.QUEUED, token)
