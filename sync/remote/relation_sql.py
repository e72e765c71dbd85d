"""The SQL that reads a user's relation: its catalog rows by oid, statements built from its shape.

A shape is what the statements depend on (schema, name, kind, columns and key); each statement
checks it in the server, so one built for a shape that changed answers nothing, never wrong rows.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    Float,
    Integer,
    Text,
    bindparam,
    case,
    cast,
    column,
    false,
    func,
    literal_column,
    null,
    select,
    table,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import psycopg2 as psycopg2_dialect
from sqlalchemy.sql import quoted_name
from sqlalchemy.sql.expression import ClauseElement, ColumnElement, Label, TableClause

from sync.remote.values import Renderer, raw_json, render

# SQLAlchemy leaves the psycopg2 dialect's constructor unannotated.
_DIALECT = psycopg2_dialect.dialect()  # type: ignore[no-untyped-call]

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
# planning short. The type category decides how a value is read (see reading); a domain
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


def compiled(statement: ClauseElement) -> str:
    """Return a statement as the SQL string psycopg2 is sent, every identifier quoted."""
    return str(statement.compile(dialect=_DIALECT))


COLUMNS_SQL = compiled(text(RELATION_QUERY.format(shape="NULL")))
SHAPE_OF_OID = f"(SELECT {SHAPE} FROM pg_class c WHERE c.oid = CAST(:oid AS oid))"
SHAPE_SQL = compiled(text(RELATION_QUERY.format(shape=SHAPE_OF_OID)))
NAME_SQL = compiled(text(NAME_QUERY))

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
# json and jsonb, and their arrays: read as text, never parsed (see values.RawJSON).
JSON_TYPES, JSON_ARRAYS = frozenset({114, 3802}), frozenset({199, 3807})
# Types, by oid, whose text is short whatever the value: never cut. bool, "char", int8, int2,
# int4, oid, float4, float8, date, time, timestamp, timestamptz, interval, timetz, uuid.
SHORT_TYPES = frozenset(
    {16, 18, 20, 21, 23, 26, 700, 701, 1082, 1083, 1114, 1184, 1186, 1266, 2950}
)
AS_THE_DRIVER_GIVES = frozenset(
    {16, 18, 19, 20, 21, 23, 25, 26, 1042, 1043}
    | {1000, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1028}
)


class Attribute(NamedTuple):
    """What reading a column depends on, from its catalog row."""

    name: str
    category: str
    element_category: str | None
    base_type: int
    key_position: int | None


@dataclass(frozen=True)
class Shape:
    """What the statements that read a relation are built from, and its digest (see SHAPE)."""

    schema: str
    name: str
    relkind: str
    attributes: tuple[Attribute, ...]
    digest: str


@dataclass(frozen=True)
class Statements:
    # A page (:page_limit, :page_offset), each row followed by the checked meta: an array of
    # the estimate and of the rows counted up to :count_cap, when it was not above :count_limit.
    # A row is its values (NULL where cut), the cuts, then the meta. The cuts: a jsonb array
    # per row, of [column index, first :cell_chars characters of its text, bytes of the whole
    # text] for each value whose text is longer than :cell_chars characters, or NULL if none.
    page: str
    check: str  # the checked meta alone, for an empty page
    estimate: str  # EXPLAIN of all rows: the planner's estimate, nothing run
    ordered_by: tuple[str, ...]
    width: int  # columns read of the relation: the cuts and the meta come after them
    # Per column, what makes its values JSON, or None where the driver's value is JSON already.
    renderers: tuple[Renderer | None, ...]


# Statements depend only on the relation's shape, so they are built and compiled once per
# shape and process, keyed by everything they are built from: the cache cannot go stale.
@lru_cache(maxsize=256)
def statements_for(
    schema: str,
    name: str,
    relkind: str,
    attributes: tuple[Attribute, ...],
    selected: tuple[str, ...] | None = None,
) -> Statements:
    """Return the statements that read a relation of this shape, every identifier quoted:
    all its columns, or only those selected."""
    names = [attribute.name for attribute in attributes] + ["tableoid", "ctid"]
    relation = table(quoted(name), *[column(quoted(each)) for each in names], schema=quoted(schema))
    ordered_by = ordering(relkind, attributes)
    read = [a for a in attributes if selected is None or a.name in selected]
    readings = [reading(relation, attribute) for attribute in read]
    cut_entries = [
        cut_entry(relation, attribute, index)
        for index, attribute in enumerate(read)
        if is_cut(attribute)
    ]
    expressions = [
        uncut(relation, attribute, expression) if is_cut(attribute) else expression
        for attribute, (expression, _) in zip(read, readings, strict=True)
    ] or [true()]
    cuts: ColumnElement[Any] = (
        func.array_remove(postgresql.array(cut_entries, type_=JSONB), null())
        if cut_entries
        else null()
    )
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
    page = select(*expressions, cuts, meta).select_from(relation)
    page = page.order_by(*(relation.c[each] for each in ordered_by))
    page = page.limit(bindparam("page_limit")).offset(bindparam("page_offset"))
    # PostgreSQL writes intervals as ISO 8601 durations with this, months and days kept apart.
    iso_intervals = any("T" in (a.category, a.element_category) for a in read)
    prelude = "SELECT set_config('IntervalStyle', 'iso_8601', true); " if iso_intervals else ""
    return Statements(
        page=prelude + compiled(page),
        check=compiled(select(meta)),
        estimate="EXPLAIN (FORMAT JSON) " + compiled(rows),
        ordered_by=ordered_by,
        width=len(expressions),
        renderers=tuple(render for _, render in readings),
    )


def quoted(identifier: str) -> quoted_name:
    return quoted_name(identifier, quote=True)


def ordering(relkind: str, attributes: tuple[Attribute, ...]) -> tuple[str, ...]:
    """Return the columns that order pages: the primary key, else the row's address."""
    key = sorted((a for a in attributes if a.key_position is not None), key=key_position)
    if key:
        return tuple(attribute.name for attribute in key)
    # ctid is unique and fixed while a row is not updated, so pages neither repeat nor skip
    # rows of a table at rest; it costs a sort of the table, bounded by the statement timeout.
    if relkind in ("r", "m"):
        return ("ctid",)
    if relkind == "p":
        return ("tableoid", "ctid")  # a ctid is unique within one partition only
    return ()  # views and foreign tables have no row identity: their own order is kept


