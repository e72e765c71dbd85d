"""Connections to registered databases: engines kept per process and bounded per server, the
one-message read, and driver errors mapped to dbsync's, passwords kept out.
"""

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote

import psycopg2
from django.conf import settings
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from sync.exceptions import CatalogUnavailable, InvalidDatabaseURL
from sync.remote.credentials import ambiguity, redact, redact_url

logger = logging.getLogger(__name__)

SUPPORTED_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2"}

# Sent before the statement of an on-the-fly read, in the same Query message: the server runs
# the message as one implicit transaction, so the read is read-only and time-bounded without a
# BEGIN or a COMMIT of its own, in one round trip, and a pooler in transaction mode keeps it whole.
READ_ONLY_PRELUDE = (
    "SET TRANSACTION READ ONLY;"
    " SELECT set_config('statement_timeout', %(dbsync_statement_timeout_ms)s, true); "
)

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """A registered database as its connections know it: the key of its engines in this
    process (the database's id) and its URL, password included (never show it: redact_url)."""

    key: int
    url: str


def validate_url(url: str) -> str:
    """Return the URL if it names a PostgreSQL database; raise InvalidDatabaseURL if not."""
    if "\x00" in unquote(url):
        raise InvalidDatabaseURL("the URL contains a NUL character, which PostgreSQL refuses")
    # Before anything parses it: libpq would read such user info otherwise than it looks,
    # and show the rest of the password as a host name in its errors.
    unclear = ambiguity(url)
    if unclear:
        raise InvalidDatabaseURL(unclear)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        # Not echoed: an unparseable string may well be a password pasted in the wrong place.
        raise InvalidDatabaseURL(
            "not a database URL (expected postgresql://user:password@host:port/database)"
        ) from None
    if parsed.drivername not in SUPPORTED_SCHEMES:
        raise InvalidDatabaseURL(
            f"not a PostgreSQL URL: scheme {parsed.drivername!r} (expected postgresql://)"
        )
    if not parsed.database:
        raise InvalidDatabaseURL(f"the URL names no database: {redact_url(url)!r}")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise InvalidDatabaseURL(f"the URL's port must be 1 to 65535, got {parsed.port}")
    return url


# This process's engines, the most recently used last. Pooled ones (on-the-fly reads) are kept for
# SYNC_POOLED_DATABASES databases at most, so the idle connections a process holds stay bounded
# whatever the number of databases it touched; the least recently used is closed. Engines
# without a pool (reflections, which close their connection after use) hold no socket, and
# are only kept to spare creating one per run.
_engines: OrderedDict[int, tuple[str, Engine]] = OrderedDict()
_unpooled: OrderedDict[int, tuple[str, Engine]] = OrderedDict()
_snapshots: OrderedDict[int, tuple[str, Engine]] = OrderedDict()
_kept_snapshots: OrderedDict[int, tuple[str, Engine]] = OrderedDict()
UNPOOLED_KEPT = 1000
_engines_lock = threading.Lock()
# Connections in use at once per server (host:port) in this process: SYNC_CONNECTIONS_PER_SERVER.
_server_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def _forget_engines_after_fork() -> None:
    # A forked child must not share its parent's pooled sockets, nor their slots.
    _engines.clear()
    _unpooled.clear()
    _snapshots.clear()
    _kept_snapshots.clear()
    _server_slots.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def engine(source: Source) -> Engine:
    """Return this process's pooled engine for a database, renewed when its URL changed."""
    if settings.SYNC_POOLED_DATABASES == 0:
        return unpooled_engine(source)
    # Autocommit: an on-the-fly read is one Query message, its own transaction (see
    # read_once). No ping before every checkout: a read on a connection the server dropped
    # is tried once more instead (see once_more_if_dropped), free when all is well.
    # Overflow connections are closed when given back.
    with _engines_lock:
        return _kept(_engines, source) or _pool(
            _engines, source, pool_size=2, isolation_level="AUTOCOMMIT"
        )


