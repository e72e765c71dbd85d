"""Read a PostgreSQL database's catalog: schemas, relations, fingerprint, version, identity."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Row, text
from sqlalchemy.dialects.postgresql import psycopg2 as psycopg2_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from sync.remote import changelog
from sync.remote.changelog import WATCH_SCHEMA as WATCH_SCHEMA
from sync.remote.changelog import LogEntry, LogRead, Position
from sync.remote.connections import (
    Source,
    create_user_engine,
    once_more_if_dropped,
    read_once,
    server_slot,
    snapshot_engine,
    statement_timeout_ms,
    unavailable,
)

IDENTITY_SQL = """
    SELECT d.oid AS database_oid,
           d.datname AS database_name,
           CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
                THEN (SELECT system_identifier::text FROM pg_control_system())
           END AS server_identifier
    FROM pg_database d
    WHERE d.datname = current_database()
"""

# Marks the schema that `manage.py watch` installs (see sync.changes.watch), which is not listed.
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

# The partitioned table a partition belongs to: a partition has exactly one pg_inherits row,
# and plain inheritance children (relispartition false) are not partitions.
PARENT = "(SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid AND c.relispartition)"

# One round trip for the whole catalog: schemas without relations come back with NULLs.
# Columns 3 to 7 are a CatalogRelation as they stand.
CATALOG_QUERY = text(
    f"""
    SELECT n.oid, n.nspname, c.oid, c.relnamespace, c.relname, {KIND}, {PARENT}
    FROM pg_namespace n
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND {LISTED_RELKINDS}
    WHERE {LISTED_SCHEMAS}
    """
)

# The identity, and an order-free digest of what CATALOG_QUERY returns, computed by the server:
# a digest equal to the one of the catalog last applied means nothing to do, no rows moved.
# The sum of 64-bit hashes, each of one row with its relkind (which names its kind): summed
# as bigint and hashing the relkind, it reads 1,000 relations in 0.93 ms against 1.04 ms
# summed as numeric over the kind's name (100,000: 44 ms against 51 ms).
FINGERPRINT_QUERY = text(
    f"""
    SELECT identity.*, digest.objects, digest.digest, {VERSION_SQL} AS version
    FROM ({IDENTITY_SQL}) AS identity, (
        SELECT count(*) AS objects, coalesce(sum(hash), 0)::text AS digest
        FROM (
            SELECT hashtextextended(concat_ws('/', n.oid, n.nspname), 0) AS hash
            FROM pg_namespace n WHERE {LISTED_SCHEMAS}
            UNION ALL
            SELECT hashtextextended(
                concat_ws('/', c.oid, c.relnamespace, c.relname, c.relkind, {PARENT}), 0)
            FROM pg_class c
            WHERE {LISTED_RELKINDS}
              AND c.relnamespace IN (SELECT n.oid FROM pg_namespace n WHERE {LISTED_SCHEMAS})
        ) AS objects
    ) AS digest
    """
)


# The identity and the counter alone: what a targeted read needs besides the log.
IDENTITY_VERSION_QUERY = text(
    f"SELECT identity.*, {VERSION_SQL} AS version FROM ({IDENTITY_SQL}) AS identity"
)

# The catalog rows of the objects a change log names, in CATALOG_QUERY's shape: the relations of
# those oids, their partitions (an ATTACH PARTITION logs the parent only), all relations of the
# schemas named (a renamed schema renames its relations' qualified names), and the schemas of
# both. Relations and schemas come as two arrays, each looked up in its own branch: one
# condition ORed over both read all of pg_class (14 ms at 100,000 relations, against 0.1 ms),
# and an empty array costs its index scan nothing.
TARGETED_QUERY = text(
    f"""
    WITH c AS (
        SELECT c.oid, c.relnamespace, c.relname, {KIND} AS kind, {PARENT} AS parent_oid
        FROM pg_class c
        WHERE c.oid IN (SELECT unnest(CAST(:relations AS oid[]))
                        UNION
                        SELECT i.inhrelid FROM pg_inherits i
                        WHERE i.inhparent = ANY(CAST(:relations AS oid[])))
          AND {LISTED_RELKINDS}
        UNION
        SELECT c.oid, c.relnamespace, c.relname, {KIND}, {PARENT}
        FROM pg_class c
        WHERE c.relnamespace = ANY(CAST(:schemas AS oid[])) AND {LISTED_RELKINDS}
    )
    SELECT n.oid, n.nspname, c.oid, c.relnamespace, c.relname, c.kind, c.parent_oid
    FROM pg_namespace n LEFT JOIN c ON c.relnamespace = n.oid
    WHERE (n.oid = ANY(CAST(:schemas AS oid[])) OR n.oid IN (SELECT relnamespace FROM c))
      AND {LISTED_SCHEMAS}
    """
)

# Object types whose entries a targeted read can follow; any other (an extension, which brings
# objects of its own) needs the whole catalog.
TARGETED_TYPES = frozenset({"schema", "table", "view", "materialized view", "foreign table"})

# SQLAlchemy leaves the psycopg2 dialect's constructor unannotated.
_DIALECT = psycopg2_dialect.dialect()  # type: ignore[no-untyped-call]


QualifiedName = tuple[str, str]  # (schema, relation)


class CatalogRelation(NamedTuple):
    oid: int
    schema_oid: int
    name: str
    kind: str
    parent_oid: int | None = None  # the partitioned table it is a partition of


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
    log: LogRead | None = None  # the change log past the position given; None: not read
    targeted: bool = False  # the snapshot holds only the objects the log names (and theirs)


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


def read_catalog(
    source: Source,
    known: str = "",
    position: Position | None = None,
    targeted: int = 0,
) -> CatalogRead:
    """Read the identity, the fingerprint and, unless it is `known`, the whole catalog; and the
    change log past `position`, if given. With `targeted` (at most that many entries) and a
    log that vouches for every change since the position, read only what the entries name.

    All in one read-only snapshot, so that the fingerprint is exactly that of the rows read,
    on a connection of its own, closed after use: a process that reflects many databases keeps
    none of them open.
    """
    read = partial(_read_catalog, snapshot_engine(source), known, position, targeted)
    try:
        with server_slot(source.url):
            return once_more_if_dropped(read)
    except DBAPIError as error:
        raise unavailable(source.url, error) from error


def _read_catalog(
    user_engine: Engine, known: str, position: Position | None, targeted: int
) -> CatalogRead:
    with user_engine.begin() as connection:
        if targeted and position is not None:
            read = _read_targeted(connection, position, targeted)
            if read.targeted:
                return read
            log = read.log
            row = connection.execute(FINGERPRINT_QUERY).one()
        else:
            row = connection.exec_driver_sql(with_timeout(FINGERPRINT_CHECK)).one()
            log = None if position is None else changelog.read_log(connection, position)
        identity, fingerprint = identity_of(row), Fingerprint(row.objects, row.digest)
        if fingerprint.text == known:
            return CatalogRead(identity, fingerprint, row.version, None, log)
        rows = connection.execute(CATALOG_QUERY).all()
    return CatalogRead(identity, fingerprint, row.version, snapshot_of(rows), log)


def with_timeout(sql: str) -> str:
    """Prefix a statement (in psycopg2's paramstyle) with the statement timeout, one round trip.

    In the transaction, not at connect: a pooler in transaction mode refuses startup options.
    """
    return f"SET LOCAL statement_timeout = {statement_timeout_ms()}; {sql}"


def _read_targeted(connection: Connection, position: Position, limit: int) -> CatalogRead:
    """Read the log, and the catalog rows of what it names if it vouches for every change;
    else return the log alone (targeted False), for the whole read to follow."""
    row = connection.exec_driver_sql(with_timeout(IDENTITY_VERSION_CHECK)).one()
    log = changelog.read_log(connection, position)
    unknown = Fingerprint(0, "")
    if log is None or log.gap or not targetable(log.entries, limit):
        return CatalogRead(identity_of(row), unknown, row.version, None, log)
    rows = (
        connection.execute(TARGETED_QUERY, targeted_oids(log.entries)).all() if log.entries else []
    )
    return CatalogRead(identity_of(row), unknown, row.version, snapshot_of(rows), log, True)


def targeted_oids(entries: tuple[LogEntry, ...]) -> dict[str, str]:
    """Return TARGETED_QUERY's parameters: the oids the entries name, relations apart from
    schemas, as array literals."""
    schemas = {entry.objid for entry in entries if entry.object_type == "schema"}
    relations = {entry.objid for entry in entries} - schemas
    return {"relations": oid_array(relations), "schemas": oid_array(schemas)}


def oid_array(oids: set[int]) -> str:
    return "{" + ",".join(str(oid) for oid in sorted(oids)) + "}"


def targetable(entries: tuple[LogEntry, ...], limit: int) -> bool:
    """Whether a read of just what the entries name is enough."""
    return len(entries) <= limit and all(e.object_type in TARGETED_TYPES for e in entries)


def snapshot_of(rows: Sequence[Row[Any]]) -> Snapshot:
    """Return the snapshot of rows in CATALOG_QUERY's shape."""
    return Snapshot(
        schemas={row[0]: row[1] for row in rows},
        relations=[CatalogRelation._make(row[2:]) for row in rows if row[2] is not None],
    )


# The checks of the periodic poll: the version counter where a watch is installed (one row of
# one sequence, whatever the size of the catalog), else the fingerprint. In psycopg2's
# paramstyle for read_once, as compiled for this dialect.
VERSION_CHECK = str(text(f"SELECT {VERSION_SQL}").compile(dialect=_DIALECT))
FINGERPRINT_CHECK = str(FINGERPRINT_QUERY.compile(dialect=_DIALECT))
IDENTITY_VERSION_CHECK = str(IDENTITY_VERSION_QUERY.compile(dialect=_DIALECT))
LOG_CHECK = str(
    text(
        f"SELECT identity.*, {VERSION_SQL} AS version, log.*"
        f" FROM ({IDENTITY_SQL}) AS identity, ({changelog.PENDING_SELECT}) AS log"
    ).compile(dialect=_DIALECT)
)


def read_version(source: Source) -> int | None:
    """Return the watch's DDL version counter, or None where no watch is installed.

    Like the fingerprint, on a connection of its own: the poll visits every database in turn,
    and a pool for each would hold a connection to all of them.
    """
    ((version,),) = read_once(source, VERSION_CHECK, {}, pooled=False)
    return None if version is None else int(version)


def check_catalog(source: Source) -> CatalogRead:
    """Return the identity, fingerprint and version, without the catalog, in one round trip on
    the database's kept connection: what a reflection that finds nothing changed reads."""
    ((oid, name, server, objects, digest, version),) = read_once(source, FINGERPRINT_CHECK, {})
    identity = Identity(database_oid=oid, database_name=name, server_identifier=server or "")
    return CatalogRead(identity, Fingerprint(objects, digest), version, None)


class LogCheck(NamedTuple):
    """What a reflection that finds nothing to do reads of a watched database: who answers, the
    watch's counter, and the log's state past the position given."""

    identity: Identity
    version: int
    here: Position  # the log's trimmed counter and this read's snapshot (no id)
    pending: bool  # entries past the position


def check_log(source: Source, position: Position) -> LogCheck | None:
    """Read the identity, the counter and whether the change log holds entries past the
    position, in one round trip on the database's kept connection; None where the log is not
    readable (or the read failed: the reflection under the lock says why)."""
    parameters = {"position": position.id, "snapshot": position.snapshot}
    try:
        rows = read_once(source, LOG_CHECK, parameters, failure=_LogUnreadable)
    except _LogUnreadable:
        return None
    if not rows or not rows[0][4]:
        return None
    oid, name, server, version, _, trimmed, snapshot, pending = rows[0]
    identity = Identity(database_oid=oid, database_name=name, server_identifier=server or "")
    return LogCheck(identity, int(version or 0), Position(None, snapshot, int(trimmed)), pending)


class _LogUnreadable(Exception):
    def __init__(self, error: DBAPIError) -> None:
        super().__init__(str(error))


def read_fingerprint(source: Source) -> Fingerprint:
    """Return the fingerprint of the catalog now (see FINGERPRINT_QUERY)."""
    (row,) = read_once(source, FINGERPRINT_CHECK, {}, pooled=False)
    return Fingerprint(row[3], row[4])


def identity_of(row: Row[Any]) -> Identity:
    return Identity(
        database_oid=row.database_oid,
        database_name=row.database_name,
        server_identifier=row.server_identifier or "",
    )
