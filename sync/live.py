"""Read columns and records of a user's relation on the fly, never stored, never written."""

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any, NamedTuple, TypeAlias

from django.conf import settings
from psycopg2 import errors as pg_errors
from sqlalchemy import (
    ARRAY,
    Connection,
    Row,
    Text,
    bindparam,
    cast,
    column,
    func,
    select,
    table,
    text,
    true,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import quoted_name
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, ColumnElement, Executable, Select, TableClause

from sync.catalog import read_only, unavailable
from sync.credentials import redact_url, scrub
from sync.exceptions import (
    InvalidPage,
    ReadFailed,
    ReadTimedOut,
    SyncError,
    TableNotFound,
    WriteRefused,
)
from sync.names import QualifiedName

MAX_LIMIT = 500
# Relations estimated above this many rows get the estimate; the others are counted exactly.
EXACT_COUNT_LIMIT = 10_000

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

# One catalog query by oid. A relation without columns still gives one row (with NULL
# attributes), so no row at all means the oid is gone. Subqueries rather than joins keep its
# planning short. The type category decides how a value is read (see _expression); a domain
# has its base type's category, and an array's element category is read from its base type.
RELATION_QUERY = text(
    """
    SELECT n.nspname AS schema_name, c.relname AS relation_name, c.relkind,
           CASE WHEN c.relkind IN ('r', 'm') AND c.reltuples >= 0 THEN c.reltuples END
               AS estimate,
           a.attnum AS position, a.attname AS name,
           format_type(a.atttypid, a.atttypmod) AS type,
           NOT a.attnotnull AS nullable,
           CASE WHEN a.atthasdef AND a.attgenerated = '' THEN
               (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
                WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum)
           END AS "default",
           array_position(
               (SELECT CAST(i.indkey AS int2[]) FROM pg_index i
                WHERE i.indrelid = c.oid AND i.indisprimary),
               a.attnum
           ) AS key_position,
           CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS base_type,
           t.typcategory AS category,
           CASE WHEN t.typcategory = 'A' THEN
               (SELECT e.typcategory FROM pg_type b JOIN pg_type e ON e.oid = b.typelem
                WHERE b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                  AND b.typlen = -1)
           END AS element_category
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_type t ON t.oid = a.atttypid
    WHERE c.oid = CAST(:oid AS oid) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    ORDER BY a.attnum
    """
)

NAME_QUERY = text(
    """
    SELECT n.nspname AS schema_name, c.relname AS relation_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = CAST(:oid AS oid) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    """
)

# Type categories PostgreSQL writes itself, through to_json: dates and times in ISO 8601 with
# their offset, infinity and years outside 1..9999 included (a Python datetime holds neither),
# and intervals with their months kept (a timedelta turns a month into 30 days).
WRITTEN_BY_POSTGRES = frozenset({"D", "T"})
# Array types psycopg2 turns into lists of exact values, by oid: bool, bytea, "char", name, int2,
# int4, text, bpchar, varchar, int8, float4, float8, oid, numeric, json, jsonb. Any other array
# (uuid[], inet[], money[], an enum's) is read as text[].
DRIVER_ARRAYS = frozenset(
    {1000, 1001, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 1231, 199, 3807}
)


@dataclass(frozen=True)
class Column:
    position: int  # attnum: dropped columns leave gaps
    name: str
    type: str  # as PostgreSQL writes it: "numeric(8,2)", "character varying(12)", "text[]"
    nullable: bool
    default: str | None  # the default's SQL expression; None for generated columns
    primary_key: bool


@dataclass(frozen=True)
class Page:
    columns: tuple[str, ...]  # in the relation's column order, as are the values of each row
    rows: list[list[JSONValue]]
    count: int
    count_is_estimate: bool
    ordered_by: tuple[str, ...]  # the primary key, ("ctid",), ("tableoid", "ctid") or ()
    limit: int
    offset: int


class _Attribute(NamedTuple):
    """What reading a column depends on, from its catalog row."""

    name: str
    category: str
    element_category: str | None
    base_type: int
    key_position: int | None


class _Explain(Executable, ClauseElement):
    """EXPLAIN (FORMAT JSON) of a statement: the planner's estimate, nothing run."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@dataclass(frozen=True)
class _Statements:
    page: Select[Any]  # with :page_limit and :page_offset
    bounded_count: Select[Any]  # counts at most :count_cap rows
    estimate: _Explain
    ordered_by: tuple[str, ...]
    iso_intervals: bool  # SET IntervalStyle before the page is read


@compiles(_Explain, "postgresql")
def _compile_explain(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


def read_columns(key: int, url: str, oid: int) -> list[Column]:
    """Return the columns of the relation with this oid, read from the catalog now."""
    with _read_only(key, url, f"the columns of relation {oid}") as connection:
        rows = _relation_rows(connection, url, oid)
    return [
        Column(
            position=row.position,
            name=row.name,
            type=row.type,
            nullable=row.nullable,
            default=row.default,
            primary_key=row.key_position is not None,
        )
        for row in rows
        if row.position is not None
    ]


def live_name(key: int, url: str, oid: int) -> QualifiedName | None:
    """Return the current (schema, name) of the relation with this oid, or None if it is gone."""
    with _read_only(key, url, f"the name of relation {oid}") as connection:
        row = connection.execute(NAME_QUERY, {"oid": oid}).first()
    return None if row is None else (row.schema_name, row.relation_name)


def read_records(
    key: int,
    url: str,
    oid: int,
    schema: str,
    name: str,
    limit: int,
    offset: int,
    *,
    exact_count_limit: int = EXACT_COUNT_LIMIT,
) -> Page:
    """Return a page of the relation's rows and its row count, read in one snapshot."""
    check_page(limit, offset)
    subject = _display(schema, name)
    with _read_only(key, url, subject) as connection:
        rows = _relation_rows(connection, url, oid)
        first = rows[0]
        if (first.schema_name, first.relation_name) != (schema, name):
            current = _display(first.schema_name, first.relation_name)
            raise TableNotFound(f"{redact_url(url)}: relation {oid} is {current}, not {subject}")
        attributes = tuple(
            _Attribute(
                row.name, row.category, row.element_category, row.base_type, row.key_position
            )
            for row in rows
            if row.position is not None
        )
        statements = _statements(schema, name, first.relkind, attributes)
        if statements.iso_intervals:
            connection.exec_driver_sql("SET LOCAL IntervalStyle = 'iso_8601'")
        bounds = {"page_limit": limit, "page_offset": offset}
        values = connection.execute(statements.page, bounds).all()
        count, estimated = _count(connection, statements, first.estimate, exact_count_limit)
    width = len(attributes)  # a relation without columns is read as SELECT true
    return Page(
        columns=tuple(attribute.name for attribute in attributes),
        rows=[[_render(value) for value in row[:width]] for row in values],
        count=count,
        count_is_estimate=estimated,
        ordered_by=statements.ordered_by,
        limit=limit,
        offset=offset,
    )


def _read_only(key: int, url: str, subject: str) -> AbstractContextManager[Connection]:
    """Return a read-only, time-bounded connection whose errors name what was being read."""
    return read_only(key, url, failure=partial(_failure, url, subject))


def _failure(url: str, subject: str, error: DBAPIError) -> SyncError:
    """Return the error to raise for a driver error met while reading subject."""
    where = redact_url(url)
    lines = str(error.orig).strip().splitlines() if error.orig else []
    detail = scrub(lines[0] if lines else type(error).__name__, url)
    if isinstance(error.orig, pg_errors.QueryCanceled):
        timeout = settings.SYNC_STATEMENT_TIMEOUT
        return ReadTimedOut(
            f"{where}: reading {subject} was cancelled ({detail}); "
            f"SYNC_STATEMENT_TIMEOUT is {timeout} s"
        )
    if isinstance(error.orig, pg_errors.ReadOnlySqlTransaction):
        return WriteRefused(f"{where}: reading {subject} tried to write, refused: {detail}")
    if isinstance(error, OperationalError | InterfaceError):
        return unavailable(url, error)
    return ReadFailed(f"{where}: reading {subject} failed: {detail}")


def _relation_rows(connection: Connection, url: str, oid: int) -> Sequence[Row[Any]]:
    """Return the relation's catalog rows, one a column; raise TableNotFound if it is gone."""
    rows = connection.execute(RELATION_QUERY, {"oid": oid}).all()
    if not rows:
        raise TableNotFound(f"{redact_url(url)}: no table or view has oid {oid} any more")
    return rows


def check_page(limit: int, offset: int) -> None:
    """Raise InvalidPage unless 1 <= limit <= MAX_LIMIT and offset >= 0."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidPage(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise InvalidPage(f"offset must be 0 or more, got {offset}")


def _display(schema: str, name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


# Statements depend only on the relation's shape, so they are built once per shape and
# process: SQLAlchemy then finds their compiled form without rebuilding and re-hashing the tree.
# Immutable constructs keyed by everything they are built from: the cache cannot go stale.
@lru_cache(maxsize=256)
def _statements(
    schema: str, name: str, relkind: str, attributes: tuple[_Attribute, ...]
) -> _Statements:
    """Return the statements that read a relation of this shape, every identifier quoted."""
    names = [attribute.name for attribute in attributes] + ["tableoid", "ctid"]
    relation = table(
        _quoted(name), *[column(_quoted(each)) for each in names], schema=_quoted(schema)
    )
    ordered_by = _ordering(relkind, attributes)
    expressions = [_expression(relation, attribute) for attribute in attributes] or [true()]
    page = select(*expressions).select_from(relation)
    page = page.order_by(*(relation.c[each] for each in ordered_by))
    rows = select(true()).select_from(relation)
    bounded = rows.limit(bindparam("count_cap")).subquery()
    return _Statements(
        page=page.limit(bindparam("page_limit")).offset(bindparam("page_offset")),
        bounded_count=select(func.count()).select_from(bounded),
        estimate=_Explain(rows),
        ordered_by=ordered_by,
        iso_intervals=any("T" in (a.category, a.element_category) for a in attributes),
    )


def _quoted(identifier: str) -> quoted_name:
    return quoted_name(identifier, quote=True)


def _ordering(relkind: str, attributes: tuple[_Attribute, ...]) -> tuple[str, ...]:
    """Return the columns that order pages: the primary key, else the row's address."""
    key = sorted((a for a in attributes if a.key_position is not None), key=_key_position)
    if key:
        return tuple(attribute.name for attribute in key)
    # ctid is unique and fixed while a row is not updated, so pages neither repeat nor skip
    # rows of a table at rest; it costs a sort of the table, bounded by the statement timeout.
    if relkind in ("r", "m"):
        return ("ctid",)
    if relkind == "p":
        return ("tableoid", "ctid")  # a ctid is unique within one partition only
    return ()  # views and foreign tables have no row identity: their own order is kept


def _key_position(attribute: _Attribute) -> int:
    return attribute.key_position or 0


def _expression(relation: TableClause, attribute: _Attribute) -> ColumnElement[Any]:
    """Return how to select a column so that its value reaches JSON exactly."""
    value = relation.c[attribute.name]
    if WRITTEN_BY_POSTGRES & {attribute.category, attribute.element_category}:
        expression: ColumnElement[Any] = func.to_json(value)
    elif attribute.category == "R":
        expression = cast(value, Text)  # psycopg2 would build Range objects
    elif attribute.element_category is not None and attribute.base_type not in DRIVER_ARRAYS:
        expression = cast(value, ARRAY(Text))  # uuid[], money[], enum[]: lists of text
    else:
        expression = value
    return expression.label(_quoted(attribute.name))


def _count(
    connection: Connection, statements: _Statements, estimate: float | None, exact_limit: int
) -> tuple[int, bool]:
    """Return the relation's row count and whether it is an estimate; never scan it all."""
    if estimate is not None and estimate > exact_limit:
        return round(estimate), True
    # Views, foreign and partitioned tables have no reltuples, nor has a never-analysed table
    # (-1): count at most exact_limit + 1 rows, and ask the planner when there are more.
    cap = {"count_cap": exact_limit + 1}
    counted = connection.execute(statements.bounded_count, cap).scalar_one()
    if counted <= exact_limit:
        return counted, False
    plan = connection.execute(statements.estimate).scalar_one()
    return max(round(plan[0]["Plan"]["Plan Rows"]), counted), True


def _render(value: Any) -> JSONValue:
    """Return a driver value as a JSON-serialisable value that keeps it exactly."""
    if value is None or isinstance(value, bool | int | str | dict):
        return value  # a dict is a json or jsonb value, parsed by the driver
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return format(value, "f")  # str() would write 0.0000001 as 1E-7
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()  # PostgreSQL's own hex form of bytea
    if isinstance(value, list):
        return [_render(item) for item in value]
    if isinstance(value, date | time):
        return value.isoformat()  # only reached through a domain over a domain
    return str(value)
