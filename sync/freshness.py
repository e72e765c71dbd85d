"""The freshness gate of list views: queue one reflection when the recency key expired.

Never waits for a reflection and never raises into a view: a cache or broker outage is
logged and reported as a status.
"""

import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from celery import current_app
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from sync import recency
from sync.models import Database
from sync.recency import LockState

logger = logging.getLogger(__name__)


# Published by name: the gate sits above the tasks and must not import them.
REFLECT_TASK = "sync.tasks.reflect_db_objects"
IMPORT_TASK = "sync.tasks.import_database"
PUBLISH_TIMEOUTS = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}


class Status(StrEnum):
    FRESH = "fresh"
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"
    STALE = "stale"  # not recent, nothing queued: only where asking must not queue


LOCK_STATUS = {
    LockState.QUEUED: Status.QUEUED,
    LockState.RUNNING: Status.RUNNING,
    LockState.RETRYING: Status.FAILED,
}


@dataclass(frozen=True)
class Freshness:
    status: Status
    task_id: str | None = None
    queued_now: bool = False  # this call published the task (rather than found one)


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
        return publish(database, REFLECT_TASK, {"force": False})
    except (RedisError, OSError):
        logger.warning("reflection state of %s unavailable: cache down", database.name)
        return Freshness(Status.UNAVAILABLE)


def request_reflection(database: Database) -> Freshness:
    """Queue a reflection now, fresh or not, unless one is already queued or running."""
    return request(database, REFLECT_TASK, {"force": True})


def request_import(database: Database) -> Freshness:
    """Queue the import of a database now, unless a reflection of it is queued or running."""
    return request(database, IMPORT_TASK, {})


def request(database: Database, task: str, kwargs: dict[str, Any]) -> Freshness:
    try:
        held = recency.holder(database.id)
        if held is not None:
            return Freshness(LOCK_STATUS[held[0]], held[1])
        return publish(database, task, kwargs)
    except (RedisError, OSError):
        return Freshness(Status.UNAVAILABLE)


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
        return Freshness(Status.STALE)
    except (RedisError, OSError):
        return Freshness(Status.UNAVAILABLE)


def publish(database: Database, task: str, kwargs: dict[str, Any]) -> Freshness:
    """Take the in-flight lock and publish one task; whoever loses the race reports the winner."""
    token = uuid.uuid4().hex
    if not recency.acquire(database.id, token):
        held = recency.holder(database.id)
        return Freshness(LOCK_STATUS[held[0]], held[1]) if held else Freshness(Status.QUEUED)
    try:
        # A connection of its own, tight timeouts and no retries: a dead or stuck broker
        # costs this request at most a second or two, and then an "unavailable" status.
        with current_app.connection_for_write(transport_options=PUBLISH_TIMEOUTS) as connection:
            current_app.send_task(
                task,
                (database.id,),
                kwargs,
                task_id=token,
                connection=connection,
                retry=False,
                # Nobody waits on a reflection's result: do not subscribe to it.
                ignore_result=task == REFLECT_TASK,
            )
    except (BrokerError, RedisError, OSError):
        recency.release(database.id, token)
        logger.warning("could not queue %s for %s: broker unavailable", task, database.name)
        return Freshness(Status.UNAVAILABLE)
    return Freshness(Status.QUEUED, token, queued_now=True)


def renew_expired() -> dict[str, int]:
    """Pass every registered database through the gate: queue those whose key expired."""
    outcome: dict[str, int] = {}
    for database in Database.objects.all():
        status = ensure_fresh(database).status
        outcome[status] = outcome.get(status, 0) + 1
    return outcome
