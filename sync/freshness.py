"""The freshness gate of list views: queue one reflection when the recency key expired.

Never waits for a reflection and never raises into a view: a cache or broker outage is
logged and reported as a status.
"""

import contextlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu import Producer
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from sync import recency
from sync.breaker import Breaker
from sync.models import Database
from sync.recency import LockState

logger = logging.getLogger(__name__)


# Published by name: the gate sits above the tasks and must not import them.
REFLECT_TASK = "sync.tasks.reflect_db_objects"
IMPORT_TASK = "sync.tasks.import_database"
PUBLISH_TIMEOUTS = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}
PUBLISH_ERRORS = (BrokerError, RedisError, OSError)
# After Redis failed to answer, lists stop asking it for a few seconds: a Redis that hangs
# costs one request its socket timeouts, not every request (see sync/breaker.py).
REDIS_BREAKER = Breaker("redis", cooldown=settings.SYNC_REDIS_COOLDOWN)


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
        if reflected_moments_ago(database):
            return Freshness(Status.FRESH)
        with REDIS_BREAKER:
            if recency.is_recent(database.id):
                return Freshness(Status.FRESH)
            token = uuid.uuid4().hex
            held = recency.take(database.id, token)
        if held is None:
            return Freshness(Status.FAILED)  # backed off after a failure
        if held[1] != token:
            return Freshness(LOCK_STATUS[held[0]], held[1])
        return publish(database, REFLECT_TASK, {"force": False}, token)
    except (RedisError, OSError):
        logger.warning("reflection state of %s unavailable: cache down", database.name)
        return Freshness(Status.UNAVAILABLE)


def reflected_moments_ago(database: Database) -> bool:
    """Whether the last reflection ended less than SYNC_MIN_REFLECTION_GAP seconds ago.

    A floor under the recency key, read from the row the view already holds: whatever happens
    to the key, list traffic queues at most one reflection of a database per gap.
    """
    if database.reflected_at is None:
        return False
    gap = timedelta(seconds=settings.SYNC_MIN_REFLECTION_GAP)
    return timezone.now() - database.reflected_at < gap


def request_reflection(database: Database) -> Freshness:
    """Queue a reflection now, fresh or not, unless one is already queued or running."""
    return request(database, REFLECT_TASK, {"force": True})


def request_import(database: Database) -> Freshness:
    """Queue the import of a database now, unless a reflection of it is queued or running."""
    return request(database, IMPORT_TASK, {})


def request(database: Database, task: str, kwargs: dict[str, Any]) -> Freshness:
    try:
        token = uuid.uuid4().hex
        if recency.acquire(database.id, token):
            return publish(database, task, kwargs, token)
        held = recency.holder(database.id)  # None if it was released meanwhile
        return Freshness(LOCK_STATUS[held[0]], held[1]) if held else Freshness(Status.QUEUED)
    except (RedisError, OSError):
        return Freshness(Status.UNAVAILABLE)


def status_of(database: Database) -> Freshness:
    """Report where a database stands without queuing anything."""
    try:
        with REDIS_BREAKER:
            held = recency.holder(database.id)
        if held is not None:
            return Freshness(LOCK_STATUS[held[0]], held[1])
        if reflected_moments_ago(database) or recency.is_recent(database.id):
            return Freshness(Status.FRESH)
        if recency.backing_off(database.id) or database.last_error:
            return Freshness(Status.FAILED)
        return Freshness(Status.STALE)
    except (RedisError, OSError):
        return Freshness(Status.UNAVAILABLE)


def publish(database: Database, task: str, kwargs: dict[str, Any], token: str) -> Freshness:
    """Publish one task under the in-flight lock taken for it; free the lock if that fails."""
    try:
        _publisher.send(task, (database.id,), kwargs, token)
    except PUBLISH_ERRORS:
        recency.release(database.id, token)
        logger.warning("could not queue %s for %s: broker unavailable", task, database.name)
        return Freshness(Status.UNAVAILABLE)
    return Freshness(Status.QUEUED, token, queued_now=True)


class _Publisher(threading.local):
    """This thread's producer on a broker connection of its own, kept from one publish to the next.

    A connection opened for each publish, with its channel and queue declaration, cost
    milliseconds of a web process's CPU. Tight timeouts and no retries: a dead or stuck broker
    costs a request a second or two, and then an "unavailable" status.
    """

    def __init__(self) -> None:
        self.producer: Producer | None = None
        self.url = ""

    def send(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], task_id: str) -> None:
        """Publish a task. After a broker restart, the Redis client reconnects by itself."""
        url = current_app.conf.broker_write_url or current_app.conf.broker_url
        if self.producer is None or url != self.url:
            self.close()
            connection = current_app.connection_for_write(transport_options=PUBLISH_TIMEOUTS)
            self.producer, self.url = current_app.amqp.Producer(connection, auto_declare=False), url
        try:
            current_app.send_task(
                task,
                args,
                kwargs,
                task_id=task_id,
                producer=self.producer,
                retry=False,
                # Nobody waits on a reflection's result: do not subscribe to it.
                ignore_result=task == REFLECT_TASK,
            )
        except PUBLISH_ERRORS:
            self.close()  # the next publish starts on a new connection
            raise

    def close(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(*PUBLISH_ERRORS):
                self.producer.connection.release()
            self.producer = None


_publisher = _Publisher()


def _forget_publisher_after_fork() -> None:
    _publisher.producer = None  # the parent's socket is not this process's to use


os.register_at_fork(after_in_child=_forget_publisher_after_fork)


def renew_expired() -> dict[str, int]:
    """Pass every registered database through the gate: queue those whose key expired."""
    outcome: dict[str, int] = {}
    for database in Database.objects.all():
        status = ensure_fresh(database).status
        outcome[status] = outcome.get(status, 0) + 1
    return outcome
