"""Benchmark reflection beside a bare catalog read on kept databases of 1k to 100k relations."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

isolate("dbsync_bench")

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection

from bench.common import connect, ensure_database, log, machine, server_url
from sync.models import Database, Schema, Table
from sync.reflection import (
    names,
    registry,
)
from sync.reflection.diff import Counts
from sync.reflection.runs import reflect
from sync.remote import catalog, connections
from sync.remote.catalog import Snapshot
from sync.remote.connections import Source

SCHEMAS = 10  # relations are spread round-robin over bench_00 .. bench_09
BATCH = 1000  # DDL statements per transaction, well inside the shared lock table
DEFAULT_SIZES = (1_000, 10_000)
LARGE_SIZE = 100_000
NAIVE_MAX = 10_000
NO_CHANGE_PER_REPETITION = 3
MARKER = "dbsync bench: {n} relations"

# Relation i lives in schema bench_(i % 10) as r<i>; one in ten is a view, the rest tables.
WANTED = """
    SELECT i, 'bench_' || lpad((i % {schemas})::text, 2, '0') AS nsp,
           'r' || lpad(i::text, 6, '0') AS rel,
           CASE WHEN i / {schemas} % 10 = 0 THEN 'v' ELSE 'r' END AS relkind
    FROM generate_series(0, {n} - 1) AS i
"""
EXISTING = """
    SELECT n.nspname::text AS nsp, c.relname::text AS rel, c.relkind::text AS relkind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname LIKE 'bench\\_%' AND c.relkind IN ('r', 'v')
"""
SCHEMA_DDL = """
    SELECT format('CREATE SCHEMA IF NOT EXISTS %I', 'bench_' || lpad(s::text, 2, '0'))
    FROM generate_series(0, {schemas} - 1) AS s
"""
# Repair, and undo of a change run: drop what should not be there, create what is missing.
UNWANTED_DDL = """
    SELECT format('DROP %s %I.%I', CASE relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, nsp, rel)
    FROM (SELECT nsp, rel, relkind FROM ({existing}) e
          EXCEPT SELECT nsp, rel, relkind FROM ({wanted}) w) AS x
"""
MISSING_DDL = """
    SELECT CASE relkind WHEN 'v' THEN format('CREATE VIEW %I.%I AS SELECT 1 AS x', nsp, rel)
                        ELSE format('CREATE TABLE %I.%I ()', nsp, rel) END
    FROM (SELECT nsp, rel, relkind FROM ({wanted}) w
          EXCEPT SELECT nsp, rel, relkind FROM ({existing}) e) AS x
    ORDER BY 1
"""
# The change run: 1% of the relations renamed, 1% dropped and 1% added (all tables).
CHANGE_DDL = """
    SELECT format('ALTER TABLE %I.%I RENAME TO %I', nsp, rel, rel || '_renamed')
    FROM ({wanted}) w WHERE i % 100 = 11
    UNION ALL
    SELECT format('DROP TABLE %I.%I', nsp, rel) FROM ({wanted}) w WHERE i % 100 = 22
    UNION ALL
    SELECT format('CREATE TABLE %I.%I ()', 'bench_' || lpad((j % {schemas})::text, 2, '0'),
                  'added_' || lpad(j::text, 6, '0'))
    FROM generate_series(0, {n} / 100 - 1) AS j
