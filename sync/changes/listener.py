"""The listener: one LISTEN connection per watched database, all waited on together.

Each DDL notice goes through the debouncer and then the gate (gate.notice_change), like every
other request for a reflection. Where the watch sends no NOTIFY (a server that allows prepared
transactions), the connection asks the watch's counter every SYNC_LISTEN_POLL_MS instead, and a
move of it is a notice. A connection is checked by a heartbeat query when idle (one can
look alive and receive nothing), and reconnected with growing back-off and jitter; after every
(re)connect the database is reflected, because notices sent while it was away are lost. The set
of watched databases is re-read every few seconds, so new and unregistered ones are picked up
without a restart.
"""

import contextlib
import logging
import random
import selectors
import threading
import time
from dataclasses import dataclass
from typing import TypedDict

import psycopg2
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from psycopg2.extensions import connection as PgConnection
from sqlalchemy.engine import make_url

from sync.changes import gate, listening, store, watch
from sync.changes.debounce import Debouncer
from sync.exceptions import SyncError
from sync.models import Database, ReflectionRun, WatchSignal
from sync.remote import catalog, connections

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0  # how often the set of watched databases is read again
RECONNECT_FIRST, RECONNECT_CAP = 1.0, 32.0


class Keepalives(TypedDict):
    """libpq's keepalive parameters, typed one by one: psycopg2.connect takes them as keywords."""

    keepalives: int
    keepalives_idle: int
    keepalives_interval: int
    keepalives_count: int
    tcp_user_timeout: int


# Keepalives and a bound on unacknowledged sends: a peer that vanished without a word (a host
# down, a partition) is found by the next heartbeat within seconds, not hours.
KEEPALIVES = Keepalives(
    keepalives=1,
    keepalives_idle=10,
    keepalives_interval=5,
    keepalives_count=3,
    tcp_user_timeout=10_000,
)


@dataclass
class Watched:
    """One watched database and its LISTEN connection, if it has one."""

    database: Database
    connection: PgConnection | None = None
    fd: int = -1  # its socket, as registered with the selector (a closed connection has none)
    last_heard: float = 0.0
    failures: int = 0
    retry_at: float = 0.0
    connects: int = 0  # successful connects so far: each after the first is a reconnect
    version: int | None = None  # the counter as last read, where the watch does not NOTIFY
    next_poll: float = 0.0

    @property
    def polls(self) -> bool:
        """Whether its watch sends no NOTIFY, so that the counter must be asked."""
        return self.database.watch_signal == WatchSignal.COUNTER


