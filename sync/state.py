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
running, which bounds how many the renewal hands out (sync.polling.renew_expired).

Transitions:

    stale or dirty  --ensure_fresh (list, page, live read, renewal)-->  queued
    any             --notice_change (listener, poll, live read saw a change)--> dirty, then
                      queued unless a lease is held or the back-off lasts
    queued          --the task claims its lease-->  running
    queued (renewal) --a list, page, live read, API, admin or listener request-->  queued by
                      that caller's task on the interactive queue; the renewal's finds it taken
    running         --clears the dirty mark, reflects; marked again meanwhile? reflects again-->
    running         --success-->  fresh (recency set, back-off cleared, lease released)
    running         --database unreachable-->  retrying + backing
    any             --a live read or the listener finds the database unreachable-->  backing
    backing         --the back-off lapses-->  stale (the next caller queues)

Every caller obeys the back-off; only an explicit staff request (POST databases/ID/reflect/, the
admin's actions) overrides it, because a person asked for it and sees the answer.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.utils import timezone
from redis.commands.core import Script
from redis.exceptions import RedisError

from sync import metrics, publisher, queues, task_names
from sync.breaker import REDIS_BREAKER
from sync.models import Database, ReflectionRun

logger = logging.getLogger(__name__)

Trigger = ReflectionRun.Trigger
STATE_ERRORS = (RedisError, OSError)
# How long a database is not asked again after a live read or the listener found it unreachable.
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


class LeaseState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"


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


def recency_key(database_id: int) -> str:
    return f"database_reflected_recently:{database_id}"


def lease_key(database_id: int) -> str:
    return f"dbsync:lease:{database_id}"


def backoff_key(database_id: int) -> str:
    return f"dbsync:backoff:{database_id}"


def dirty_key(database_id: int) -> str:
    return f"dbsync:dirty:{database_id}"


def poll_key(database_id: int) -> str:
    return f"dbsync:polled:{database_id}"


def listening_key(database_id: int) -> str:
    return f"dbsync:listening:{database_id}"


def changed_key(database_id: int) -> str:
    return f"dbsync:changed-at:{database_id}"


RENEWALS_KEY = "dbsync:renewals"  # sorted set: database id -> when its renewal was queued
RECONNECTS_KEY = "dbsync:listener-reconnects"  # hash: database id -> LISTEN reconnects so far


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


def client() -> redis.Redis:
    """Return this process's client of the state Redis; short timeouts, as requests wait on it."""
    url = settings.SYNC_STATE_REDIS_URL
    if _client.url != url:  # a test may point the state at a Redis of its own
        _client.url = url
        _client.redis = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, decode_responses=True
        )
    return _client.redis


class _Client:
    url = ""
    redis: redis.Redis


_client = _Client()


def _script(source: str) -> Script:
    """Return the Lua script on the state client: sent by its digest, loaded when missing."""
    return client().register_script(source)


# ---- callers: lists, pages, live reads, the API, the admin, renewal, the listener ----


def ensure_fresh(
    database: Database,
    trigger: str = Trigger.LIST,
    countdown: float | None = None,
    recent: bool | None = None,
) -> Freshness:
    """Queue a reflection unless the database is fresh; never waits, never raises.

    The renewal passes a countdown (to spread its reflections) and what it already read of
    the recency key.
    """
    try:
        if reflected_moments_ago(database):
            return _counted(Freshness(Status.FRESH), trigger, "fresh")
        with REDIS_BREAKER:
            recent = is_recent(database.id) if recent is None else recent
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
            ask = Ask(Trigger.IMPORT, override_backoff=override_backoff, task=task_names.IMPORT_ONE)
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
    token = (RENEWAL_TASK_PREFIX if trigger == Trigger.RENEWAL else "") + uuid.uuid4().hex
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
        held = _script(REQUEST)(keys=keys, args=(value, settings.SYNC_LOCK_TTL, *flags))
    except STATE_ERRORS:
        _unanswered.add((database.id, token))
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
    if trigger == Trigger.RENEWAL:
        client().zadd(RENEWALS_KEY, {str(database.id): time.time()})
    return _counted(Freshness(Status.QUEUED, token, queued_now=True), trigger, "queued")


def _keys(database_id: int) -> tuple[str, str, str]:
    return lease_key(database_id), backoff_key(database_id), dirty_key(database_id)


def _counted(freshness: Freshness, trigger: str, decision: str) -> Freshness:
    metrics.GATE_DECISIONS.labels(decision, trigger).inc()
    return freshness


def status_of(database: Database) -> Freshness:
    """Report where a database stands without queuing anything."""
    return statuses_of([database])[0]


def statuses_of(databases: Sequence[Database]) -> list[Freshness]:
    """Report where each database stands without queuing anything, in two round trips for all."""
    keys = [key for d in databases for key in (lease_key(d.id), backoff_key(d.id), dirty_key(d.id))]
    try:
        with REDIS_BREAKER:
            values = cast(list[str | None], client().mget(keys)) if keys else []
            recent = recent_among([database.id for database in databases])
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
    if dirty is None and (reflected_moments_ago(database) or recent):
        return Freshness(Status.FRESH)
    return Freshness(Status.STALE)


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
    client().delete(backoff_key(database_id))


