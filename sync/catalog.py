"""Read a PostgreSQL database's catalog with SQLAlchemy Core: engines, snapshot, identity."""

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from sqlalchemy import Connection, Engine, Row, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from sync.credentials import redact_url, scrub
from sync.exceptions import CatalogUnavailable, InvalidDatabaseURL, SyncError

IDENTITY_SQL = """
    SELECT d.oid AS database_oid,
           d.datname AS database_name,
           CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
                THEN (SELECT system_identifier::text FROM pg_control_system())
           END AS server_identifier
    FROM pg_database d
    WHERE d.datname = current_database()
"""

# The schemas dbsync lists: not the system's, not TOAST's, not temporary ones.
LISTED_SCHEMAS = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
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
    SELECT identity.*, digest.objects, digest.digest
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


SUPPORTED_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2"}


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
    snapshot: Snapshot | None  # None when the fingerprint was the known one


def validate_url(url: str) -> str:
    """Return the URL if it names a PostgreSQL database; raise InvalidDatabaseURL if not."""
    try:
        parsed = make_url(url)
    except ArgumentError:
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
    return url


_engines: dict[int, tuple[str, Engine]] = {}
_engines_lock = threading.Lock()


def _forget_engines_after_fork() -> None:
    # A forked child must not share its parent's pooled sockets.
    _engines.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def engine(key: int, url: str) -> Engine:
    """Return this process's pooled engine for a database, renewed when its URL changed."""
    with _engines_lock:
        cached = _engines.get(key)
        if cached is not None and cached[0] == url:
            return cached[1]
        if cached is not None:
            cached[1].dispose()
        new_engine = create_user_engine(
            url, pool_size=2, max_overflow=4, pool_pre_ping=True, pool_recycle=600
        )
        _engines[key] = (url, new_engine)
        return new_engine


def create_user_engine(url: str, **options: Any) -> Engine:
    """Create an engine for a registered database's URL, through psycopg2, timeouts set."""
    return create_engine(
        make_url(validate_url(url)).set(drivername="postgresql+psycopg2"),
        connect_args={
            "connect_timeout": settings.SYNC_CONNECT_TIMEOUT,
            "application_name": "dbsync",
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


def unavailable(url: str, error: DBAPIError) -> CatalogUnavailable:
    """Return a CatalogUnavailable for a driver error, with the password kept out."""
    lines = str(error.orig).strip().splitlines() if error.orig else []
    detail = lines[0] if lines else type(error).__name__
    return CatalogUnavailable(f"{redact_url(url)}: {scrub(detail, url)}")


def begin_read_only(connection: Connection, isolation: str = "REPEATABLE READ") -> None:
    """Make the connection's current transaction read-only and bounded in time."""
    timeout_ms = int(settings.SYNC_STATEMENT_TIMEOUT * 1000)
    # One round trip for both: on-the-fly reads pay it on every request.
    connection.exec_driver_sql(
        f"SET TRANSACTION ISOLATION LEVEL {isolation}, READ ONLY;"
        f" SET LOCAL statement_timeout = {timeout_ms}"
    )


def read_catalog(key: int, url: str, known: str = "") -> CatalogRead:
    """Read the identity, the fingerprint and, unless it is `known`, the whole catalog.

    All in one read-only snapshot, so that the fingerprint is exactly that of the rows read.
    """
    with read_only(key, url) as connection:
        row = connection.execute(FINGERPRINT_QUERY).one()
        identity, fingerprint = identity_of(row), Fingerprint(row.objects, row.digest)
        if fingerprint.text == known:
            return CatalogRead(identity, fingerprint, None)
        rows = connection.execute(CATALOG_QUERY).all()
    snapshot = Snapshot(
        schemas={row[0]: row[1] for row in rows},
        relations=[CatalogRelation._make(row[2:]) for row in rows if row[2] is not None],
    )
    return CatalogRead(identity, fingerprint, snapshot)


@contextmanager
def read_only(
    key: int, url: str, failure: Callable[[DBAPIError], SyncError] | None = None
) -> Iterator[Connection]:
    """Yield a pooled connection in a read-only snapshot bounded by the statement timeout.

    A driver error becomes failure(error), by default CatalogUnavailable.
    """
    try:
        with engine(key, url).connect() as connection, connection.begin():
            begin_read_only(connection)
            yield connection
    except DBAPIError as error:
        raise (failure(error) if failure else unavailable(url, error)) from error


def identity_of(row: Row[Any]) -> Identity:
    return Identity(
        database_oid=row.database_oid,
        database_name=row.database_name,
        server_identifier=row.server_identifier or "",
    )
