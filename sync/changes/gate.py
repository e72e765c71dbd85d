"""The reflection state of each database, and the one gate every caller queues reflections through.

State of a database, as its keys say (recency in Django's cache, the rest in the state Redis):

    fresh      the recency key is set; no lease, no back-off, no dirty mark
    stale      the recency key expired (or was never set); nothing in flight
    queued     lease "queued:<task id>": a task is published and not yet started
    running    lease "running:<task id>": a worker reflects; it renews the short lease while it
               works, so a holder that died is forgotten within SYNC_LEASE_SECONDS
    retrying   lease "retrying:<task id>": the task waits for its retry after a failure
    backing    back-off key set after a failure: no reflection is queued until it lapses
    dirty      dirty mark set: a change is known that the models do not have yet (and the
               changed-at key says since when, for the DDL-to-visible figure)

Beside them, the renewal's in-flight set: the databases whose renewal reflection is queued or
running, which bounds how many the renewal hands out (sync.changes.polling.renew_expired).

Transitions:

    stale or dirty  --ensure_fresh (list, page, on-the-fly read, renewal)-->  queued
    any             --notice_change (listener, poll, on-the-fly read saw a change)--> dirty, then
                      queued unless a lease is held or the back-off lasts
    queued          --the task claims its lease-->  running
    queued (renewal) --a list, page, on-the-fly read, API, admin or listener request-->  queued by
                      that caller's task on the interactive queue; the renewal's finds it taken
    running         --clears the dirty mark, reflects; marked again meanwhile? reflects again-->
    running         --success-->  fresh (recency set, back-off cleared, lease released)
    running         --database unreachable-->  retrying + backing
    any             --an on-the-fly read or the listener finds the database unreachable-->  backing
    backing         --the back-off lapses-->  stale (the next caller queues)

Every caller obeys the back-off; only an explicit staff request (POST databases/ID/reflect/, the
admin's actions) overrides it, because a person asked for it and sees the answer.
"""

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from sync import metrics
from sync.breaker import REDIS_BREAKER
from sync.changes import leases, publisher, queues, recency, store, task_names
from sync.changes.leases import LeaseState, release, release_unanswered
from sync.changes.store import STATE_ERRORS, backoff_key, changed_key, client, dirty_key, lease_key
from sync.models import Database, ReflectionRun

logger = logging.getLogger(__name__)

# How long a database is not asked again after an on-the-fly read or the listener found it
# unreachable.
UNREACHABLE_BACKOFF_SECONDS = 10
DIRTY_TTL = 24 * 3600
# The callers are guarded by REDIS_BREAKER: a Redis that hangs costs one request its socket
# timeouts, not every request. The task side (leases) is not: a worker waits for Redis rather
# than give its work up.


class Status(StrEnum):
    FRESH = "fresh"
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"
    STALE = "stale"  # not recent, nothing queued: only where asking must not queue


LEASE_STATUS = {
    LeaseState.QUEUED: Status.QUEUED,
    LeaseState.RUNNING: Status.RUNNING,
    LeaseState.RETRYING: Status.FAILED,
}


@dataclass(frozen=True)
class Freshness:
    status: Status
    task_id: str | None = None
    queued_now: bool = False  # this call published the task (rather than found one)


BACKING_OFF = "backing-off"
FRESH = "fresh"

# The renewal's tasks carry this prefix in their id (and so in the lease they hold while queued).
RENEWAL_TASK_PREFIX = "renewal-"

