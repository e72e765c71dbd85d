"""What the listing pages show: filtered rows of one page, counts per kind, their totals, and
each table's latest change."""
# The tables page folds, sorts and reads facts as the API does (sync.web.table_listing).

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from django.db.models import Count, Q, QuerySet

from sync.models import Database, ReflectionRun, Schema, Table
from sync.remote.facts import Facts
from sync.web import table_listing
from sync.web.change_feed import LastChange, last_changes
from sync.web.table_listing import FactsRead, Ordering

T = TypeVar("T")

PAGE_SIZE = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: Sequence[T]
    total: int
    number: int  # 1-based, within 1..pages
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first_row(self) -> int:
        return (self.number - 1) * self.size + 1 if self.total else 0

    @property
    def last_row(self) -> int:
        return min(self.total, self.number * self.size)

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.pages else None


def paged(rows: QuerySet[Any, T], total: int, number: int, size: int = PAGE_SIZE) -> Page[T]:
    """Cut one page of rows, the number brought within the pages there are."""
    number = min(number, max(1, -(-total // size)))
    start = (number - 1) * size
    return Page(list(rows[start : start + size]), total, number, size)


@dataclass(frozen=True)
class TableFilters:
    search: str = ""
    kind: str = ""  # "" for every kind
    schema: Schema | None = None
    dropped: bool = False  # list dropped tables too
    parent: Table | None = None  # list the partitions of this table
    flat: bool = False  # list partitions in place, not folded under their parent
    ordering: Ordering = field(default_factory=Ordering)

    @property
    def folds(self) -> bool:
        """Whether partitions are folded under their parents (and so not counted as rows)."""
        return self.parent is None and not self.flat and not self.search


@dataclass(frozen=True)
class KindCount:
    kind: str
    label: str
    count: int
    folded: int = 0  # partitions of this kind folded under their parents


def databases_of(readable: QuerySet[Database], search: str, number: int) -> Page[Database]:
    """Return a page of the databases the user may read, by name."""
    if search:
        readable = readable.filter(name__icontains=search)
    return paged(readable.order_by("name", "id"), readable.count(), number)


def schemas_of(database: Database, search: str, dropped: bool, number: int) -> Page[Schema]:
    """Return a page of the database's schemas, each with its count of live tables."""
    schemas = Schema.objects.filter(database=database)
    if not dropped:
        schemas = schemas.live()
    if search:
        schemas = schemas.filter(name__icontains=search)
    total = schemas.count()
    live_tables = Count("tables", filter=Q(tables__dropped_at__isnull=True))
    return paged(schemas.annotate(table_count=live_tables).order_by("name", "id"), total, number)


KIND_LABELS = {kind: str(label) for kind, label in Table.Kind.choices}


class ListedTable(NamedTuple):
    """A listed table as the page shows it: read as one tuple, no model instance built.

    A page of 100 Table instances and their schemas cost a third of the tables page's time
    (bench/pages.py: 13.2 ms against 7.5 ms for the API list of the same rows, which reads
    tuples).
    """

    id: int
    oid: int
    name: str
    kind: str
    dropped_at: datetime | None
    schema_id: int
    schema_name: str
    parent_id: int | None
    parent_name: str | None
    partitions: int
    partitions_in_all: int = 0
    facts: Facts | None = None
    changed: LastChange | None = None  # its latest change event, if any

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


TABLE_ROW = (
    "id", "oid", "name", "kind", "dropped_at", "schema_id", "schema__name", "parent_id",
    "parent__name", "partition_count",
)  # fmt: skip


@dataclass(frozen=True)
class TablesPage:
    page: Page[ListedTable]
    kinds: list[KindCount]
    facts_error: str  # why the facts are blank, "" when they were read


def tables_of(
    database: Database, filters: TableFilters, number: int, failing: bool = False
) -> TablesPage:
    """Return a page of the database's tables, their facts and the counts of each kind.

    One grouped count serves the kind filter's counts, the folded partitions and the total;
    one statement to the user's database reads the page's facts (or picks the page by them).
    """
    tables = Table.objects.filter(database=database)
    if filters.schema is not None:
        tables = tables.filter(schema=filters.schema)
    if not filters.dropped:
        tables = tables.live()
    if filters.search:
        tables = tables.filter(name__icontains=filters.search)
    if filters.parent is not None:
        tables = tables.filter(parent=filters.parent)
    grouped = table_listing.kind_counts(tables)
    kinds = [
        kind_count(grouped, kind, str(label), filters.folds) for kind, label in Table.Kind.choices
    ]
    if filters.kind:
        tables = tables.filter(kind=filters.kind)
    listed = table_listing.folded(tables, None, flat=not filters.folds)
    total = sum(k.count for k in kinds if not filters.kind or k.kind == filters.kind)
    page, read = one_page(database, listed, filters.ordering, total, number, failing)
    changed = last_changes([row.id for row in page.rows])
    in_all = table_listing.partitions_in_all([row.id for row in page.rows if row.partitions])
    rows = [
        row._replace(
            partitions_in_all=in_all.get(row.id, 0),
            facts=read.facts.get(row.oid),
            changed=changed.get(row.id),
        )
        for row in page.rows
    ]
    return TablesPage(Page(rows, page.total, page.number, page.size), kinds, read.error)


def kind_count(
    grouped: dict[tuple[str, bool], int], kind: str, label: str, folds: bool
) -> KindCount:
    partitions = grouped.get((kind, True), 0)
    if folds:
        return KindCount(kind, label, grouped.get((kind, False), 0), partitions)
    return KindCount(kind, label, grouped.get((kind, False), 0) + partitions)


def one_page(
    database: Database,
    tables: QuerySet[Table],
    ordering: Ordering,
    total: int,
    number: int,
    failing: bool,
) -> tuple[Page[ListedTable], FactsRead]:
    """Cut the page in the ordering asked for, and read its facts, in one remote statement."""
    number = min(number, max(1, -(-total // PAGE_SIZE)))
    if ordering.by_facts:
        start = (number - 1) * PAGE_SIZE
        picked = table_listing.fact_sorted(database, tables, ordering, PAGE_SIZE, start, failing)
        if not picked.read.error:
            found = {
                row[1]: ListedTable(*row)
                for row in tables.filter(oid__in=picked.oids).values_list(*TABLE_ROW)
            }
            rows = [found[oid] for oid in picked.oids if oid in found]
            return Page(rows, total, number), picked.read
        # The database did not sort: by name then, the facts blank with its reason.
        return by_name(tables, Ordering(), total, number), picked.read
    page = by_name(tables, ordering, total, number)
    return page, table_listing.facts_of(database, [row.oid for row in page.rows], failing)


def by_name(
    tables: QuerySet[Table], ordering: Ordering, total: int, number: int
) -> Page[ListedTable]:
    """Cut the page in an ordering the service database sorts: name, schema or kind."""
    cut: Page[tuple[Any, ...]] = paged(
        table_listing.ordered(tables, ordering).values_list(*TABLE_ROW), total, number
    )
    return Page([ListedTable(*row) for row in cut.rows], cut.total, cut.number, cut.size)


def runs_of(database: Database, number: int) -> Page[ReflectionRun]:
    """Return a page of the database's reflection history, the latest first."""
    runs = ReflectionRun.objects.filter(database=database)
    return paged(runs, runs.count(), number)


def object_counts(databases: Sequence[Database]) -> dict[int, tuple[int, int]]:
    """Return the live schemas and tables of each database, in two grouped queries."""
    ids = [database.id for database in databases]
    schemas, tables = Schema.objects.live_counts(ids), Table.objects.live_counts(ids)
    return {i: (schemas.get(i, 0), tables.get(i, 0)) for i in ids}