class Listener:
    def __init__(self) -> None:
        self.watched: dict[int, Watched] = {}
        self.selector = selectors.DefaultSelector()
        self.debouncer: Debouncer[int] = Debouncer()
        self.next_refresh = 0.0
        self.heartbeat = float(settings.SYNC_LISTEN_HEARTBEAT)
        self.poll_seconds = settings.SYNC_LISTEN_POLL_MS / 1000

    def run(self, stop: threading.Event) -> None:
        logger.info("listener started")
        try:
            while not stop.is_set():
                try:
                    self.step()
                except DatabaseError:
                    # The service database is away: keep the connections, try again shortly.
                    logger.exception("listener: service database unavailable")
                    stop.wait(1)
        finally:
            for item in list(self.watched.values()):
                self.disconnect(item)
            logger.info("listener stopped")

    def step(self) -> None:
        """Do what is due: refresh, connect, wait for notices, fire, heartbeat."""
        now = time.monotonic()
        if now >= self.next_refresh:
            self.refresh()
            self.next_refresh = now + REFRESH_SECONDS
        # Copies: a connect, a receive or a heartbeat may stop following a database.
        for item in list(self.watched.values()):
            if item.connection is None and now >= item.retry_at:
                self.connect(item)
        for key, _ in self.selector.select(self.wait_seconds()):
            found = self.watched.get(key.data)
            if found is not None:
                self.receive(found)
        now = time.monotonic()
        for item in list(self.watched.values()):
            if item.connection is not None and item.polls and now >= item.next_poll:
                self.poll_counter(item, now)
        for database_id in self.debouncer.due(now):
            self.queue(database_id, now)
        for item in list(self.watched.values()):
            if item.connection is not None and now - item.last_heard >= self.heartbeat:
                self.beat(item)

    def wait_seconds(self) -> float:
        now = time.monotonic()
        deadlines = [self.next_refresh]
        deadlines += [i.retry_at for i in self.watched.values() if i.connection is None]
        deadlines += [i.last_heard + self.heartbeat for i in self.watched.values() if i.connection]
        deadlines += [i.next_poll for i in self.watched.values() if i.connection and i.polls]
        debounce = self.debouncer.next_deadline()
        if debounce is not None:
            deadlines.append(debounce)
        return max(0.0, min(deadlines) - now)

    def refresh(self) -> None:
        """Follow the registered databases whose watch is installed."""
        close_old_connections()  # a long-running process: never reuse a connection gone stale
        try:
            current = {d.id: d for d in Database.objects.exclude(watch_installed_at=None)}
        except DatabaseError as error:
            logger.warning("listener: service database unavailable: %s", error)
            return
        for database_id, item in list(self.watched.items()):
            fresh = current.get(database_id)
            if fresh is None or fresh.url != item.database.url:
                self.disconnect(item)
                del self.watched[database_id]
        for database_id, database in current.items():
            self.watched.setdefault(database_id, Watched(database))
            self.watched[database_id].database = database
        connected = [i for i, item in self.watched.items() if item.connection is not None]
        try:
            listening.mark_listening(connected, int(REFRESH_SECONDS * 5))
        except store.STATE_ERRORS as error:
            logger.warning("listener: listen mode not reported: Redis: %s", error)

    def connect(self, item: Watched) -> None:
        database = item.database
        try:
            connection = open_listening(database.url)
        except (psycopg2.Error, SyncError) as error:
            detail = connections.error_detail(error, database.url)
            if item.failures == 0:  # the first of a run of failed attempts: say so at once
                gate.record_unreachable(database.id, f"{database.name}: {detail}")
            self.failed(item, detail)
            return
        item.connection, item.fd, item.last_heard = (
            connection,
            connection.fileno(),
            time.monotonic(),
        )
        item.version, item.next_poll = None, 0.0
        self.selector.register(item.fd, selectors.EVENT_READ, database.id)
        retried = f" after {item.failures} failed attempts" if item.failures else ""
        logger.info("listening to %s%s", database.name, retried)
        if item.connects:
            with contextlib.suppress(*store.STATE_ERRORS):
                listening.count_reconnect(database.id)
        item.failures, item.connects = 0, item.connects + 1
        # Notices sent while nobody listened are lost: reflect in case there were any, the
        # whole catalog (whatever happened meanwhile, a restore included).
        self.queue(database.id, time.monotonic(), ReflectionRun.Trigger.RECONNECT)

    def receive(self, item: Watched) -> None:
        connection = item.connection
        if connection is None:  # closed by an earlier event of the same select
            return
        try:
            connection.poll()
        except psycopg2.Error as error:
            self.failed(item, connections.error_detail(error, item.database.url))
            return
        item.last_heard = time.monotonic()
        if connection.notifies:
            connection.notifies.clear()  # the payload is a constant: only the arrival counts
            if self.debouncer.notice(item.database.id, item.last_heard):
                self.queue(item.database.id, item.last_heard)

    def poll_counter(self, item: Watched, now: float) -> None:
        """Ask the counter of a watch that sends no NOTIFY; a move is a notice."""
        connection = item.connection
        if connection is None:
            return
        item.next_poll = now + self.poll_seconds
        try:
            with connection.cursor() as cursor:
                cursor.execute(catalog.VERSION_CHECK)
                (version,) = cursor.fetchone() or (None,)
        except psycopg2.Error as error:
            self.failed(item, connections.error_detail(error, item.database.url))
            return
        item.last_heard = time.monotonic()
        moved = item.version is not None and version != item.version
        item.version = version
        if moved and self.debouncer.notice(item.database.id, item.last_heard):
            self.queue(item.database.id, item.last_heard)

    def beat(self, item: Watched) -> None:
        """Ask the idle connection whether the watch is still installed."""
        connection = item.connection
        if connection is None:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(watch.INSTALLED)
                (installed,) = cursor.fetchone() or (False,)
        except psycopg2.Error as error:
            self.failed(item, connections.error_detail(error, item.database.url))
            return
        item.last_heard = time.monotonic()
        if not installed:
            reason = (
                "the watch's event triggers were removed or disabled by hand: back to polling; "
                f"run `manage.py watch {item.database.name}` to install them again"
            )
            logger.warning("listener: %s: %s", item.database.name, reason)
            self.disconnect(item)
            watch.lost(item.database, reason)
            del self.watched[item.database.id]

    def queue(
        self, database_id: int, now: float, trigger: str = ReflectionRun.Trigger.LISTENER
    ) -> None:
        item = self.watched.get(database_id)
        if item is None:
            return
        freshness = gate.notice_change(item.database, trigger)
        if freshness.status == gate.Status.UNAVAILABLE:
            self.debouncer.again(database_id, now)  # Redis or the broker is down: try again

    def failed(self, item: Watched, detail: str) -> None:
        self.disconnect(item)
        item.failures += 1
        delay = min(RECONNECT_CAP, RECONNECT_FIRST * 2 ** (item.failures - 1))
        item.retry_at = time.monotonic() + delay * random.uniform(0.5, 1.0)  # noqa: S311
        logger.warning(
            "listener: %s unavailable (%s); reconnecting in %.0f s",
            item.database.name,
            detail,
            item.retry_at - time.monotonic(),
        )

    def disconnect(self, item: Watched) -> None:
        if item.connection is None:
            return
        self.selector.unregister(item.fd)
        try:
            item.connection.close()
        except psycopg2.Error:
            logger.debug("listener: closing %s failed", item.database.name)
        item.connection = None
        try:
            listening.stop_listening(item.database.id)
        except store.STATE_ERRORS as error:
            name = item.database.name
            logger.warning("listener: %s still shows listen: Redis: %s", name, error)


def open_listening(url: str) -> PgConnection:
    """Open an autocommit connection that listens on the watch's channel."""
    dsn = make_url(connections.validate_url(url)).set(drivername="postgresql")
    connection = psycopg2.connect(
        dsn.render_as_string(hide_password=False),
        connect_timeout=settings.SYNC_CONNECT_TIMEOUT,
        application_name="dbsync-listener",
        **KEEPALIVES,
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = {connections.statement_timeout_ms()}")
        cursor.execute(f"LISTEN {watch.CHANNEL}")
    return connection
