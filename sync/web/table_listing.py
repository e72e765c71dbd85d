"""Which tables a list shows and in what order, for the API and the pages alike.

Partitions are folded under their parent unless asked for (a parent's partitions, a flat
list, or a search: a partition that matches shows, with its parent named); names sort in the
natural, case-insensitive order of the dbsync_natural collation; rows and size sort in the
user's database (sync.remote.facts), which picks the page among the listed oids.
"""

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    OrderBy,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Collate

from sync.exceptions import BadParameter, SyncError
from sync.models import NATURAL_COLLATION, Database, Table
from sync.remote import facts as remote_facts
from sync.remote.facts import Facts, SortKey
from sync.web.table_reads import reporting_unreachable

SORT_KEYS = ("name", "schema", "kind", "rows", "size")
FACT_KEYS = ("rows", "size")
# Sorting by rows or size sends the listed oids to the user's database: at most this many.
MAX_FACT_SORTED = 100_000


@dataclass(frozen=True)
class Ordering:
    key: str = "name"
    descending: bool = False

    @property
    def by_facts(self) -> bool:
        return self.key in FACT_KEYS

    @property
    def text(self) -> str:
        return ("-" if self.descending else "") + self.key

    def toggled(self, key: str) -> str:
        """The ordering= of a column header: this key, reversed if it is the current one."""
        return f"-{key}" if key == self.key and not self.descending else key


def parse_ordering(raw: str | None) -> Ordering:
    """Read ordering=: a sort key, "-" before it for descending; name when absent or blank."""
    if not raw:
        return Ordering()
    key = raw.removeprefix("-")
    if key not in SORT_KEYS:
        choices = ", ".join(SORT_KEYS)
        raise BadParameter("ordering", f"must be one of {choices}, or one with - before it")
    return Ordering(key, raw.startswith("-"))


def natural(field: str) -> Collate:
    return Collate(F(field), NATURAL_COLLATION)


def ordered(tables: QuerySet[Table], ordering: Ordering) -> QuerySet[Table]:
    """Order by the key (by name for rows and size, which the user's database sorts), then id."""
    sorts: dict[str, list[Any]] = {
        "schema": [natural("schema__name"), natural("name")],
        "kind": [F("kind"), natural("name")],
    }
    first = sorts.get(ordering.key) or [natural("name")]
    sorted_by = [OrderBy(first[0], descending=ordering.descending), *first[1:]]
    return tables.order_by(*sorted_by, "id")


def folded(
    tables: QuerySet[Table], parent: Table | None = None, flat: bool = False, search: str = ""
) -> QuerySet[Table]:
    """Keep the parent's partitions, or fold every partition under its parent, and count them.

    A flat list and a search keep partitions where they are.
    """
    if parent is not None:
        tables = tables.filter(parent=parent)
    elif not flat and not search:
        tables = tables.filter(parent__isnull=True)
    return tables.annotate(partition_count=partition_count())


def partition_count() -> Coalesce:
    """The live partitions right under each row: a subquery the server runs for the page only."""
    under = (
        Table.objects.live()
        .filter(parent=OuterRef("pk"))
        .order_by()
        .values("parent")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(under, output_field=IntegerField()), Value(0))


DESCENDANTS_SQL = f"""
    WITH RECURSIVE tree(root, id) AS (
        SELECT parent_id, id FROM {Table._meta.db_table}
        WHERE parent_id = ANY(%s) AND dropped_at IS NULL
        UNION ALL
        SELECT tree.root, t.id FROM {Table._meta.db_table} AS t JOIN tree ON t.parent_id = tree.id
        WHERE t.dropped_at IS NULL
    )
    SELECT root, count(*) FROM tree GROUP BY root
"""


def partitions_in_all(parent_ids: list[int]) -> dict[int, int]:
    """Return the live partitions under each parent, nested ones included, in one statement."""
    if not parent_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(DESCENDANTS_SQL, [parent_ids])
        return dict(cursor.fetchall())


def kind_counts(tables: QuerySet[Table]) -> dict[tuple[str, bool], int]:
    """Return the count of each (kind, is a partition) under the filters, in one query."""
    partition = ExpressionWrapper(Q(parent__isnull=False), output_field=BooleanField())
    rows = (
        tables.order_by()
        .annotate(partition=partition)
        .values_list("kind", "partition")
        .annotate(n=Count("id"))
    )
    return {(kind, is_partition): n for kind, is_partition, n in rows}


@dataclass(frozen=True)
class FactsRead:
    """The facts of a page's relations, or why there are none (the database did not answer)."""

    facts: dict[int, Facts]
    error: str = ""


def facts_of(database: Database, oids: list[int], failing: bool = False) -> FactsRead:
    """Read the facts of these relations; blank with the reason when the database fails.

    `failing`: the database's status is failed, so it is not asked (a page would wait for its
    connect timeout every time).
    """
    if failing:
        return FactsRead({}, not_asked(database))
    try:
        with reporting_unreachable(database):
            return FactsRead(remote_facts.read_facts(database.source, oids))
    except SyncError as error:
        return FactsRead({}, f"facts not read: {error}")


def failing(database: Database, status: str) -> bool:
    """Whether the database failed lately (a read or a reflection since the last success)."""
    return status == "failed" or bool(database.last_error)


def not_asked(database: Database) -> str:
    first = database.last_error.splitlines()[0] if database.last_error else "see its status"
    return f"facts not read: {database.name} did not answer lately ({first})"


@dataclass(frozen=True)
class FactSorted:
    oids: list[int]  # the page's oids, in order
    total: int
    read: FactsRead


def fact_sorted(
    database: Database,
    tables: QuerySet[Table],
    ordering: Ordering,
    limit: int,
    offset: int,
    failing: bool = False,
) -> FactSorted:
    """Let the user's database pick the page by rows or size; no oids, and why, if it cannot."""
    key: SortKey = "rows" if ordering.key == "rows" else "size"
    if failing:
        return FactSorted([], 0, FactsRead({}, f"not sorted by {key}: {not_asked(database)}"))
    oids = list(tables.order_by().values_list("oid", flat=True)[:MAX_FACT_SORTED])
    try:
        with reporting_unreachable(database):
            found = remote_facts.read_ordered(
                database.source, oids, key, ordering.descending, limit, offset
            )
    except SyncError as error:
        return FactSorted([], len(oids), FactsRead({}, f"not sorted by {key}: {error}"))
    return FactSorted([f.oid for f in found], len(oids), FactsRead({f.oid: f for f in found}))
