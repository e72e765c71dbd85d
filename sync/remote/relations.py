"""Read columns and records of a user's relation on the fly, never stored, never written.

Each read is one round trip: one statement, in a read-only transaction of its own with the
statement timeout (see connections.read_once). A page is read by a statement built from the
relation's shape (sync.remote.relation_sql), kept per process and checked by the server in the same
statement: a shape that changed is read again from the catalog, never trusted.
"""

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from django.conf import settings
from psycopg2 import errors as pg_errors
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from sync.exceptions import (
    InvalidPage,
    NotPopulated,
    ReadFailed,
    ReadTimedOut,
    SyncError,
    TableNotFound,
    ValueNotFound,
    WriteRefused,
)
from sync.remote.catalog import QualifiedName
from sync.remote.connections import Source, error_detail, read_once, unavailable
from sync.remote.credentials import redact_url
from sync.remote.relation_sql import (
    COLUMNS_SQL,
    NAME_SQL,
    SHAPE_SQL,
    Attribute,
    Shape,
    Statements,
    statements_for,
)
from sync.remote.values import JSONValue, rendered

MAX_LIMIT = 500
# Relations estimated above this many rows get the estimate; the others are counted exactly.
EXACT_COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Column:
    position: int  # attnum: dropped columns leave gaps
    name: str
    type: str  # as PostgreSQL writes it: "numeric(8,2)", "character varying(12)", "text[]"
    nullable: bool
    default: str | None  # the default's SQL expression; None for generated columns
    primary_key: bool


@dataclass(frozen=True)
class Cut:
    """A value longer than the cell size: its row holds the first characters of its text."""

    row: int  # the row's index in the page
    column: str
    octets: int  # bytes of the whole value's text (UTF-8): counted without reading it all


@dataclass(frozen=True)
class RecordsPage:
    columns: tuple[str, ...]  # in the relation's column order, as are the values of each row
    rows: list[list[JSONValue]]
    cut: list[Cut]  # the values cut short, each given as the first cell_chars of its text
    cell_chars: int
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


class Relation(NamedTuple):
    """A relation to read: its oid, and the name it is expected to have now."""

    oid: int
    schema: str
    name: str


@dataclass(frozen=True)
class _PageRead:
    """One page asked of a relation, and where and how it is read."""

    source: Source
    oid: int
    subject: str  # the relation's quoted name, for messages
    limit: int
    offset: int
    exact_limit: int  # counted exactly up to this many rows; estimated above
    cell_chars: int  # a value whose text is longer is cut to this many characters
    selected: tuple[str, ...] | None = None  # the columns read, if not all


class _ShapeChanged(Exception):
    """The relation no longer has the shape a statement was built from."""


# Shapes read from the catalog, by (source, oid); every read checks its own. Kept because a
# kept shape spares a round trip: a first page takes 0.61 ms with it and 1.44 ms with the shape
# read first (bench/relations.py, shape_not_kept). Emptied when full rather than least recently
# used: an emptying costs each relation one shape read, and a plain dict needs no lock to read.
_shapes: dict[tuple[Source, int], Shape] = {}
_shapes_lock = threading.Lock()
MAX_SHAPES = 4096


def forget_shapes() -> None:
    """Forget every kept shape: each relation's next read reads its shape from the catalog."""
    _shapes.clear()  # no lock: also called in a forked child, where another thread may hold it


os.register_at_fork(after_in_child=forget_shapes)


def read_columns(source: Source, oid: int) -> list[Column]:
    """Return the columns of the relation with this oid, read from the catalog now."""
    rows = _relation_rows(source, oid, COLUMNS_SQL, f"the columns of relation {oid}")
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


def current_name(source: Source, oid: int) -> QualifiedName | None:
    """Return the current (schema, name) of the relation with this oid, or None if it is gone."""
    failure = partial(_failure, source.url, f"the name of relation {oid}")
    rows = read_once(source, NAME_SQL, {"oid": oid}, failure)
    return (rows[0][0], rows[0][1]) if rows else None


def read_records(
    source: Source,
    relation: Relation,
    limit: int,
    offset: int,
    *,
    exact_count_limit: int = EXACT_COUNT_LIMIT,
    cell_chars: int | None = None,
    selected: tuple[str, ...] | None = None,
) -> RecordsPage:
    """Return a page of the relation's rows and its row count, read by one statement.

    Values whose text is longer than cell_chars (SYNC_CELL_CHARS) are cut in the statement,
    and fewer rows than limit are read where limit rows of its columns could hold more than
    SYNC_PAGE_CHARS characters. TableNotFound if the relation is gone or is no longer called
    schema.name. The relation's shape is read from the catalog first when this process has
    not kept it, or it changed.
    """
    check_page(limit, offset)
    oid, name = relation.oid, (relation.schema, relation.name)
    cell = settings.SYNC_CELL_CHARS if cell_chars is None else cell_chars
    request = _PageRead(
        source, oid, _display(*name), limit, offset, exact_count_limit, cell, selected
    )
    cached = _shapes.get((source, oid))
    if cached is not None and (cached.schema, cached.name) == name:
        try:
            return _read_page(request, cached, stale_errors=True)
        except _ShapeChanged:
            pass
    shape = _read_shape(source, oid, request.subject)
    if (shape.schema, shape.name) != name:
        current = _display(shape.schema, shape.name)
        where = redact_url(source.url)
        raise TableNotFound(f"{where}: relation {oid} is {current}, not {request.subject}")
    try:
        return _read_page(request, shape, stale_errors=False)
    except _ShapeChanged:
        where = redact_url(source.url)
        raise ReadFailed(f"{where}: {request.subject} changed while it was read") from None


