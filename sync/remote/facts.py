"""Read the facts a person scans a table list for (rows, size, columns, comment) in one statement.

The facts are never stored: they change with every write to the table. One statement reads
them for every relation of a page, or, to sort by rows or size, picks the page itself among the
listed relations; either way in one round trip, read-only and under the statement timeout.
"""

from dataclasses import dataclass
from typing import Literal

from sync.remote.connections import Source, read_once

# A partitioned table holds no rows itself: its figures are the sums over its leaf partitions,
# as pg_partition_tree lists them. Views hold nothing: no rows, no size.
FACTS = """
    SELECT c.oid,
           CASE WHEN c.relkind = 'p' THEN tree.rows
                WHEN c.relkind IN ('r', 'm') AND c.reltuples >= 0 THEN c.reltuples::bigint
           END AS rows,
           CASE WHEN c.relkind = 'p' THEN tree.size
                WHEN c.relkind IN ('r', 'm') THEN pg_total_relation_size(c.oid)
           END AS size,
           (SELECT count(*) FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
           obj_description(c.oid, 'pg_class') AS comment
    FROM unnest(%(oids)s::oid[]) AS u(oid)
    JOIN pg_class c ON c.oid = u.oid
    LEFT JOIN LATERAL (
        SELECT sum(greatest(l.reltuples, 0))::bigint AS rows,
               sum(pg_total_relation_size(l.oid))::bigint AS size
        FROM pg_partition_tree(c.oid) t JOIN pg_class l ON l.oid = t.relid
        WHERE t.isleaf AND c.relkind = 'p'
    ) AS tree ON true
"""

SortKey = Literal["rows", "size"]

# In psycopg2's paramstyle, as read_once takes it.
FACTS_SQL = FACTS
# The page of the listed relations by rows or size, the largest first (or last), the
# relations without a figure (views) after the others either way, ties by oid.
ORDERED_SQL = {
    (key, descending): (
        f"SELECT * FROM ({FACTS}) AS facts ORDER BY {key} {'DESC' if descending else 'ASC'}"
        " NULLS LAST, oid LIMIT %(limit)s OFFSET %(offset)s"
    )
    for key in ("rows", "size")
    for descending in (False, True)
}


@dataclass(frozen=True)
class Facts:
    oid: int
    rows: int | None  # the planner's estimate (pg_class.reltuples); None before any ANALYZE
    size: int | None  # bytes, indexes and TOAST included (pg_total_relation_size)
    columns: int
    comment: str | None


def read_facts(source: Source, oids: list[int]) -> dict[int, Facts]:
    """Return the facts of each of these relations (a relation gone since is left out)."""
    if not oids:
        return {}
    rows = read_once(source, FACTS_SQL, {"oids": oids})
    return {row[0]: Facts(*row) for row in rows}


def read_ordered(
    source: Source, oids: list[int], key: SortKey, descending: bool, limit: int, offset: int
) -> list[Facts]:
    """Return one page of these relations sorted by rows or size, with their facts."""
    if not oids:
        return []
    sql = ORDERED_SQL[(key, descending)]
    rows = read_once(source, sql, {"oids": oids, "limit": limit, "offset": offset})
    return [Facts(*row) for row in rows]