def key_position(attribute: Attribute) -> int:
    return attribute.key_position or 0


def is_cut(attribute: Attribute) -> bool:
    """Say whether a column's values may be long enough to be cut."""
    return attribute.element_category is not None or attribute.base_type not in SHORT_TYPES


CELL_CHARS = bindparam("cell_chars", type_=Integer)


BYTEA = 17


def octets(relation: TableClause, attribute: Attribute) -> ColumnElement[int]:
    """Return the bytes of a value's text, from no more than its header where that can be:
    text and json are their own text, and bytea's is its \\x and two hex digits a byte."""
    value = relation.c[attribute.name]
    if attribute.base_type == BYTEA and attribute.element_category is None:
        return func.octet_length(value) * literal_column("2") + literal_column("2")
    return func.octet_length(cast(value, Text))


def too_long(relation: TableClause, attribute: Attribute) -> ColumnElement[bool]:
    """Return whether a value's text is longer than :cell_chars characters.

    Its bytes are counted first (see octets); only a value with more bytes than that has
    its first :cell_chars + 1 characters read to count them, a slice of it: a value of
    megabytes is never read whole to be cut.
    """
    text_form = cast(relation.c[attribute.name], Text)
    return case(
        (octets(relation, attribute) <= CELL_CHARS, false()),
        else_=func.length(func.left(text_form, CELL_CHARS + literal_column("1"))) > CELL_CHARS,
    )


def uncut(
    relation: TableClause, attribute: Attribute, expression: Label[Any]
) -> ColumnElement[Any]:
    """Return the column's reading, NULL where the value is too long (its cut says so)."""
    label = quoted(attribute.name)
    return case((too_long(relation, attribute), null()), else_=expression.element).label(label)


def cut_entry(relation: TableClause, attribute: Attribute, index: int) -> ColumnElement[Any]:
    """Return [index, the first :cell_chars characters, the bytes of the whole text] of a
    value too long."""
    text_form = cast(relation.c[attribute.name], Text)
    position = literal_column(str(index), Integer)
    prefix = func.left(text_form, CELL_CHARS)
    entry = func.jsonb_build_array(position, prefix, octets(relation, attribute))
    return case((too_long(relation, attribute), entry))


def reading(relation: TableClause, attribute: Attribute) -> tuple[Label[Any], Renderer | None]:
    """Return how to select a column so that its value reaches JSON exactly, and what then
    makes the driver's value JSON (None where it already is)."""
    value = relation.c[attribute.name]
    renderer: Renderer | None = None
    if attribute.base_type in JSON_TYPES | JSON_ARRAYS:
        # Its text, never parsed: a JSON number keeps every digit it was written with.
        is_array = attribute.base_type in JSON_ARRAYS
        expression: ColumnElement[Any] = cast(value, ARRAY(Text) if is_array else Text)
        renderer = raw_json
    elif attribute.category in WRITTEN_BY_POSTGRES:
        # The JSON string's text: nothing for the driver to parse.
        expression = func.to_json(value).op("#>>")(literal_column("'{}'"))
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
        renderer = None if attribute.base_type in AS_THE_DRIVER_GIVES else render
    return expression.label(quoted(attribute.name)), renderer
