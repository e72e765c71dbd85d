"""Read columns and records of a user's relation on the fly, never stored, never written.

Each read is one round trip: one statement, in a read-only transaction of its own with the
statement timeout (see catalog.read_once). A page is read by a statement built from the
relation's shape (its name, kind, columns and key), kept per process and checked by the server
in the same statement: a shape that changed is read again from the catalog, never trusted.
"""

import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any, NamedTuple, TypeAlias

from django.conf import settings
from psycopg2 import errors as pg_errors
from sqlalchemy import (
    ARRAY,
    Float,
    Text,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import psycopg2 as psycopg2_dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.sql import quoted_name
from sqlalchemy.sql.expression import ClauseElement, ColumnElement, TableClause

from sync.catalog import error_detail, read_once, unavailable
from sync.credentials import redact_url
from sync.exceptions import (
    InvalidPage,
    NotPopulated,
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
Renderer: TypeAlias = Callable[[Any], JSONValue]  # makes a driver value JSON

_DIALECT = psycopg2_dialect.dialect()

# The estimate of a relation's rows (pg_class c), or -1 where the catalog keeps none: views,
# foreign and partitioned tables, tables never analysed.
ESTIMATE = "CASE WHEN c.relkind IN ('r', 'm') AND c.reltuples >= 0 THEN c.reltuples ELSE -1 END"

# What the statements reading a relation (pg_class c) are built from, as a digest: its schema,
# name and kind, its columns' numbers, names and types, and its primary key. A type's category
# and base type cannot change, so its oid stands for them.
SHAPE = """md5(CAST(json_build_array(
    c.relnamespace, c.relname, c.relkind,
    (SELECT json_agg(json_build_array(a.attnum, a.attname, a.atttypid) ORDER BY a.attnum)
     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    (SELECT CAST(i.indkey AS text) FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
) AS text))"""

# One catalog query by oid. A relation without columns still gives one row (with NULL
# attributes), so no row at all means the oid is gone. Subqueries rather than joins keep its
# planning short. The type category decides how a value is read (see _expression); a domain
# has its base type's category, and an array's element category is read from its base type.
RELATION_QUERY = """
    SELECT n.nspname AS schema_name, c.relname AS relation_name, c.relkind,
           {shape} AS shape,
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

NAME_QUERY = """
    SELECT n.nspname AS schema_name, c.relname AS relation_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = CAST(:oid AS oid) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""


def _compiled(statement: ClauseElement) -> str:
    """Return a statement as the SQL string psycopg2 is sent, every identifier quoted."""
    return str(statement.compile(dialect=_DIALECT))


COLUMNS_SQL = _compiled(text(RELATION_QUERY.format(shape="NULL")))
SHAPE_OF_OID = f"(SELECT {SHAPE} FROM pg_class c WHERE c.oid = CAST(:oid AS oid))"
SHAPE_SQL = _compiled(text(RELATION_QUERY.format(shape=SHAPE_OF_OID)))
NAME_SQL = _compiled(text(NAME_QUERY))

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
NUMERIC, NUMERIC_ARRAY = 1700, 1231
# Types, by oid, whose values psycopg2 gives as they go to JSON, NULLs included: bool, "char",
# name, int8, int2, int4, text, oid, bpchar, varchar, and arrays of these.
AS_THE_DRIVER_GIVES = frozenset(
    {16, 18, 19, 20, 21, 23, 25, 26, 1042, 1043}
    | {1000, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1028}
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


class _RelationRow(NamedTuple):
    """A row of RELATION_QUERY: the relation, and one of its columns (all None if it has none)."""

    schema_name: str
    relation_name: str
    relkind: str
    shape: str | None
    position: int | None
    name: str
    type: str
    nullable: bool
    default: str | None
    key_position: int | None
    base_type: int
    category: str
    element_category: str | None


class _Attribute(NamedTuple):
    """What reading a column depends on, from its catalog row."""

    name: str
    category: str
    element_category: str | None
    base_type: int
    key_position: int | None


@dataclass(frozen=True)
class _Shape:
    """What the statements that read a relation are built from, and its digest (see SHAPE)."""

    schema: str
    name: str
    relkind: str
    attributes: tuple[_Attribute, ...]
    digest: str


@dataclass(frozen=True)
class _Statements:
    # A page (:page_limit, :page_offset), each row followed by the checked meta: an array of
    # the estimate and of the rows counted up to :count_cap, when it was not above :count_limit.
    page: str
    check: str  # the checked meta alone, for an empty page
    estimate: str  # EXPLAIN of all rows: the planner's estimate, nothing run
    ordered_by: tuple[str, ...]
    width: int  # columns read of the relation: the meta comes after them
    # Per column, what makes its values JSON, or None where the driver's value is JSON already.
    renderers: tuple[Renderer | None, ...]


class _ShapeChanged(Exception):
    """The relation no longer has the shape a statement was built from."""


# Shapes read from the catalog, by (engine key, URL, oid); every read checks its own.
_shapes: dict[tuple[int, str, int], _Shape] = {}
_shapes_lock = threading.Lock()
MAX_SHAPES = 4096


def _forget_shapes_after_fork() -> None:
    _shapes.clear()


os.register_at_fork(after_in_child=_forget_shapes_after_fork)


def read_columns(key: int, url: str, oid: int) -> list[Column]:
    """Return the columns of the relation with this oid, read from the catalog now."""
    rows = _relation_rows(key, url, oid, COLUMNS_SQL, f"the columns of relation {oid}")
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
    failure = partial(_failure, url, f"the name of relation {oid}")
    rows = read_once(key, url, NAME_SQL, {"oid": oid}, failure)
    return (rows[0][0], rows[0][1]) if rows else None


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
    """Return a page of the relation's rows and its row count, read by one statement.

    TableNotFound if the relation is gone or is no longer called schema.name. The relation's
    shape is read from the catalog first when this process has not kept it, or it changed.
    """
    check_page(limit, offset)
    subject = _display(schema, name)
    read = partial(_read_page, key, url, oid, subject, limit, offset, exact_count_limit)
    cached = _shapes.get((key, url, oid))
    if cached is not None and (cached.schema, cached.name) == (schema, name):
        try:
            return read(cached, stale_errors=True)
        except _ShapeChanged:
            pass
    shape = _read_shape(key, url, oid, subject)
    if (shape.schema, shape.name) != (schema, name):
        current = _display(shape.schema, shape.name)
        raise TableNotFound(f"{redact_url(url)}: relation {oid} is {current}, not {subject}")
    try:
        return read(shape, stale_errors=False)
    except _ShapeChanged:
        raise ReadFailed(f"{redact_url(url)}: {subject} changed while it was read") from None


def _read_shape(key: int, url: str, oid: int, subject: str) -> _Shape:
    """Read the relation's shape from the catalog and keep it; TableNotFound if it is gone."""
    rows = _relation_rows(key, url, oid, SHAPE_SQL, subject)
    first = rows[0]
    shape = _Shape(
        schema=first.schema_name,
        name=first.relation_name,
        relkind=first.relkind,
        attributes=tuple(
            _Attribute(
                row.name, row.category, row.element_category, row.base_type, row.key_position
            )
            for row in rows
            if row.position is not None
        ),
        digest=str(first.shape),
    )
    with _shapes_lock:
        if len(_shapes) >= MAX_SHAPES:
            _shapes.clear()
        _shapes[(key, url, oid)] = shape
    return shape


def _read_page(
    key: int,
    url: str,
    oid: int,
    subject: str,
    limit: int,
    offset: int,
    exact_limit: int,
    shape: _Shape,
    *,
    stale_errors: bool,
) -> Page:
    """Read a page with the statement built from shape; _ShapeChanged if it no longer holds.

    With stale_errors, an error that a changed relation would give (an unknown name, a type
    that no longer fits) counts as a changed shape too.
    """
    statements = _statements(shape.schema, shape.name, shape.relkind, shape.attributes)
    failure = partial(_page_failure, url, subject, stale_errors)
    parameters = {
        "oid": oid,
        "shape": shape.digest,
        "page_limit": limit,
        "page_offset": offset,
        "count_limit": exact_limit,
        "count_cap": exact_limit + 1,
    }
    values = read_once(key, url, statements.page, parameters, failure)
    width = statements.width
    if values:
        meta = values[0][width]
    else:  # past the last row, or no rows at all
        checked = read_once(key, url, statements.check, parameters, failure)
        meta = checked[0][0] if checked else None
    if meta is None:
        raise _ShapeChanged
    count, estimated = _count(key, url, statements, meta, exact_limit, failure)
    read = len(shape.attributes)  # a relation without columns is read as SELECT true
    return Page(
        columns=tuple(attribute.name for attribute in shape.attributes),
        rows=_rendered(values, read, statements.renderers),
        count=count,
        count_is_estimate=estimated,
        ordered_by=statements.ordered_by,
        limit=limit,
        offset=offset,
    )


def _relation_rows(key: int, url: str, oid: int, sql: str, subject: str) -> list[_RelationRow]:
    """Return the relation's catalog rows, one a column; raise TableNotFound if it is gone."""
    rows = read_once(key, url, sql, {"oid": oid}, partial(_failure, url, subject))
    if not rows:
        raise TableNotFound(f"{redact_url(url)}: no table or view has oid {oid} any more")
    return [_RelationRow._make(row) for row in rows]


def _page_failure(url: str, subject: str, stale_errors: bool, error: DBAPIError) -> Exception:
    """Return the error to raise for a driver error met while reading a page."""
    code = getattr(error.orig, "pgcode", None) or ""
    # Class 42: undefined table or column, a cast or a function that does not fit the type.
    if stale_errors and code.startswith("42"):
        return _ShapeChanged()
    return _failure(url, subject, error)


def _failure(url: str, subject: str, error: DBAPIError) -> SyncError:
    """Return the error to raise for a driver error met while reading subject."""
    where, detail = redact_url(url), error_detail(error, url)
    if isinstance(error.orig, pg_errors.QueryCanceled):
        timeout = settings.SYNC_STATEMENT_TIMEOUT
        return ReadTimedOut(
            f"{where}: reading {subject} was cancelled ({detail}); "
            f"SYNC_STATEMENT_TIMEOUT is {timeout} s"
        )
    if isinstance(error.orig, pg_errors.ObjectNotInPrerequisiteState):
        # A materialized view created WITH NO DATA: a state of the object, not an outage.
        return NotPopulated(f"{where}: {detail}; run REFRESH MATERIALIZED VIEW on it first")
    if isinstance(error.orig, pg_errors.ReadOnlySqlTransaction):
        return WriteRefused(f"{where}: reading {subject} tried to write, refused: {detail}")
    if isinstance(error, OperationalError | InterfaceError):
        return unavailable(url, error)
    return ReadFailed(f"{where}: reading {subject} failed: {detail}")


def check_page(limit: int, offset: int) -> None:
    """Raise InvalidPage unless 1 <= limit <= MAX_LIMIT and offset >= 0."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidPage(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise InvalidPage(f"offset must be 0 or more, got {offset}")


def _display(schema: str, name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


# Statements depend only on the relation's shape, so they are built and compiled once per
# shape and process, keyed by everything they are built from: the cache cannot go stale.
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
    readings = [_reading(relation, attribute) for attribute in attributes]
    expressions = [expression for expression, _ in readings] or [true()]
    rows = select(true()).select_from(relation)
    counted = select(func.count()).select_from(rows.limit(bindparam("count_cap")).subquery())
    estimate = literal_column(ESTIMATE, Float)
    # Counted only when the estimate is small or missing: a scalar subquery in a CASE branch
    # not taken is never run, so a large relation is not scanned.
    small = estimate <= bindparam("count_limit")
    bounded_count = cast(case((small, counted.scalar_subquery())), Float)
    # No row, so NULL, unless the relation still has the shape the statement was built from.
    meta = (
        select(postgresql.array([estimate, bounded_count]))
        .select_from(table("pg_class").alias("c"))
        .where(text("c.oid = CAST(:oid AS oid)"), text(f"{SHAPE} = :shape"))
        .scalar_subquery()
    )
    page = select(*expressions, meta).select_from(relation)
    page = page.order_by(*(relation.c[each] for each in ordered_by))
    page = page.limit(bindparam("page_limit")).offset(bindparam("page_offset"))
    # PostgreSQL writes intervals as ISO 8601 durations with this, months and days kept apart.
    iso_intervals = any("T" in (a.category, a.element_category) for a in attributes)
    prelude = "SELECT set_config('IntervalStyle', 'iso_8601', true); " if iso_intervals else ""
    return _Statements(
        page=prelude + _compiled(page),
        check=_compiled(select(meta)),
        estimate="EXPLAIN (FORMAT JSON) " + _compiled(rows),
        ordered_by=ordered_by,
        width=len(expressions),
        renderers=tuple(render for _, render in readings),
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


def _reading(
    relation: TableClause, attribute: _Attribute
) -> tuple[ColumnElement[Any], Renderer | None]:
    """Return how to select a column so that its value reaches JSON exactly, and what then
    makes the driver's value JSON (None where it already is)."""
    value = relation.c[attribute.name]
    render: Renderer | None = None
    if attribute.category in WRITTEN_BY_POSTGRES:
        # The JSON string's text: nothing for the driver to parse.
        expression: ColumnElement[Any] = func.to_json(value).op("#>>")(literal_column("'{}'"))
    elif attribute.element_category in WRITTEN_BY_POSTGRES:
        expression = func.to_json(value)  # an array: parsed by the driver into a list
    elif attribute.base_type in (NUMERIC, NUMERIC_ARRAY):
        # PostgreSQL writes every digit, never an exponent: nothing left to do in Python.
        expression = cast(value, ARRAY(Text) if attribute.base_type == NUMERIC_ARRAY else Text)
    elif attribute.category == "R":
        expression = cast(value, Text)  # psycopg2 would build Range objects
    elif attribute.element_category is not None and attribute.base_type not in DRIVER_ARRAYS:
        expression = cast(value, ARRAY(Text))  # uuid[], money[], enum[]: lists of text
    else:
        expression = value
        render = None if attribute.base_type in AS_THE_DRIVER_GIVES else _render
    return expression.label(_quoted(attribute.name)), render


def _count(
    key: int,
    url: str,
    statements: _Statements,
    meta: list[float | None],
    exact_limit: int,
    failure: Callable[[DBAPIError], Exception],
) -> tuple[int, bool]:
    """Return the relation's row count and whether it is an estimate; never scan it all.

    meta is what the page's statement checked: the estimate (see ESTIMATE) and the count of
    at most exact_limit + 1 rows, made only when the estimate is not above exact_limit.
    """
    estimate, counted = meta
    if estimate is not None and estimate > exact_limit:
        return round(estimate), True
    assert counted is not None  # counted whenever the estimate is not above exact_limit
    if counted <= exact_limit:
        return int(counted), False
    # More rows than exact_limit where the catalog keeps no estimate: ask the planner.
    (plan,) = read_once(key, url, statements.estimate, {}, failure)[0]
    return max(round(plan[0]["Plan"]["Plan Rows"]), int(counted)), True


def _rendered(
    values: Sequence[tuple[Any, ...]],
    width: int,
    renderers: tuple[Renderer | None, ...],
) -> list[list[JSONValue]]:
    """Return the first width values of each row, made JSON by their column's renderer."""
    if not any(renderers):
        return [list(row[:width]) for row in values]
    return [
        [
            value if render is None or value is None else render(value)
            for value, render in zip(row[:width], renderers, strict=True)
        ]
        for row in values
    ]


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