def unpooled_engine(source: Source) -> Engine:
    """Return this process's engine for a database that closes each connection after use."""
    with _engines_lock:
        return _kept(_unpooled, source) or _keep(
            _unpooled, source, poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )


def snapshot_engine(source: Source) -> Engine:
    """Return this process's engine whose transactions are read-only snapshots (REPEATABLE
    READ): the engine of the catalog reads.

    Its connection is kept for the SYNC_POOLED_DATABASES databases reflected most recently, as
    the on-the-fly reads' are: connecting cost a no-change reflection more than its read (a
    catalog of 1,000 relations). The least recently reflected is closed; with
    SYNC_POOLED_DATABASES 0 each read closes its connection after use.

    SQLAlchemy's isolation level and psycopg2's read-only flag rather than a BEGIN written by
    hand on an autocommit connection, which saved one round trip but left us a transaction to
    end: a no-change read of 1,000 relations took 5.9 ms this way against 5.7 ms by hand.
    """
    snapshot: dict[str, Any] = {
        "isolation_level": "REPEATABLE READ",
        "execution_options": {"postgresql_readonly": True},
    }
    with _engines_lock:
        if settings.SYNC_POOLED_DATABASES == 0:
            return _kept(_snapshots, source) or _keep(
                _snapshots, source, poolclass=NullPool, **snapshot
            )
        # One connection kept; the overflow (a second reflection of it at once) is closed.
        return _kept(_kept_snapshots, source) or _pool(
            _kept_snapshots, source, pool_size=1, **snapshot
        )


def _pool(
    engines: OrderedDict[int, tuple[str, Engine]], source: Source, pool_size: int, **options: Any
) -> Engine:
    """Create a pooled engine and keep it, closing the least recently used past
    SYNC_POOLED_DATABASES (connections in use are closed when given back)."""
    new_engine = create_user_engine(
        source.url,
        pool_size=pool_size,
        max_overflow=2,
        pool_recycle=600,
        pool_timeout=settings.SYNC_CONNECT_TIMEOUT,
        **options,
    )
    engines[source.key] = (source.url, new_engine)
    while len(engines) > settings.SYNC_POOLED_DATABASES:
        _, (_, oldest) = engines.popitem(last=False)
        oldest.dispose()
    return new_engine


def _keep(engines: OrderedDict[int, tuple[str, Engine]], source: Source, **options: Any) -> Engine:
    """Create an engine without a pool (it holds no socket) and keep it, UNPOOLED_KEPT at most."""
    new_engine = create_user_engine(source.url, **options)
    engines[source.key] = (source.url, new_engine)
    if len(engines) > UNPOOLED_KEPT:
        engines.popitem(last=False)
    return new_engine


def _kept(engines: OrderedDict[int, tuple[str, Engine]], source: Source) -> Engine | None:
    """Return the engine kept for a database and mark it used; drop it if its URL changed."""
    key, url = source.key, source.url
    cached = engines.get(key)
    if cached is None:
        return None
    if cached[0] != url:
        del engines[key]
        cached[1].dispose()
        return None
    engines.move_to_end(key)
    return cached[1]


@contextmanager
def server_slot(url: str) -> Iterator[None]:
    """Hold one of this process's SYNC_CONNECTIONS_PER_SERVER slots on the URL's server.

    However many databases a server holds, this process never has more connections to it in
    use at once; a caller that finds none free within the connect timeout gets
    CatalogUnavailable, as when the server does not answer.
    """
    parsed = make_url(url)
    bound = settings.SYNC_CONNECTIONS_PER_SERVER
    server = (f"{parsed.host or ''}:{parsed.port or 5432}", bound)
    with _engines_lock:
        slots = _server_slots.get(server)
        if slots is None:
            slots = _server_slots[server] = threading.BoundedSemaphore(bound)
    if not slots.acquire(timeout=settings.SYNC_CONNECT_TIMEOUT):
        raise CatalogUnavailable(
            f"{redact_url(url)}: all {bound} connections this process may open to its server "
            "are in use; try again shortly"
        )
    try:
        yield
    finally:
        slots.release()


