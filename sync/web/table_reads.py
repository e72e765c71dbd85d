"""Columns and records of a reflected Table model, read on the fly through sync.remote.relations.

sync.remote.relations reads a relation of a user's database by oid and name; this module is the
model's side: it finds the table's current name, and tells the reflection state what the read found.

The name comes from the name cache, or the catalog on a miss. A table renamed since the last
reflection is still read, and a reflection is queued; one that is gone answers TableNotFound,
and a reflection is queued too.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from sync.changes import gate
from sync.exceptions import CatalogUnavailable, TableNotFound
from sync.models import Database, ReflectionRun, Table
from sync.reflection import names
from sync.remote import catalog, relations


def read_columns(table: Table) -> list[relations.Column]:
    """Return the table's columns, read from its database's catalog now."""
    database = check_live(table).database
    try:
        with reporting_unreachable(database):
            return relations.read_columns(database.source, table.oid)
    except TableNotFound:
        raise dropped(table) from None


def read_records(table: Table, limit: int, offset: int) -> relations.RecordsPage:
    """Return a page of the table's rows, under the name it has in the database now."""
    database = check_live(table).database
    with reporting_unreachable(database):
        name = names.lookup(database.id, table.oid) or catalog_name(table)
        try:
            relation = relations.Relation(table.oid, *name)
            page = relations.read_records(database.source, relation, limit, offset)
        except TableNotFound:
            # The cached name is stale (renamed since it was cached): ask the catalog once.
            name = catalog_name(table)
            relation = relations.Relation(table.oid, *name)
            page = relations.read_records(database.source, relation, limit, offset)
    if name != (table.schema.name, table.name):
        gate.notice_change(database, ReflectionRun.Trigger.LIVE)
    return page


def read_value(table: Table, column: str, offset: int) -> relations.Value:
    """Return one whole value of the table (see relations.read_value), under its name now."""
    database = check_live(table).database
    with reporting_unreachable(database):
        name = names.lookup(database.id, table.oid) or catalog_name(table)
        try:
            return relations.read_value(
                database.source, relations.Relation(table.oid, *name), column, offset
            )
        except TableNotFound:
            name = catalog_name(table)  # renamed since its name was cached
            return relations.read_value(
                database.source, relations.Relation(table.oid, *name), column, offset
            )


@contextmanager
def reporting_unreachable(database: Database) -> Iterator[None]:
    """Turn the database's status to failed at once when a read finds it unreachable."""
    try:
        yield
    except CatalogUnavailable as error:
        gate.record_unreachable(database.id, str(error))
        raise


def catalog_name(table: Table) -> catalog.QualifiedName:
    """Look the table's current name up in the catalog and cache it; TableNotFound if it is gone."""
    database = table.database
    found = relations.current_name(database.source, table.oid)
    if found is None:
        raise dropped(table)
    names.remember(database.id, {table.oid: found})
    return found


def check_live(table: Table) -> Table:
    if table.dropped_at is not None:
        raise TableNotFound(f"table {qualified(table)} was dropped from {table.database.name}")
    return table


def dropped(table: Table) -> TableNotFound:
    """Queue a reflection, since the models still list a table that is gone, and say so."""
    gate.notice_change(table.database, ReflectionRun.Trigger.LIVE)
    return TableNotFound(
        f"table {qualified(table)} no longer exists in {table.database.name}: it was dropped"
    )


def qualified(table: Table) -> str:
    return f"{table.schema.name}.{table.name}"
