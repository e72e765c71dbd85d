"""Change events: what each reflection applied, object by object, with the actor where logged.

A reflection reads the rows it is about to change (`read_before`), applies its diff, then
`describe` finds one event per created, renamed, moved, dropped or recreated object, and one
`altered` event per logged ALTER of an object whose name did not change, and `write_batch`
writes them as one row in the reflection's transaction: a rolled back DDL, which leaves no
change, leaves no event either. The change feed (sync.reflection.feed) makes them events.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from django.db import connection

from sync.models import ChangeEvent, EventBatch, ReflectionRun, Schema, Table
from sync.reflection.diff import Changes
from sync.reflection.writes import Written, array_literal
from sync.remote.changelog import LogEntry

Kind = ChangeEvent.Kind


class OldRow(NamedTuple):
    """A row as it was before the reflection: its oid, names and schema."""

    oid: int
    name: str
    kind: str
    schema_id: int | None
    schema_name: str


@dataclass(frozen=True)
class Before:
    """The rows a diff changes or drops, read before it is applied (by model id)."""

    schemas: dict[int, OldRow] = field(default_factory=dict)
    tables: dict[int, OldRow] = field(default_factory=dict)


class Event(NamedTuple):
    """One event to write, before the actor is known: the object and its names."""

    kind: str
    object_type: str
    oid: int
    schema_id: int | None
    table_id: int | None
    name_before: str
    name_after: str
    schema_before: str
    schema_after: str


S, T = Schema._meta.db_table, Table._meta.db_table
OLD_TABLES = (
    f"SELECT t.id, t.oid, t.name, t.kind, t.schema_id, s.name FROM {T} t"
    f" JOIN {S} s ON s.id = t.schema_id WHERE t.id = ANY(%s::bigint[])"
)
OLD_SCHEMAS = f"SELECT id, oid, name, 'schema', id, name FROM {S} WHERE id = ANY(%s::bigint[])"
LIVE_TABLES = (
    f"SELECT t.oid, t.id, t.name, t.kind, t.schema_id, s.name FROM {T} t"
    f" JOIN {S} s ON s.id = t.schema_id"
    " WHERE t.database_id = %s AND t.dropped_at IS NULL AND t.oid = ANY(%s::bigint[])"
)
LIVE_SCHEMAS = (
    f"SELECT oid, id, name FROM {S}"
    " WHERE database_id = %s AND dropped_at IS NULL AND oid = ANY(%s::bigint[])"
)


def read_before(changes: Changes) -> Before:
    """Read the rows the diff is about to change or drop: at most two queries, none if none."""
    table_ids = [row_id for row_id, _ in changes.changed_tables] + changes.dropped_table_ids
    schema_ids = [row.id for row in changes.changed_schemas] + changes.dropped_schema_ids
    return Before(
        schemas=_old_rows(OLD_SCHEMAS, schema_ids), tables=_old_rows(OLD_TABLES, table_ids)
    )


def _old_rows(query: str, ids: list[int]) -> dict[int, OldRow]:
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(query, [array_literal(ids)])
        return {row[0]: OldRow(*row[1:]) for row in cursor.fetchall()}


def describe(
    database_id: int,
    changes: Changes,
    before: Before,
    written: Written,
    entries: Sequence[LogEntry],
) -> list[Event]:
    """Return the events of an applied diff (`written`: the rows it wrote), and `altered` ones
    for logged ALTERs it explains by no other change, whose live rows it reads (two queries at
    most, none without such ALTERs)."""
    tables, schemas = _live_rows(database_id, written, entries)
    found = list(_schema_events(changes, before, schemas)) + list(
        _table_events(changes, before, tables)
    )
    explained = {event.oid for event in found}
    found += _altered_events(entries, explained, tables, schemas)
    return found


def _live_rows(
    database_id: int, written: Written, entries: Sequence[LogEntry]
) -> tuple[dict[int, tuple[Any, ...]], dict[int, tuple[Any, ...]]]:
    """Return the live table rows and schema rows, by oid, of what changed or was logged."""
    logged = {entry.objid for entry in entries if entry.command_tag.startswith("ALTER")}
    logged -= written.tables.keys() | written.schemas.keys()
    tables = written.tables | _by_oid(LIVE_TABLES, database_id, logged)
    schemas = written.schemas | _by_oid(LIVE_SCHEMAS, database_id, logged)
    return tables, schemas


def _by_oid(query: str, database_id: int, oids: set[int]) -> dict[int, tuple[Any, ...]]:
    if not oids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(query, [database_id, array_literal(sorted(oids))])
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _schema_events(
    changes: Changes, before: Before, live: dict[int, tuple[Any, ...]]
) -> Iterable[Event]:
    for oid, name in changes.new_schemas:
        schema_id = live[oid][0]
        yield Event(Kind.CREATED, "schema", oid, schema_id, None, "", name, "", name)
    for row in changes.changed_schemas:
        old = before.schemas[row.id]
        kind = Kind.RECREATED if old.oid != row.oid else Kind.RENAMED
        yield Event(kind, "schema", row.oid, row.id, None, old.name, row.name, old.name, row.name)
    for schema_id in changes.dropped_schema_ids:
        old = before.schemas[schema_id]
        yield Event(Kind.DROPPED, "schema", old.oid, schema_id, None, old.name, "", old.name, "")


def _table_events(
    changes: Changes, before: Before, live: dict[int, tuple[Any, ...]]
) -> Iterable[Event]:
    for relation in changes.new_tables:
        table_id, name, kind, schema_id, schema = live[relation.oid]
        yield Event(Kind.CREATED, kind, relation.oid, schema_id, table_id, "", name, "", schema)
    for table_id, relation in changes.changed_tables:
        old = before.tables[table_id]
        _, name, kind, schema_id, schema = live[relation.oid]
        if old.oid != relation.oid:
            change = Kind.RECREATED
        elif old.schema_id != schema_id:
            change = Kind.MOVED
        elif old.name != name:
            change = Kind.RENAMED
        else:
            change = Kind.ALTERED  # its kind changed, not its name
        yield Event(
            change, kind, relation.oid, schema_id, table_id, old.name, name, old.schema_name, schema
        )
    for table_id in changes.dropped_table_ids:
        old = before.tables[table_id]
        yield Event(
            Kind.DROPPED, old.kind, old.oid, old.schema_id, table_id,
            old.name, "", old.schema_name, "",
        )  # fmt: skip


def _altered_events(
    entries: Sequence[LogEntry],
    explained: set[int],
    tables: dict[int, tuple[Any, ...]],
    schemas: dict[int, tuple[Any, ...]],
) -> list[Event]:
    """One `altered` event per object and transaction of the logged ALTERs no change explains."""
    found: dict[tuple[int, int], Event] = {}
    for entry in entries:
        key = (entry.objid, entry.xid)
        if not entry.command_tag.startswith("ALTER") or entry.objid in explained or key in found:
            continue
        if entry.objid in tables:
            table_id, name, kind, schema_id, schema = tables[entry.objid]
            found[key] = Event(
                Kind.ALTERED, kind, entry.objid, schema_id, table_id, name, name, schema, schema
            )
        elif entry.objid in schemas:
            schema_id, name = schemas[entry.objid]
            found[key] = Event(
                Kind.ALTERED, "schema", entry.objid, schema_id, None, name, name, name, name
            )
    return list(found.values())


# The events go as one JSON array of rows, in Event's order then _actor's, written by orjson
# with their datetimes: one text value of one batch row, whatever their number.
COLUMNS = (
    ("kind", "text"), ("object_type", "text"), ("oid", "bigint"), ("schema_id", "bigint"),
    ("table_id", "bigint"), ("name_before", "text"), ("name_after", "text"),
    ("schema_before", "text"), ("schema_after", "text"), ("occurred_at", "timestamptz"),
    ("time_seen", "boolean"), ("role", "text"), ("application", "text"),
    ("client_addr", "inet"), ("backend_pid", "integer"), ("command_tag", "text"),
    ("xid", "bigint"),
)  # fmt: skip
# The run that recorded them is the database's latest, written just before in the transaction.
WRITE_BATCH = (
    f"INSERT INTO {EventBatch._meta.db_table} (database_id, run_id, recorded_at, rows, count)"
    " VALUES (%(database)s, (SELECT id FROM"
    f" {ReflectionRun._meta.db_table} WHERE database_id = %(database)s"
    " ORDER BY started_at DESC, id DESC LIMIT 1), %(seen_at)s, %(rows)s, %(count)s)"
)


def write_batch(
    database_id: int, events: list[Event], entries: Sequence[LogEntry], seen_at: datetime
) -> int:
    """Write the events with their actors as one batch for the change feed; return how many.

    An event's actor is the last log entry of its object's oid; without one, the actor is
    unknown and its time is `seen_at`, marked as such. The rows are in the order of their
    statements' time, which the feed gives their ids.
    """
    if not events:
        return 0
    last = {entry.objid: entry for entry in sorted(entries, key=lambda entry: entry.id)}
    unknown = (seen_at, True, "", "", None, None, "", None)
    actors = sorted(((event, last.get(event.oid)) for event in events), key=_when)
    rows = [(*event, *_actor(entry, unknown)) for event, entry in actors]
    with connection.cursor() as cursor:
        cursor.execute(
            WRITE_BATCH,
            {"database": database_id, "seen_at": seen_at, "rows": orjson.dumps(rows).decode(),
             "count": len(rows)},
        )  # fmt: skip
    return len(rows)


def _when(pair: tuple[Event, LogEntry | None]) -> tuple[float, int]:
    """Order events by their statement's time, then transaction: the order of their ids."""
    entry = pair[1]
    return (0.0, 0) if entry is None else (entry.statement_time.timestamp(), entry.xid)


def _actor(entry: LogEntry | None, unknown: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return occurred_at, time_seen, role, application, client_addr, pid, command tag, xid."""
    if entry is None:
        return unknown
    return (
        entry.statement_time, False, entry.role, entry.application,
        entry.client_addr, entry.backend_pid, entry.command_tag, entry.xid,
    )  # fmt: skip