"""
CATALOG_SQL = str(catalog.CATALOG_QUERY)
METHOD = {
    "bare_catalog_read": "CATALOG_QUERY + fetchall over a warm psycopg2 connection",
    "reflection": "wall time of sync.reflection.reflect(), name cache write (on_commit) included",
    "first_import": "fresh Database row, so also a new engine and connection to the database",
    "service_tables": "VACUUM (ANALYZE) before each first import, ANALYZE right after it",
    "no_change_runs_per_repetition": NO_CHANGE_PER_REPETITION,
    "statistics": "*_ms is the median, *_min_ms the minimum, of *_samples samples",
}


def query_sql(template: str, n: int) -> sql.Composable:
    """Fill a DDL-generating template; executed without parameters, so % stays literal."""
    wanted = WANTED.format(schemas=SCHEMAS, n=n)
    text = template.format(wanted=wanted, existing=EXISTING, schemas=SCHEMAS, n=n)
    return sql.SQL(text)  # only integers from this script are formatted in


def run_generated_ddl(dbname: str, generator: sql.Composable) -> int:
    """Run the statements a query generates, BATCH per transaction; return how many ran."""
    pg = connect(dbname, autocommit=False)
    try:
        with pg.cursor() as cursor:
            cursor.execute(generator)
            statements = [row[0] for row in cursor.fetchall()]
        pg.commit()
        for start in range(0, len(statements), BATCH):
            with pg.cursor() as cursor:
                cursor.execute(";\n".join(statements[start : start + BATCH]))
            pg.commit()
            if len(statements) > 10 * BATCH and start % (10 * BATCH) == 0:
                log(f"  {dbname}: {start + BATCH:,} / {len(statements):,} statements")
    finally:
        pg.close()
    return len(statements)


def ensure_relations(dbname: str, n: int) -> None:
    """Make the database hold exactly the n wanted relations, whatever state it is in."""
    run_generated_ddl(dbname, query_sql(SCHEMA_DDL, n))
    dropped = run_generated_ddl(dbname, query_sql(UNWANTED_DDL, n))
    created = run_generated_ddl(dbname, query_sql(MISSING_DDL, n))
    if dropped or created:
        log(f"{dbname}: dropped {dropped:,} and created {created:,} relations")


def ensure_user_database(n: int, prefix: str = "dbsync_bench") -> str:
    """Create the kept database of n relations, or check and repair the existing one."""
    dbname = f"{prefix}_{n}"
    ensure_database(dbname, MARKER.format(n=n))
    started = time.perf_counter()
    ensure_relations(dbname, n)
    log(f"{dbname} ready ({time.perf_counter() - started:.1f} s)")
    return dbname


def ensure_service_database() -> None:
    """Create the bench service database if missing and migrate it."""
    name = settings.DATABASES["default"]["NAME"]
    admin = connect("postgres")
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                log(f"creating service database {name}")
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()
    call_command("migrate", interactive=False, verbosity=0)


def forget(name: str) -> None:
    """Delete a registered database with its rows and cached names, then vacuum the tables."""
    old = Database.objects.filter(name=name).first()
    if old is not None:
        connections.engine(Source(old.id, old.url)).dispose()
        oids = Table.objects.filter(database=old).values_list("oid", flat=True)
        cache.delete_many([names.name_key(old.id, oid) for oid in oids])
        old.delete()
    # Every repetition starts from tables without dead rows, so autovacuum does not interfere.
    tidy_service_tables("VACUUM (ANALYZE)")


def tidy_service_tables(command: str) -> None:
    """Run VACUUM or ANALYZE on the schema and table tables, as autovacuum would in time.

    After a first import the statistics still describe tables without this database's rows;
    the planner would then look rows up through the database_id index and filter thousands.
    """
    with connection.cursor() as cursor:
        for model in (Schema, Table):
            cursor.execute(f"{command} {model._meta.db_table}")


def register_fresh(name: str, url: str) -> int:
    forget(name)
    database, _ = registry.register(name, url)
    return database.id


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Return (milliseconds, result) of one call."""
    started = time.perf_counter()
    result = function()
    return (time.perf_counter() - started) * 1000, result


def bare_read(pg: PgConnection) -> float:
    """Time CATALOG_QUERY and fetching all its rows over a warm plain connection, in ms."""
    started = time.perf_counter()
    with pg.cursor() as cursor:
        cursor.execute(CATALOG_SQL)
        cursor.fetchall()
    return (time.perf_counter() - started) * 1000


def timed_reflect(database_id: int) -> tuple[float, Counts]:
    elapsed, result = timed(lambda: reflect(database_id))
    return elapsed, result.counts


@dataclass
class Samples:
    """Milliseconds per measurement, and the counts of the last run of each kind."""

    ms: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, key: str, elapsed: float, counts: Counts | None = None) -> None:
        self.ms.setdefault(key, []).append(elapsed)
        if counts is not None:
            self.counts[key] = asdict(counts)


def change_run(dbname: str, n: int, database_id: int, samples: Samples) -> None:
    """Rename, drop and add 1% each, time the reflection, then restore the database."""
    try:
        run_generated_ddl(dbname, query_sql(CHANGE_DDL, n))
        elapsed, counts = timed_reflect(database_id)
        samples.add("change_1pct", elapsed, counts)
    finally:
        ensure_relations(dbname, n)


def repetition(dbname: str, n: int, bare: PgConnection, samples: Samples) -> None:
    """One first import, a few no-change runs and one change run, each beside a bare read."""
    database_id = register_fresh(f"bench_{n}", server_url(dbname))
    samples.add("bare", bare_read(bare))
    samples.add("first_import", *timed_reflect(database_id))
    tidy_service_tables("ANALYZE")
    for _ in range(NO_CHANGE_PER_REPETITION):
        samples.add("bare", bare_read(bare))
        samples.add("no_change", *timed_reflect(database_id))
    samples.add("bare", bare_read(bare))
    change_run(dbname, n, database_id, samples)


def naive_schemas(database_id: int, snapshot: Snapshot) -> dict[int, Schema]:
    """Get or create each schema of the snapshot, one query or more apiece."""
    schemas: dict[int, Schema] = {}
    for oid, name in snapshot.schemas.items():
        schema, created = Schema.objects.get_or_create(
            database_id=database_id, oid=oid, dropped_at=None, defaults={"name": name}
        )
        if not created and schema.name != name:
            schema.name = name
            schema.save(update_fields=["name"])
        schemas[oid] = schema
    return schemas


