"""Read a PostgreSQL database's catalog with SQLAlchemy Core: engines, snapshot, identity."""

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote

import psycopg2
from django.conf import settings
from psycopg2.extensions import TRANSACTION_STATUS_INERROR, TRANSACTION_STATUS_INTRANS
from sqlalchemy import Connection, Engine, Row, create_engine, event, text
from sqlalchemy.dialects.postgresql import psycopg2 as psycopg2_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from sync.credentials import ambiguity, redact, redact_url
from sync.exceptions import CatalogUnavailable, InvalidDatabaseURL

IDENTITY_SQL = """
    SELECT d.oid AS database_oid,
           d.datname AS database_name,
           CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
                THEN (SELECT system_identifier::text FROM pg_control_system())
           END AS server_identifier
    FROM pg_database d
    WHERE d.datname = current_database()
"""

# Marks the schema that `manage.py watch` installs (see sync.watch), which is not listed.
WATCH_SCHEMA = "dbsync"
WATCH_SCHEMA_COMMENT = "dbsync: DDL watch, installed by manage.py watch"

# The schemas dbsync lists: not the system's, not TOAST's, not temporary ones, not its watch's.
LISTED_SCHEMAS = f"""
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
    AND NOT (n.nspname = '{WATCH_SCHEMA}'
             AND obj_description(n.oid, 'pg_namespace') = '{WATCH_SCHEMA_COMMENT}')
"""

# The watch's DDL version counter (0 before the first DDL), or NULL where no watch is installed
# or the role may not read it.
VERSION_SQL = f"""
    CASE WHEN has_sequence_privilege(to_regclass('{WATCH_SCHEMA}.ddl_version'), 'SELECT')
         THEN coalesce(pg_sequence_last_value(to_regclass('{WATCH_SCHEMA}.ddl_version')), 0)
    END
"""

# relkind -> Table.Kind value; other relations (indexes, sequences, types) are not listed.
KIND = """
    CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'v' THEN 'view'
                   WHEN 'm' THEN 'materialized_view' WHEN 'f' THEN 'foreign_table' END
"""
LISTED_RELKINDS = "c.relkind IN ('r', 'p', 'v', 'm', 'f')"

# One round trip for the whole catalog: schemas without relations come back with NULLs.
# Columns 3 to 6 are a CatalogRelation as they stand.
CATALOG_QUERY = text(
    f"""
    SELECT n.oid, n.nspname, c.oid, c.relnamespace, c.relname, {KIND}
    FROM pg_namespace n
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND {LISTED_RELKINDS}
    WHERE {LISTED_SCHEMAS}
    """
)

# The identity, and an order-free digest of what CATALOG_QUERY returns, computed by the server:
# a digest equal to the one of the catalog last applied means nothing to do, no rows moved.
FINGERPRINT_QUERY = text(
    f"""
    SELECT identity.*, digest.objects, digest.digest, {VERSION_SQL} AS version
    FROM ({IDENTITY_SQL}) AS identity, (
        SELECT count(*) AS objects,
               coalesce(sum(hashtextextended(item, 0)::numeric), 0)::text AS digest
        FROM (
            SELECT concat_ws('/', n.oid, n.nspname) AS item
            FROM pg_namespace n WHERE {LISTED_SCHEMAS}
            UNION ALL
            SELECT concat_ws('/', c.oid, c.relnamespace, c.relname, {KIND})
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE {LISTED_RELKINDS} AND {LISTED_SCHEMAS}
        ) AS objects
    ) AS digest
    """
)


logger = logging.getLogger(__name__)

SUPPORTED_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2"}

# Sent before the statement of an on-the-fly read, in the same Query message: the server runs
# the message as one implicit transaction, so the read is read-only and time-bounded without a
# BEGIN or a COMMIT of its own, in one round trip, and a pooler in transaction mode keeps it whole.
READ_ONLY_PRELUDE = (
    "SET TRANSACTION READ ONLY;"
    " SELECT set_config('statement_timeout', %(dbsync_statement_timeout_ms)s, true); "
)

OPEN_TRANSACTION = (TRANSACTION_STATUS_INTRANS, TRANSACTION_STATUS_INERROR)

T = TypeVar("T")

_DIALECT = psycopg2_dialect.dialect()


class CatalogRelation(NamedTuple):
    oid: int
    schema_oid: int
    name: str
    kind: str


@dataclass(frozen=True)
class Identity:
    """What a URL points at: oids are only meaningful within one database of one cluster."""

    database_oid: int
    database_name: str
    server_identifier: str  # empty where the role may not read pg_control_system()


class Fingerprint(NamedTuple):
    objects: int
    digest: str

    @property
    def text(self) -> str:
        return f"{self.objects}:{self.digest}"


@dataclass(frozen=True)
class Snapshot:
    schemas: dict[int, str]  # oid -> name
    relations: list[CatalogRelation]


