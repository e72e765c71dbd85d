"""Columns and records of a reflected table, read on the fly by its oid under its live name.

The name comes from the name cache, or the catalog on a miss. A table renamed since the last
reflection is still read, and a reflection is queued; one that is gone answers TableNotFound,
and a reflection is queued too.
"""

from sync import freshness, live, names
from sync.exceptions import TableNotFound
from sync.models import Table


def read_columns(table: Table) -> list[live.Column]:
    """Return the table's columns, read from its database's catalog now."""
    database = check_live(table).database
    try:
        return live.read_columns(database.id, database.url, table.oid)
    except TableNotFound:
        raise dropped(table) from None


def read_records(table: Table, limit: int, offset: int) -> live.Page:
    """Return a page of the table's rows, under the name it has in the database now."""
    database = check_live(table).database
    name = names.lookup(database.id, table.oid) or catalog_name(table)
    try:
        page = live.read_records(database.id, database.url, table.oid, *name, limit, offset)
    except TableNotFound:
        # The cached name is stale (renamed since it was cached): ask the catalog once.
        name = catalog_name(table)
        page = live.read_records(database.id, database.url, table.oid, *name, limit, offset)
    if name != (table.schema.name, table.name):
        freshness.request_reflection(database)
    return page


def catalog_name(table: Table) -> names.QualifiedName:
    """Look the table's live name up in the catalog and cache it; TableNotFound if it is gone."""
    database = table.database
    found = live.live_name(database.id, database.url, table.oid)
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
    freshness.request_reflection(table.database)
    return TableNotFound(
        f"table {qualified(table)} no longer exists in {table.database.name}: it was dropped"
    )


def qualified(table: Table) -> str:
    return f"{table.schema.name}.{table.name}"