def naive_reflect(database_id: int, url: str) -> None:
    """The baseline: one get_or_create (one query or more) per schema and relation."""
    snapshot = catalog.read_catalog(Source(database_id, url)).snapshot
    if snapshot is None:
        raise RuntimeError("read_catalog without a known fingerprint always reads the catalog")
    with transaction.atomic():
        schemas = naive_schemas(database_id, snapshot)
        for relation in snapshot.relations:
            schema = schemas[relation.schema_oid]
            wanted = {"schema": schema, "name": relation.name, "kind": relation.kind}
            table, created = Table.objects.get_or_create(
                database_id=database_id, oid=relation.oid, dropped_at=None, defaults=wanted
            )
            target = (schema.id, relation.name, relation.kind)
            if not created and (table.schema_id, table.name, table.kind) != target:
                table.schema, table.name, table.kind = schema, relation.name, relation.kind
                table.save(update_fields=["schema", "name", "kind"])
        present = [relation.oid for relation in snapshot.relations]
        live = Table.objects.live().filter(database_id=database_id)
        live.exclude(oid__in=present).update(dropped_at=timezone.now())


def naive_repetition(dbname: str, n: int, bare: PgConnection, samples: Samples) -> None:
    """A naive first import into empty models, then a naive no-change run."""
    url = server_url(dbname)
    database_id = register_fresh(f"bench_naive_{n}", url)
    samples.add("bare", bare_read(bare))
    samples.add("naive_first_import", timed(lambda: naive_reflect(database_id, url))[0])
    tidy_service_tables("ANALYZE")
    samples.add("bare", bare_read(bare))
    samples.add("naive_no_change", timed(lambda: naive_reflect(database_id, url))[0])
    forget(f"bench_naive_{n}")


def summary(samples: Samples, n: int, repetitions: int) -> dict[str, Any]:
    """Median and min of every measurement, in ms, and the no-change/bare ratio."""
    result: dict[str, Any] = {"relations": n, "repetitions": repetitions}
    for key, values in samples.ms.items():
        name = "bare_catalog_read" if key == "bare" else key
        result[f"{name}_ms"] = round(statistics.median(values), 1)
        result[f"{name}_min_ms"] = round(min(values), 1)
        result[f"{name}_samples"] = len(values)
    bare = result["bare_catalog_read_ms"]
    result["no_change_vs_bare"] = round(result["no_change_ms"] / bare, 2)
    result["no_change_within_1_5x_bare"] = result["no_change_ms"] <= 1.5 * bare
    result["first_import_vs_bare"] = round(result["first_import_ms"] / bare, 2)
    result["counts"] = samples.counts
    return result


def measure(n: int, repetitions: int, naive_repetitions: int, prefix: str) -> dict[str, Any]:
    dbname = ensure_user_database(n, prefix)
    bare = connect(dbname)
    samples = Samples()
    try:
        for number in range(1, repetitions + 1):
            log(f"{n:,} relations: repetition {number}/{repetitions}")
            repetition(dbname, n, bare, samples)
        for number in range(1, (naive_repetitions if n <= NAIVE_MAX else 0) + 1):
            log(f"{n:,} relations: naive repetition {number}/{naive_repetitions}")
            naive_repetition(dbname, n, bare, samples)
    finally:
        bare.close()
    result = summary(samples, n, repetitions)
    log(f"{n:,} relations: {json.dumps(result)}")
    return result


def targets(results: list[dict[str, Any]]) -> dict[str, bool | None]:
    sizes = {result["relations"]: result for result in results}
    large, ten, one = sizes.get(LARGE_SIZE), sizes.get(10_000), sizes.get(1_000)
    return {
        "no_change_within_1_5x_bare": all(r["no_change_within_1_5x_bare"] for r in results),
        "no_change_10k_within_1x_bare": ten["no_change_vs_bare"] <= 1.0 if ten else None,
        "no_change_1k_within_2x_bare": one["no_change_vs_bare"] <= 2.0 if one else None,
        "first_import_100k_under_2s": large["first_import_ms"] < 2000 if large else None,
        "first_import_100k_within_8x_bare": large["first_import_vs_bare"] <= 8 if large else None,
    }


def relation_count(raw: str) -> int:
    n = int(raw.replace(",", "").replace("_", ""))
    if not 100 <= n <= 999_999:  # 1% must be a relation or more; names have six digits
        raise argparse.ArgumentTypeError(f"relation counts run from 100 to 999,999, got {n}")
    return n


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", action="store_true", help="also measure 100,000 relations")
    parser.add_argument(
        "--sizes", type=relation_count, nargs="+", help="relation counts to measure instead"
    )
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per size")
    parser.add_argument("--repeat-large", type=int, default=3, help="repetitions at 100,000")
    parser.add_argument("--naive-repeat", type=int, default=3, help="naive repetitions per size")
    parser.add_argument(
        "--database-prefix",
        default="dbsync_bench",
        help="the kept databases are PREFIX_<relations> (default dbsync_bench)",
    )
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    sizes = arguments.sizes or [*DEFAULT_SIZES, *([LARGE_SIZE] if arguments.large else [])]
    started = time.perf_counter()
    ensure_service_database()
    report: dict[str, Any] = {"machine": machine(), "method": METHOD, "results": []}
    for n in sizes:
        repetitions = arguments.repeat_large if n >= LARGE_SIZE else arguments.repeat
        report["results"].append(
            measure(n, repetitions, arguments.naive_repeat, arguments.database_prefix)
        )
    report["targets"] = targets(report["results"])
    report["machine"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
