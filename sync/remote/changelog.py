"""Read the watch's change log: the objects each DDL touched, past the position last applied.

The log's ids are given in the order the DDL ran, not the order its transactions committed: an
entry of a transaction still open at one read comes later with an id below that read's highest.
So a position is the highest id read and the snapshot it was read in, and the next read takes
the entries above that id or of a transaction that snapshot did not see. An entry is applied
exactly once, and one rolled back never shows. Where the log cannot vouch for everything since
the position (none stored, the watch re-installed, rows trimmed by its cap), the read says so:
the caller then reflects the whole catalog.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from sync.exceptions import CatalogUnavailable
from sync.remote.connections import Source, engine, error_detail, server_slot

logger = logging.getLogger(__name__)

# The schema that `manage.py watch` installs (see sync.changes.watch): counter, log, functions.
WATCH_SCHEMA = "dbsync"

# The most entries one read lists; past it, the reflection reads the whole catalog (a targeted
# one takes far fewer), which applies the rest unlisted.
READ_LIMIT = 10_000


@dataclass(frozen=True)
class LogEntry:
    """One object a DDL touched, and who ran it where (never the statement's text)."""

    id: int  # the log row's id, increasing
    objid: int  # the object's oid (pg_class.oid or pg_namespace.oid)
    object_type: str  # as pg_event_trigger_ddl_commands()/dropped_objects() give: 'table', ...
    schema_name: str | None
    command_tag: str  # 'CREATE TABLE', 'ALTER TABLE', 'DROP TABLE', 'CREATE SCHEMA', ...
    role: str  # session_user
    application: str  # application_name
    client_addr: str | None  # inet_client_addr() as text, None over the socket
    backend_pid: int
    xid: int  # txid_current()
    statement_time: datetime  # statement_timestamp(), timezone-aware


@dataclass(frozen=True)
class Position:
    """How far the log is applied (see the module's docstring); id None: nowhere known."""

    id: int | None = None
    snapshot: str = ""
    trimmed: int | None = None


@dataclass(frozen=True)
class LogRead:
    entries: tuple[LogEntry, ...]
    position: Position  # to store with the changes these entries bring
    gap: bool  # True: the entries may miss changes since the position; reflect everything
    # Every entry of a transaction this snapshot saw is applied once the position is stored.
    applied_snapshot: str


# The log's state in the reader's snapshot; NULLs where no log is installed or readable.
STATE_SELECT = f"""
    SELECT has_table_privilege(log.oid, 'SELECT') AS readable,
           coalesce(pg_sequence_last_value(to_regclass('{WATCH_SCHEMA}.ddl_version')), 0)
               AS version,
           coalesce(pg_sequence_last_value(to_regclass('{WATCH_SCHEMA}.log_trimmed')), 0)
               AS trimmed,
           txid_current_snapshot()::text AS snapshot
    FROM (SELECT to_regclass('{WATCH_SCHEMA}.change_log') AS oid) AS log
    WHERE log.oid IS NOT NULL
      AND has_sequence_privilege(to_regclass('{WATCH_SCHEMA}.log_trimmed'), 'SELECT')
"""
STATE_SQL = text(STATE_SELECT)

ENTRY_COLUMNS = (
    "id, objid, object_type, schema_name, command_tag, role, application, client_addr,"
    " backend_pid, xid, statement_time"
)
# The entries past a position: above its id, or of a transaction its snapshot did not see.
PAST_POSITION = """
    id > :position
    OR (xid >= txid_snapshot_xmin(CAST(:snapshot AS txid_snapshot))
        AND NOT txid_visible_in_snapshot(xid, CAST(:snapshot AS txid_snapshot)))
"""
ENTRIES_SQL = text(
    f"""
    SELECT {ENTRY_COLUMNS} FROM {WATCH_SCHEMA}.change_log WHERE {PAST_POSITION}
    ORDER BY id LIMIT :limit
    """
)
# The log's state and whether any entry lies past a position, in one statement (one snapshot):
# what a reflection that finds nothing to do reads of the log. It fails where the log is not
# there or not readable; read_log says what then.
PENDING_SELECT = f"""
    SELECT state.readable, state.trimmed, state.snapshot,
           EXISTS (SELECT FROM {WATCH_SCHEMA}.change_log WHERE {PAST_POSITION}) AS pending
    FROM ({STATE_SELECT}) AS state
"""
# The position where none is known: every entry there is now counts as applied.
NEWEST_SQL = text(f"SELECT coalesce(max(id), 0) FROM {WATCH_SCHEMA}.change_log")


def read_log(connection: Connection, position: Position) -> LogRead | None:
    """Read the entries past the position in the connection's snapshot; None without a log.

    Call it in the snapshot of the catalog read, so that entries and catalog agree.
    """
    state = connection.execute(STATE_SQL).one_or_none()
    if state is None or not state.readable:
        return None
    here = Position(None, state.snapshot, int(state.trimmed))
    start = position.id
    if start is None or has_gap(position, here, int(state.version)):
        newest = int(connection.execute(NEWEST_SQL).scalar_one())
        # The whole catalog read in this snapshot applies what its entries say.
        return LogRead((), Position(newest, here.snapshot, here.trimmed), True, here.snapshot)
    rows = connection.execute(
        ENTRIES_SQL, {"position": start, "snapshot": position.snapshot, "limit": READ_LIMIT}
    ).all()
    entries = tuple(entry_of(row) for row in rows)
    newest = max([start, *(entry.id for entry in entries)])
    if len(entries) == READ_LIMIT:
        # More than a targeted read takes: the whole catalog is read in this snapshot, and
        # applies the entries left unlisted too.
        newest = int(connection.execute(NEWEST_SQL).scalar_one())
    return LogRead(entries, Position(newest, here.snapshot, here.trimmed), False, here.snapshot)


def has_gap(position: Position, here: Position, version: int) -> bool:
    """Whether entries since the position may be missing from the log now."""
    return (
        not position.snapshot
        or (position.id or 0) > version  # the watch was removed and installed again
        or position.trimmed != here.trimmed  # the cap removed entries nobody had applied
    )


# The entries of transactions this snapshot saw are applied: the watch may delete them.
APPLIED_SQL = (
    f"UPDATE {WATCH_SCHEMA}.log_applied SET snapshot = CAST(%(snapshot)s AS txid_snapshot)"
)


def mark_applied(source: Source, snapshot: str) -> None:
    """Tell the watch that entries of transactions the snapshot saw are applied, so that it may
    trim them; a failure (a role not granted, an earlier watch) only leaves them to the cap."""
    if not snapshot:
        return
    try:
        with server_slot(source.url), engine(source).connect() as connection:
            connection.exec_driver_sql(APPLIED_SQL, {"snapshot": snapshot})
    except (DBAPIError, CatalogUnavailable) as error:
        logger.warning("change log not marked applied: %s", error_detail(error, source.url))


def entry_of(row: Any) -> LogEntry:
    return LogEntry(
        id=row.id,
        objid=int(row.objid),
        object_type=row.object_type,
        schema_name=row.schema_name,
        command_tag=row.command_tag,
        role=row.role,
        application=row.application,
        client_addr=row.client_addr,
        backend_pid=row.backend_pid,
        xid=row.xid,
        statement_time=row.statement_time,
    )