# The whole decision of a caller, in one atomic round trip: mark the database dirty if asked;
# then report a lease held, or the back-off (unless overridden), or freshness (when the caller
# found the recency key and nothing is dirty); else take the lease for a task about to be queued.
# A caller a person or a change waits on (take over = 1) takes the lease of a renewal task still
# queued: that one may wait on the bulk queue, behind a countdown; when it runs, it finds the
# lease taken, or the database fresh, and does nothing.
# KEYS: lease, backoff, dirty, changed-at. ARGV: lease value, lease seconds, recent (0/1), mark
# ('' or the trigger), override back-off (0/1), dirty mark seconds, now (Unix time), take over.
REQUEST = f"""
if ARGV[4] ~= '' then
    redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[6])
    redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[6], 'NX')
end
local held = redis.call('GET', KEYS[1])
local queued_renewal = '{LeaseState.QUEUED}:{RENEWAL_TASK_PREFIX}'
if held and not (ARGV[8] == '1' and string.sub(held, 1, #queued_renewal) == queued_renewal) then
    return held
end
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then return '{BACKING_OFF}' end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then return '{FRESH}' end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


# ---- callers: lists, pages, on-the-fly reads, the API, the admin, renewal, the listener ----


def ensure_fresh(
    database: Database,
    trigger: str = ReflectionRun.Trigger.LIST,
    countdown: float | None = None,
    recent: bool | None = None,
) -> Freshness:
    """Queue a reflection unless the database is fresh; never waits, never raises.

    The renewal passes a countdown (to spread its reflections) and what it already read of
    the recency key.
    """
    try:
        if recency.reflected_moments_ago(database):
            return _counted(Freshness(Status.FRESH), trigger, "fresh")
        with REDIS_BREAKER:
            recent = recency.is_recent(database.id) if recent is None else recent
            return _request(database, Ask(trigger, recent=recent, countdown=countdown))
    except STATE_ERRORS as error:
        logger.warning("reflection state of %s unavailable: Redis: %s", database.name, error)
        return _counted(Freshness(Status.UNAVAILABLE), trigger, "unavailable")


def notice_change(database: Database, trigger: str) -> Freshness:
    """Record that the database changed and queue a reflection, however recent the last one.

    If one is queued or running, the mark makes the running one reflect again when it ends.
    """
    try:
        with REDIS_BREAKER:
            return _request(database, Ask(trigger, mark=trigger))
    except STATE_ERRORS as error:
        logger.warning("change of %s not recorded: Redis: %s", database.name, error)
        return _counted(Freshness(Status.UNAVAILABLE), trigger, "unavailable")


def request_reflection(database: Database, trigger: str) -> Freshness:
    """Queue a reflection now for a staff request, overriding the back-off."""
    try:
        with REDIS_BREAKER:
            return _request(database, Ask(trigger, mark=trigger, override_backoff=True))
    except STATE_ERRORS as error:
        logger.warning("reflection of %s not queued: Redis: %s", database.name, error)
        return _counted(Freshness(Status.UNAVAILABLE), trigger, "unavailable")


def request_import(database: Database, override_backoff: bool = True) -> Freshness:
    """Queue the import of a database, unless one is in flight: at once for a staff request;
    obeying the back-off for the periodic import of new databases."""
    try:
        with REDIS_BREAKER:
            ask = Ask(
                ReflectionRun.Trigger.IMPORT,
                override_backoff=override_backoff,
                task=task_names.IMPORT_ONE,
            )
            return _request(database, ask)
    except STATE_ERRORS as error:
        logger.warning("import of %s not queued: Redis: %s", database.name, error)
        return Freshness(Status.UNAVAILABLE)


@dataclass(frozen=True)
class Ask:
    """What a caller asks of the gate for one database."""

    trigger: str
    recent: bool = False  # the caller found the recency key set
    mark: str = ""  # mark the database dirty, with this trigger: a change is known
    override_backoff: bool = False  # a staff request
    task: str = task_names.REFLECT
    countdown: float | None = None  # the renewal spreads its reflections


def _request(database: Database, ask: Ask) -> Freshness:
    """Decide in one round trip (REQUEST) and publish the task when this call took the lease."""
    trigger, mark, task = ask.trigger, ask.mark, ask.task
    release_unanswered()
    token = (
        RENEWAL_TASK_PREFIX if trigger == ReflectionRun.Trigger.RENEWAL else ""
    ) + uuid.uuid4().hex
    value = f"{LeaseState.QUEUED}:{token}"
    keys = (*_keys(database.id), changed_key(database.id))
    interactive = queues.queue_of(task, {"trigger": trigger}) == queues.INTERACTIVE
    take_over = task == task_names.REFLECT and interactive
    flags = (
        int(ask.recent),
        mark,
        int(ask.override_backoff),
        DIRTY_TTL,
        time.time(),
        int(take_over),
    )
    try:
        held = store.script(REQUEST)(keys=keys, args=(value, settings.SYNC_LOCK_TTL, *flags))
    except STATE_ERRORS:
        leases.unanswered(database.id, token)
        raise
    if held == FRESH:
        return _counted(Freshness(Status.FRESH), trigger, "fresh")
    if held == BACKING_OFF:
        return _counted(Freshness(Status.FAILED), trigger, "backing_off")
    if held != value:
        state, _, holder = held.partition(":")
        return _counted(Freshness(LEASE_STATUS[LeaseState(state)], holder), trigger, "deduplicated")
    kwargs: dict[str, Any] = {"database_id": database.id}
    if task == task_names.REFLECT:
        kwargs |= {"force": bool(mark), "trigger": trigger}
    try:
        publisher.publish(task, (), kwargs, token, ask.countdown)
    except publisher.PUBLISH_ERRORS as error:
        release(database.id, token)
        logger.warning("could not queue %s for %s: broker: %s", task, database.name, error)
        return _counted(Freshness(Status.UNAVAILABLE), trigger, "unavailable")
    if trigger == ReflectionRun.Trigger.RENEWAL:
        client().zadd(store.RENEWALS_KEY, {str(database.id): time.time()})
    return _counted(Freshness(Status.QUEUED, token, queued_now=True), trigger, "queued")


def _keys(database_id: int) -> tuple[str, str, str]:
    return lease_key(database_id), backoff_key(database_id), dirty_key(database_id)


def _counted(freshness: Freshness, trigger: str, decision: str) -> Freshness:
    metrics.GATE_DECISIONS.labels(decision, trigger).inc()
    return freshness


def describe(answer: Freshness, what: str) -> str:
    """Say in words what became of a request to queue `what` (admin, pages and API alike)."""
    if answer.status == Status.UNAVAILABLE:
        return "the task queue is unavailable; nothing was queued: try again"
    if answer.queued_now:
        return f"{what} queued"
    if answer.status == Status.FAILED:
        return "not queued: a reflection failed and waits to be retried"
    return f"not queued again: a reflection is already {answer.status}"


def status_of(database: Database) -> Freshness:
    """Report where a database stands without queuing anything."""
    return statuses_of([database])[0]


def statuses_of(databases: Sequence[Database]) -> list[Freshness]:
    """Report where each database stands without queuing anything, in two round trips for all."""
    keys = [key for d in databases for key in (lease_key(d.id), backoff_key(d.id), dirty_key(d.id))]
    try:
        with REDIS_BREAKER:
            values = cast(list[str | None], client().mget(keys)) if keys else []
            recent = recency.recent_among([database.id for database in databases])
    except STATE_ERRORS:
        return [Freshness(Status.UNAVAILABLE) for _ in databases]
    statuses = []
    for i, database in enumerate(databases):
        lease, backing_off, dirty = values[3 * i : 3 * i + 3]
        statuses.append(_status(database, lease, backing_off, dirty, recent[i]))
    return statuses


def _status(
    database: Database, lease: str | None, backing_off: str | None, dirty: str | None, recent: bool
) -> Freshness:
    if lease is not None:
        state, _, holder = lease.partition(":")
        return Freshness(LEASE_STATUS[LeaseState(state)], holder)
    if backing_off is not None or database.last_error:
        return Freshness(Status.FAILED)
    if dirty is None and (recency.reflected_moments_ago(database) or recent):
        return Freshness(Status.FRESH)
    return Freshness(Status.STALE)


def record_unreachable(database_id: int, message: str) -> None:
    """Say at once that a database does not answer, as an on-the-fly read or the listener found.

    The status turns failed, and nobody asks the database again for a short back-off.
    """
    try:
        now = timezone.now()
        Database.objects.filter(pk=database_id).update(last_error=message, last_error_at=now)
    except DatabaseError:
        logger.warning("database %s unreachable, not recorded: service database down", database_id)
    try:
        client().set(backoff_key(database_id), 1, ex=UNREACHABLE_BACKOFF_SECONDS, nx=True)
        recency.expire(database_id)
    except STATE_ERRORS as error:
        logger.warning("state of database %s not recorded: Redis: %s", database_id, error)
