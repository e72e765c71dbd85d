"""Read a PostgreSQL database's catalog with SQLAlchemy Core: engines, snapshot, identity."""

import os
import threading
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from sync.credentials import redact_url, scrub
from sync.exceptions import CatalogUnavailable, InvalidDatabaseURL

# relkind -> Table.Kind value; anything else (indexes, sequences, types) is not listed.
RELATION_KINDS = {
    "r": "table",
    "p": "partitioned_table",
    "v": "view",
    "m": "materialized_view",
    "f": "foreign_table",
}

IDENTITY_QUERY = text(
    """
    SELECT d.oid AS database_oid,
           d.datname AS database_name,
           CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
                THEN (SELECT system_identifier::text FROM pg_control_system())
           END AS server_identifier
    FROM pg_database d
    WHERE d.datname = current_database()
    """
)

# One round trip for the whole catalog: schemas without relations come back with NULLs.
CATALOG_QUERY = text(
    """
    SELECT n.oid AS schema_oid, n.nspname AS schema_name,
           c.oid AS oid, c.relname AS name, c.relkind AS relkind
    FROM pg_namespace n
    LEFT JOIN pg_class c
           ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg\\_temp\\_%'
      AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
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


@dataclass(frozen=True)
class Snapshot:
    identity: Identity
    schemas: dict[int, str]  # oid -> name
    relations: list[CatalogRelation]


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
        new_engine = create_engine(
            make_url(validate_url(url)).set(drivername="postgresql+psycopg2"),
            pool_size=2,
            max_overflow=4,
            pool_pre_ping=True,
            pool_recycle=600,
            connect_args={
                "connect_timeout": settings.SYNC_CONNECT_TIMEOUT,
                "application_name": "dbsync",
            },
        )
        _engines[key] = (url, new_engine)
        return new_engine


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


def read_snapshot(key: int, url: str) -> Snapshot:
    """Read the identity and every schema and relation of the database in one snapshot."""
    try:
        with engine(key, url).connect() as connection, connection.begin():
            begin_read_only(connection)
            identity_row = connection.execute(IDENTITY_QUERY).one()
            rows = connection.execute(CATALOG_QUERY).all()
    except DBAPIError as error:
        raise unavailable(url, error) from error
    schemas: dict[int, str] = {}
    relations: list[CatalogRelation] = []
    for schema_oid, schema_name, oid, name, relkind in rows:
        schemas[schema_oid] = schema_name
        if oid is not None:
            relations.append(CatalogRelation(oid, schema_oid, name, RELATION_KINDS[relkind]))
    identity = Identity(
        database_oid=identity_row.database_oid,
        database_name=identity_row.database_name,
        server_identifier=identity_row.server_identifier or "",
    )
    return Snapshot(identity=identity, schemas=schemas, relations=relations)