@dataclass(frozen=True)
class CatalogRead:
    identity: Identity
    fingerprint: Fingerprint
    version: int | None  # the watch's DDL version counter; None without a watch
    snapshot: Snapshot | None  # None when the fingerprint was the known one


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


# This process's engines, the most recently used last. Pooled ones (live reads) are kept for
# SYNC_POOLED_DATABASES databases at most, so the idle connections a process holds stay bounded
# whatever the number of databases it touched; the least recently used is closed. Engines
# without a pool (reflections, which close their connection after use) hold no socket, and
# are only kept to spare creating one per run.
_engines: OrderedDict[int, tuple[str, Engine]] = OrderedDict()
_unpooled: OrderedDict[int, tuple[str, Engine]] = OrderedDict()
UNPOOLED_KEPT = 1000
_engines_lock = threading.Lock()
# Connections in use at once per server (host:port) in this process: SYNC_CONNECTIONS_PER_SERVER.
_server_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def _forget_engines_after_fork() -> None:
    # A forked child must not share its parent's pooled sockets, nor their slots.
    _engines.clear()
    _unpooled.clear()
    _server_slots.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def engine(key: int, url: str) -> Engine:
    """Return this process's pooled engine for a database, renewed when its URL changed."""
    if settings.SYNC_POOLED_DATABASES == 0:
        return unpooled_engine(key, url)
    with _engines_lock:
        cached = _kept(_engines, key, url)
        if cached is not None:
            return cached
        # Autocommit: an on-the-fly read is one Query message, its own transaction (see
        # read_once). No ping before every checkout: a read on a connection the server dropped
        # is tried once more instead (see _once_more_if_dropped), free when all is well.
        # Overflow connections are closed when given back.
        new_engine = create_user_engine(
            url,
            pool_size=2,
            max_overflow=2,
            pool_recycle=600,
            pool_timeout=settings.SYNC_CONNECT_TIMEOUT,
            isolation_level="AUTOCOMMIT",
        )
        event.listen(new_engine, "reset", _end_transaction)
        _engines[key] = (url, new_engine)
        while len(_engines) > settings.SYNC_POOLED_DATABASES:
            _, (_, oldest) = _engines.popitem(last=False)
            oldest.dispose()  # connections in use are closed when given back
        return new_engine


def unpooled_engine(key: int, url: str) -> Engine:
    """Return this process's engine for a database that closes each connection after use."""
    with _engines_lock:
        cached = _kept(_unpooled, key, url)
        if cached is not None:
            return cached
        new_engine = create_user_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        event.listen(new_engine, "reset", _end_transaction)
        _unpooled[key] = (url, new_engine)
        if len(_unpooled) > UNPOOLED_KEPT:
            _unpooled.popitem(last=False)
        return new_engine


def _kept(engines: OrderedDict[int, tuple[str, Engine]], key: int, url: str) -> Engine | None:
    """Return the engine kept for a database and mark it used; drop it if its URL changed."""
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
            connection.execute(text("SELECT 1"))
    except DBAPIError as error:
        raise unavailable(url, error) from None
    finally:
        probe.dispose()


# Who answers a URL: enough to tell the service's own database from any other. The start time
# of the server process tells clusters apart where the system identifier is not readable.
SERVER_IDENTITY_SQL = f"""
    SELECT identity.*, pg_postmaster_start_time()::text AS started_at,
           current_setting('is_superuser') = 'on' AS superuser
    FROM ({IDENTITY_SQL}) AS identity
"""


class ServerProbe(NamedTuple):
    database_oid: int
    database_name: str
    server_identifier: str | None
    started_at: str
    superuser: bool

    def same_database(self, other: "ServerProbe") -> bool:
        """Return whether both name one database of one cluster (or a copy of it)."""
        if (self.database_oid, self.database_name) != (other.database_oid, other.database_name):
            return False
        if self.server_identifier and other.server_identifier:
            return self.server_identifier == other.server_identifier
        return self.started_at == other.started_at


def probe(url: str) -> ServerProbe:
    """Connect once to the URL and say who answers; CatalogUnavailable with a safe message."""
    source = create_user_engine(url, poolclass=NullPool)
    try:
        with source.connect() as connection:
            return ServerProbe(*connection.exec_driver_sql(SERVER_IDENTITY_SQL).one())
    except DBAPIError as error:
        raise unavailable(url, error) from None
    finally:
        source.dispose()


def unavailable(url: str, error: DBAPIError) -> CatalogUnavailable:
    """Return a CatalogUnavailable for a driver error, with the password kept out."""
    return CatalogUnavailable(f"{redact_url(url)}: {error_detail(error, url)}")


def error_detail(error: DBAPIError, url: str) -> str:
    """Return the first line of a driver error's message, with the URL's password kept out."""
    lines = str(error.orig).strip().splitlines() if error.orig else []
    return redact(lines[0] if lines else type(error).__name__, url)