def create_user_engine(
    url: str, connect_args: Mapping[str, Any] | None = None, **options: Any
) -> Engine:
    """Create an engine for a registered database's URL, through psycopg2, timeouts set."""
    return create_engine(
        make_url(validate_url(url)).set(drivername="postgresql+psycopg2"),
        connect_args={
            "connect_timeout": settings.SYNC_CONNECT_TIMEOUT,
            "application_name": "dbsync",
            **(connect_args or {}),
        },
        **options,
    )


def check_connection(url: str) -> None:
    """Connect once to the URL; raise CatalogUnavailable with a safe message if that fails."""
    probe = create_user_engine(url, poolclass=NullPool)
    try:
        with probe.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except DBAPIError as error:
        raise unavailable(url, error) from None
    finally:
        probe.dispose()


def unavailable(url: str, error: DBAPIError) -> CatalogUnavailable:
    """Return a CatalogUnavailable for a driver error, with the password kept out."""
    return CatalogUnavailable(f"{redact_url(url)}: {error_detail(error, url)}")


def error_detail(error: Exception, url: str) -> str:
    """Return the first line of a driver error's message, with the URL's password kept out.

    SQLAlchemy's errors wrap the driver's (`orig`); psycopg2's own come as they are.
    """
    cause = error.orig if isinstance(error, DBAPIError) else error
    lines = str(cause).strip().splitlines() if cause else []
    return redact(lines[0] if lines else type(error).__name__, url)


def read_once(
    source: Source,
    sql: str,
    parameters: Mapping[str, Any],
    failure: Callable[[DBAPIError], Exception] | None = None,
    pooled: bool = True,
) -> list[tuple[Any, ...]]:
    """Return the rows of one SQL string, read read-only and time-bounded in one round trip.

    sql is in psycopg2's paramstyle, as a statement compiled for this dialect is; it may hold
    several statements, of which the last gives the rows. A driver error becomes
    failure(error), by default CatalogUnavailable. pooled=False: on a connection closed after.
    """
    message = READ_ONLY_PRELUDE + sql
    values = {**parameters, "dbsync_statement_timeout_ms": str(statement_timeout_ms())}
    url = source.url
    logger.debug("read from %s: %s %s", redact_url(url), message, values)
    user_engine = engine(source) if pooled else unpooled_engine(source)
    try:
        with server_slot(url):
            return once_more_if_dropped(partial(_run_alone, user_engine, message, values))
    except DBAPIError as error:
        raise (failure(error) if failure else unavailable(url, error)) from error


def _run_alone(user_engine: Engine, message: str, values: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Send one Query message on an autocommit connection: it is its own transaction.

    Straight to the pooled connection's cursor: the rows need no type processing, and
    SQLAlchemy's execution machinery would add a fifth to the time of a page read. Errors
    are wrapped as SQLAlchemy wraps them.
    """
    with user_engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        try:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(message, values)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except psycopg2.Error as error:
            # SQLAlchemy's stubs want its DBAPIModule.Error, which no driver's errors subclass.
            dropped = user_engine.dialect.is_disconnect(error, dbapi_connection, None)  # type: ignore[arg-type]
            if dropped:
                connection.invalidate()
                user_engine.dispose()  # whatever closed this one closed the pooled others too
            raise DBAPIError.instance(
                message, values, error, psycopg2.Error, connection_invalidated=dropped
            ) from error


def once_more_if_dropped(read: Callable[[], T]) -> T:
    """Call read, and once more if the pooled connection it used had been closed by the server.

    The failed connection invalidates the pool, so the second call connects anew; a read has
    no effect to repeat.
    """
    try:
        return read()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    return read()


def statement_timeout_ms() -> int:
    return int(settings.SYNC_STATEMENT_TIMEOUT * 1000)