def _read_shape(source: Source, oid: int, subject: str) -> Shape:
    """Read the relation's shape from the catalog and keep it; TableNotFound if it is gone."""
    rows = _relation_rows(source, oid, SHAPE_SQL, subject)
    first = rows[0]
    shape = Shape(
        schema=first.schema_name,
        name=first.relation_name,
        relkind=first.relkind,
        attributes=tuple(
            Attribute(row.name, row.category, row.element_category, row.base_type, row.key_position)
            for row in rows
            if row.position is not None
        ),
        digest=str(first.shape),
    )
    with _shapes_lock:
        if len(_shapes) >= MAX_SHAPES:
            _shapes.clear()
        _shapes[(source, oid)] = shape
    return shape


def _read_page(request: _PageRead, shape: Shape, *, stale_errors: bool) -> RecordsPage:
    """Read a page with the statement built from shape; _ShapeChanged if it no longer holds.

    With stale_errors, an error that a changed relation would give (an unknown name, a type
    that no longer fits) counts as a changed shape too.
    """
    source, exact_limit = request.source, request.exact_limit
    statements = statements_for(
        shape.schema, shape.name, shape.relkind, shape.attributes, request.selected
    )
    failure = partial(_page_failure, source.url, request.subject, stale_errors)
    columns = tuple(
        a.name for a in shape.attributes if request.selected is None or a.name in request.selected
    )
    limit = page_rows(request.limit, len(columns), request.cell_chars)
    parameters = {
        "oid": request.oid,
        "shape": shape.digest,
        "page_limit": limit,
        "page_offset": request.offset,
        "count_limit": exact_limit,
        "count_cap": exact_limit + 1,
        "cell_chars": request.cell_chars,
    }
    values = read_once(source, statements.page, parameters, failure)
    width = statements.width
    if values:
        meta = values[0][width + 1]
    else:  # past the last row, or no rows at all
        checked = read_once(source, statements.check, parameters, failure)
        meta = checked[0][0] if checked else None
    if meta is None:
        raise _ShapeChanged
    count, estimated = _count(source, statements, meta, exact_limit, failure)
    read = len(columns)  # a relation without columns is read as SELECT true
    rows = rendered(values, read, statements.renderers)
    cuts = []
    for index, row in enumerate(values):
        for position, prefix, size in row[width] or ():
            rows[index][position] = prefix
            cuts.append(Cut(index, columns[position], size))
    return RecordsPage(
        columns=columns,
        rows=rows,
        cut=cuts,
        cell_chars=request.cell_chars,
        count=count,
        count_is_estimate=estimated,
        ordered_by=statements.ordered_by,
        limit=limit,
        offset=request.offset,
    )


@dataclass(frozen=True)
class Value:
    column: str
    offset: int
    value: JSONValue
    octets: int | None  # bytes of its whole text where it is cut, else None
    cut: bool


def read_value(source: Source, relation: Relation, column: str, offset: int) -> Value:
    """Return one value, by column and the row's offset in the pages' order, read whole up to
    SYNC_VALUE_CHARS characters. ValueNotFound if there is no such column or row."""
    check_page(1, offset)
    limit = settings.SYNC_VALUE_CHARS
    page = read_records(source, relation, 1, offset, cell_chars=limit, selected=(column,))
    where = f"{redact_url(source.url)}: {_display(relation.schema, relation.name)}"
    if page.columns != (column,):
        raise ValueNotFound(f"{where} has no column named {column!r}")
    if not page.rows:
        raise ValueNotFound(f"{where} has no row at offset {offset} ({page.count} rows)")
    size = page.cut[0].octets if page.cut else None
    return Value(column, offset, page.rows[0][0], size, cut=bool(page.cut))


def page_rows(limit: int, columns: int, cell_chars: int) -> int:
    """Return how many rows of a page to read: at most limit, and at least one, so that the
    page's values hold no more than SYNC_PAGE_CHARS characters whatever the table holds."""
    return max(1, min(limit, settings.SYNC_PAGE_CHARS // (max(1, columns) * cell_chars)))


def _relation_rows(source: Source, oid: int, sql: str, subject: str) -> list[_RelationRow]:
    """Return the relation's catalog rows, one a column; raise TableNotFound if it is gone."""
    rows = read_once(source, sql, {"oid": oid}, partial(_failure, source.url, subject))
    if not rows:
        where = redact_url(source.url)
        raise TableNotFound(f"{where}: no table or view has oid {oid} any more")
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


def _count(
    source: Source,
    statements: Statements,
    meta: list[float | None],
    exact_limit: int,
    failure: Callable[[DBAPIError], Exception],
) -> tuple[int, bool]:
    """Return the relation's row count and whether it is an estimate; never scan it all.

    meta is what the page's statement checked: the estimate (see ESTIMATE) and the count of
    at most exact_limit + 1 rows, made only when the estimate is not above exact_limit.
    """
    estimate, counted = meta
    if counted is None:  # not counted: the estimate is above exact_limit
        return round(estimate or 0), True
    if counted <= exact_limit:
        return int(counted), False
    # More rows than exact_limit where the catalog keeps no estimate: ask the planner.
    (plan,) = read_once(source, statements.estimate, {}, failure)[0]
    return max(round(plan[0]["Plan"]["Plan Rows"]), int(counted)), True