def read_catalog(key: int, url: str, known: str = "") -> CatalogRead:
    """Read the identity, the fingerprint and, unless it is `known`, the whole catalog.

    All in one read-only snapshot, so that the fingerprint is exactly that of the rows read,
    on a connection of its own, closed after use: a process that reflects many databases keeps
    none of them open.
    """
    try:
        with server_slot(url):
            return _once_more_if_dropped(partial(_read_catalog, unpooled_engine(key, url), known))
    except DBAPIError as error:
        raise unavailable(url, error) from error


def _read_catalog(source: Engine, known: str) -> CatalogRead:
    with source.connect() as connection, _snapshot(connection):
        row = connection.execute(FINGERPRINT_QUERY).one()
        identity, fingerprint = identity_of(row), Fingerprint(row.objects, row.digest)
        if fingerprint.text == known:
            return CatalogRead(identity, fingerprint, row.version, None)
        rows = connection.execute(CATALOG_QUERY).all()
    snapshot = Snapshot(
        schemas={row[0]: row[1] for row in rows},
        relations=[CatalogRelation._make(row[2:]) for row in rows if row[2] is not None],
    )
    return CatalogRead(identity, fingerprint, row.version, snapshot)


# The checks of the periodic poll: the version counter where a watch is installed (one row of
# one sequence, whatever the size of the catalog), else the fingerprint. In psycopg2's
# paramstyle for read_once, as compiled for this dialect.
VERSION_CHECK = str(text(f"SELECT {VERSION_SQL}").compile(dialect=_DIALECT))
FINGERPRINT_CHECK = str(FINGERPRINT_QUERY.compile(dialect=_DIALECT))


def read_version(key: int, url: str) -> int | None:
    """Return the watch's DDL version counter, or None where no watch is installed.

    Like the fingerprint, on a connection of its own: the poll visits every database in turn,
    and a pool for each would hold a connection to all of them.
    """
    ((version,),) = read_once(key, url, VERSION_CHECK, {}, pooled=False)
    return None if version is None else int(version)


def read_fingerprint(key: int, url: str) -> Fingerprint:
    """Return the fingerprint of the catalog now (see FINGERPRINT_QUERY)."""
    (row,) = read_once(key, url, FINGERPRINT_CHECK, {}, pooled=False)
    return Fingerprint(row[3], row[4])


@contextmanager
def _snapshot(connection: Connection) -> Iterator[None]:
    """Hold a read-only, time-bounded REPEATABLE READ transaction on an autocommit connection.

    Begun and ended by hand, in SQL: switching the connection out of autocommit would cost a
    call into the driver on every read. On an error, _end_transaction rolls it back.
    """
    connection.exec_driver_sql(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;"
        f" SET LOCAL statement_timeout = {_statement_timeout_ms()}"
    )
    yield
    connection.exec_driver_sql("COMMIT")


def _end_transaction(dbapi_connection: Any, record: Any, reset: Any) -> None:
    """Roll back a transaction left open, before the connection goes back to the pool.

    The driver's own rollback does nothing on an autocommit connection: it does not know of a
    transaction begun in SQL (see _snapshot).
    """
    if dbapi_connection.info.transaction_status in OPEN_TRANSACTION:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("ROLLBACK")


def read_once(
    key: int,
    url: str,
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
    values = {**parameters, "dbsync_statement_timeout_ms": str(_statement_timeout_ms())}
    logger.debug("read from %s: %s %s", redact_url(url), message, values)
    source = engine(key, url) if pooled else unpooled_engine(key, url)
    try:
        with server_slot(url):
            return _once_more_if_dropped(partial(_run_alone, source, message, values))
    except DBAPIError as error:
        raise (failure(error) if failure else unavailable(url, error)) from error


def _run_alone(source: Engine, message: str, values: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Send one Query message on an autocommit connection: it is its own transaction.

    Straight to the pooled connection's cursor: the rows need no type processing, and
    SQLAlchemy's execution machinery would add a fifth to the time of a page read. Errors
    are wrapped as SQLAlchemy wraps them.
    """
    with source.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        try:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(message, values)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except psycopg2.Error as error:
            dropped = source.dialect.is_disconnect(error, dbapi_connection, None)
            if dropped:
                connection.invalidate()
                source.dispose()  # whatever closed this one closed the pooled others too
            raise DBAPIError.instance(
                message, values, error, psycopg2.Error, connection_invalidated=dropped
            ) from error


def _once_more_if_dropped(read: Callable[[], T]) -> T:
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


def _statement_timeout_ms() -> int:
    return int(settings.SYNC_STATEMENT_TIMEOUT * 1000)


def identity_of(row: Row[Any]) -> Identity:
    return Identity(
        database_oid=row.database_oid,
        database_name=row.database_name,
        server_identifier=row.server_identifier or "",
    )
