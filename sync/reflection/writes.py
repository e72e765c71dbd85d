"""Write a diff to the models with a bounded number of set-based statements."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection

from sync.models import Schema, Table
from sync.reflection.diff import Changes


@dataclass(frozen=True)
class Written:
    """The live rows a write created or changed, by oid, as the statements returned them:
    tables as (id, name, kind, schema id, schema name), schemas as (id, name)."""

    tables: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    schemas: dict[int, tuple[Any, ...]] = field(default_factory=dict)


def apply(database_id: int, changes: Changes, now: datetime, returning: bool) -> Written:
    """Write the changes with a bounded number of set-based statements; with `returning`,
    return the rows created or changed (what the change events name).

    Raw SQL over unnest() arrays: one statement per kind of change whatever the number of
    objects, where bulk_create/bulk_update would build a model instance per object. The rows
    come back from the statements that write them: a read of them after would cost 3 ms a
    thousand (bench/change_feed.py).
    """
    schema_table, table_table = Schema._meta.db_table, Table._meta.db_table
    written = Written()
    schemas_back = " RETURNING s.oid, s.id, s.name" if returning else ""
    tables_back = " RETURNING t.oid, t.id, t.name, t.kind, t.schema_id, s.name" if returning else ""

    with connection.cursor() as cursor:

        def keep(rows: dict[int, tuple[Any, ...]]) -> None:
            """Keep the rows the statement just run returned, by oid, where asked for."""
            if returning:
                rows.update((row[0], row[1:]) for row in cursor.fetchall())

        # Drops first, so that their oids leave the live-row unique index.
        for db_table, dropped in (
            (table_table, changes.dropped_table_ids),
            (schema_table, changes.dropped_schema_ids),
        ):
            if dropped:
                cursor.execute(
                    f"UPDATE {db_table} SET dropped_at = %s WHERE id = ANY(%s::bigint[])",
                    [now, array_literal(dropped)],
                )
        if changes.changed_schemas:
            ids, oids, schema_names = columns(changes.changed_schemas, 3)
            park_oids(cursor, schema_table, ids)
            cursor.execute(
                f"UPDATE {schema_table} AS s SET oid = u.oid, name = u.name"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS u(id, oid, name)"
                " WHERE s.id = u.id" + schemas_back,
                [ids, oids, schema_names],
            )
            keep(written.schemas)
        if changes.new_schemas:
            oids, schema_names = columns(changes.new_schemas, 2)
            cursor.execute(
                f"INSERT INTO {schema_table} AS s (database_id, oid, name)"
                " SELECT %s, u.oid, u.name FROM unnest(%s::bigint[], %s::text[]) AS u(oid, name)"
                + schemas_back,
                [database_id, oids, schema_names],
            )
            keep(written.schemas)
        if changes.changed_tables:
            ids, oids, schema_oids, table_names, kinds = columns(
                ((table_id, *relation[:4]) for table_id, relation in changes.changed_tables), 5
            )
            park_oids(cursor, table_table, ids)
            cursor.execute(
                f"UPDATE {table_table} AS t"
                " SET oid = u.oid, schema_id = s.id, name = u.name, kind = u.kind"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[])"
                "      AS u(id, oid, schema_oid, name, kind)"
                f" JOIN {schema_table} AS s"
                "   ON s.database_id = %s AND s.oid = u.schema_oid AND s.dropped_at IS NULL"
                " WHERE t.id = u.id" + tables_back,
                [ids, oids, schema_oids, table_names, kinds, database_id],
            )
            keep(written.tables)
        if changes.new_tables:
            oids, schema_oids, table_names, kinds = columns(
                (relation[:4] for relation in changes.new_tables), 4
            )
            # Its schema's name comes back through a CTE: an INSERT returns only its own row.
            insert = (
                f"INSERT INTO {table_table} (database_id, schema_id, oid, name, kind)"
                " SELECT %s, s.id, u.oid, u.name, u.kind"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[])"
                "      AS u(oid, schema_oid, name, kind)"
                f" JOIN {schema_table} AS s"
                "   ON s.database_id = %s AND s.oid = u.schema_oid AND s.dropped_at IS NULL"
            )
            if returning:
                insert = (
                    f"WITH t AS ({insert} RETURNING oid, id, name, kind, schema_id)"
                    " SELECT t.oid, t.id, t.name, t.kind, t.schema_id, s.name FROM t"
                    f" JOIN {schema_table} AS s ON s.id = t.schema_id"
                )
            cursor.execute(
                insert, [database_id, oids, schema_oids, table_names, kinds, database_id]
            )
            keep(written.tables)
        if changes.parents:
            write_parents(cursor, database_id, changes.parents)
    return written


def write_parents(cursor: Any, database_id: int, parents: list[tuple[int, int | None]]) -> None:
    """Point each listed relation at its parent's live row (or at none), in one statement.

    Last of the writes, so that a parent and its partitions created together all have rows.
    """
    oids, parent_oids = columns(((oid, "" if p is None else p) for oid, p in parents), 2)
    table_table = Table._meta.db_table
    cursor.execute(
        f"UPDATE {table_table} AS t SET parent_id = p.id"
        " FROM unnest(%s::bigint[], %s::text[]) AS u(oid, parent_oid)"
        f" LEFT JOIN {table_table} AS p ON p.database_id = %s"
        "   AND p.oid = nullif(u.parent_oid, '')::bigint AND p.dropped_at IS NULL"
        " WHERE t.database_id = %s AND t.oid = u.oid AND t.dropped_at IS NULL",
        [oids, parent_oids, database_id, database_id],
    )


def columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[str]:
    """Transpose rows into `width` PostgreSQL array literals, the shape unnest() takes.

    One text parameter per column: psycopg2 would otherwise quote every element into an
    ARRAY[...] constructor, and the server parse each one.
    """
    transposed = list(zip(*rows, strict=True)) or [() for _ in range(width)]
    return [array_literal(column) for column in transposed]


def array_literal(values: Iterable[Any]) -> str:
    items = list(values)
    # Whole numbers need no quotes: half the time of a first import's literals.
    if all(type(v) is int for v in items):
        return "{" + ",".join(map(str, items)) + "}"
    quoted = ('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in items)
    return "{" + ",".join(quoted) + "}"


def park_oids(cursor: Any, db_table: str, ids: str) -> None:
    # Rows about to take new oids first step aside, so that two of them trading oids (a
    # database restored in place) never collide in the live-row unique index mid-statement.
    cursor.execute(f"UPDATE {db_table} SET oid = -id WHERE id = ANY(%s::bigint[])", [ids])