def expire(database_id: int) -> None:
    """Forget that a database was reflected recently, so the next list queues a reflection."""
    cache.delete(recency_key(database_id))


def record_unreachable(database_id: int, message: str) -> None:
    """Say at once that a database does not answer, as a live read or the listener found.

    The status turns failed, and nobody asks the database again for a short back-off.
    """
    try:
        now = timezone.now()
        Database.objects.filter(pk=database_id).update(last_error=message, last_error_at=now)
    except DatabaseError:
        logger.warning("database %s unreachable, not recorded: service database down", database_id)
    try:
        client().set(backoff_key(database_id), 1, ex=UNREACHABLE_BACKOFF_SECONDS, nx=True)
        expire(database_id)
    except STATE_ERRORS as error:
        logger.warning("state of database %s not recorded: Redis: %s", database_id, error)


# ---- the task side: a running reflection's lease ----


class Lease:
    """A running reflection's hold on its database, renewed by a thread while the run works."""

    def __init__(self, database_id: int, token: str) -> None:
        self.database_id, self.token = database_id, token
        self.released = False
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="dbsync-lease", daemon=True)

    def claim(self, state: LeaseState = LeaseState.RUNNING, seconds: int | None = None) -> bool:
        """Move the lease to a state if this run holds it or it is free; False otherwise."""
        seconds = seconds or settings.SYNC_LEASE_SECONDS
        keys = (lease_key(self.database_id),)
        args = (self.token, f"{state}:{self.token}", seconds)
        return bool(_script(CLAIM)(keys=keys, args=args))

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
        return cast(str | None, client().getdel(dirty_key(self.database_id)))

    def dirty(self) -> bool:
        return bool(client().exists(dirty_key(self.database_id)))

    def succeeded(self, reflected_at: datetime) -> float | None:
        """Mark the database fresh; return the seconds since the change it shows was heard of."""
        mark_recent(self.database_id, reflected_at)
        heard = cast(str | None, client().getdel(changed_key(self.database_id)))
        return None if heard is None else max(0.0, reflected_at.timestamp() - float(heard))

    def retry_after(self, seconds: int) -> None:
        """Back the database off and keep the lease for the retry, `seconds` from now."""
        client().set(backoff_key(self.database_id), seconds, ex=seconds)
        self._stop.set()
        self.claim(LeaseState.RETRYING, seconds + settings.SYNC_LEASE_SECONDS)
        self.released = True  # the retry holds it now

    def failed(self, seconds: int) -> None:
        """Back the database off after a failure that is not retried."""
        client().set(backoff_key(self.database_id), seconds, ex=seconds)

    def release(self) -> None:
        self._stop.set()
        if not self.released:
            _script(RELEASE)(keys=(lease_key(self.database_id),), args=(self.token,))
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
        _script(RELEASE)(keys=(lease_key(database_id),), args=(token,))
    except STATE_ERRORS:
        _unanswered.add((database_id, token))
        raise


# Takes and releases whose answer never came (a Redis that hung, then woke up): the server may
# have run them after the client gave up, leaving a lease that no queued message will ever free
# until it lapses. Each is released, by its token, when Redis answers this process again.
_unanswered: set[tuple[int, str]] = set()


def release_unanswered() -> None:
    """Release the leases that takes or releases of this process may have left behind."""
    for database_id, token in list(_unanswered):
        release(database_id, token)
        _unanswered.discard((database_id, token))


def renewals_in_flight() -> int:
    """Return how many renewal reflections are queued or running (lost ones lapse)."""
    with client().pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(RENEWALS_KEY, "-inf", time.time() - settings.SYNC_LOCK_TTL)
        pipe.zcard(RENEWALS_KEY)
        return int(pipe.execute()[1])


def reflection_ended(database_id: int) -> None:
    """Say that a reflection task of the database ended: its renewal is no longer in flight."""
    client().zrem(RENEWALS_KEY, str(database_id))


def recent_among(database_ids: list[int]) -> list[bool]:
    """Return, for each database, whether its recency key is set (one round trip)."""
    found = cache.get_many([recency_key(i) for i in database_ids])
    return [recency_key(i) in found for i in database_ids]


def backing_off(database_id: int) -> bool:
    return bool(client().exists(backoff_key(database_id)))


def holder(database_id: int) -> tuple[LeaseState, str] | None:
    """Return the state and task id of the run holding the lease, if any."""
    held = cast(str | None, client().get(lease_key(database_id)))
    if not held:
        return None
    state, _, token = held.partition(":")
    return LeaseState(state), token


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


# ---- the watch: is a listener connected to a database ----


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


def clear_all() -> None:
    """Forget every database's state (tests)."""
    client().flushdb()
