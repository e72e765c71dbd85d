"""Benchmark on-the-fly reads (first page, columns) beside the same SQL run bare; print JSON."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

isolate("dbsync_live")

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection

from bench.common import connect, log, machine, server_url, spread, timed
from sync.remote import (
    connections,
    relations,
)
from sync.remote.connections import Source

BENCH_DATABASE = "dbsync_bench_live"  # kept between runs
ROWS = 1_000_000
KEY = 990_001  # the engines' key in sync.connections; no registered database is involved
LIMIT = 50
PAGE_SELECT = "SELECT * FROM public.items ORDER BY id LIMIT %(limit)s"
MARKER = f"dbsync bench: on-the-fly reads, {ROWS} rows"  # the table's comment once it is complete

DDL = """
DROP TABLE IF EXISTS public.items;
CREATE TABLE public.items (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    price numeric(10, 2),
    created_at timestamptz NOT NULL,
    tags text[],
    active boolean NOT NULL
);
INSERT INTO public.items
SELECT g, 'item ' || g, (g % 100000) / 100.0,
       timestamptz '2026-01-01 00:00+00' + g * interval '1 second',
       ARRAY['tag' || g % 7, 'tag' || g % 11], g % 3 = 0
FROM generate_series(1, {rows}) AS g;
ANALYZE public.items;
"""


def ensure_database() -> str:
    """Create the bench database and its table of ROWS rows unless a complete one is kept."""
    admin = connect("postgres")
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DATABASE])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DATABASE)))
    admin.close()
    pg = connect(BENCH_DATABASE)
    with pg.cursor() as cursor:
        cursor.execute("SELECT obj_description(to_regclass('public.items'), 'pg_class')")
        row = cursor.fetchone()
        if row is None or row[0] != MARKER:
            log(f"building public.items with {ROWS:,} rows in {BENCH_DATABASE}")
            started = time.perf_counter()
            cursor.execute(sql.SQL(DDL).format(rows=sql.Literal(ROWS)))
            cursor.execute(
                sql.SQL("COMMENT ON TABLE public.items IS {}").format(sql.Literal(MARKER))
            )
            log(f"built in {time.perf_counter() - started:.1f} s")
    pg.close()
    return server_url(BENCH_DATABASE)


class Sent(logging.Handler):
    """Collect the Query messages sync.connections sends, and their parameters, from its log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("read from") and isinstance(record.args, tuple):
            self.statements.append((str(record.args[1]), record.args[2]))


@contextmanager
def captured() -> Iterator[list[tuple[str, Any]]]:
    """Collect the statements and parameters that sync.remote.relations sends, one a round trip."""
    handler, logger = Sent(), logging.getLogger("sync.remote.connections")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # not on standard error
    try:
        yield handler.statements
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def bare(pg: PgConnection, statements: list[tuple[str, Any]]) -> Callable[[], None]:
    """Return a call that sends these statements on a plain autocommit psycopg2 connection."""
    steps = [(s, dict(p) if hasattr(p, "keys") else p) for s, p in statements]
    pg.autocommit = True

    def run() -> None:
        with pg.cursor() as cursor:
            for statement, parameters in steps:
                cursor.execute(statement, parameters)
                if cursor.description is not None:
                    cursor.fetchall()

    return run


def measure(calls: dict[str, Callable[[], Any]], iterations: int, warmup: int) -> dict[str, Any]:
    """Time every call in turn, interleaved so that drift hits them all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_number in range(warmup + iterations):
        for name, call in calls.items():
            elapsed = timed(call)
            if round_number >= warmup:
                samples[name].append(elapsed)
    result: dict[str, Any] = {name: spread(values) for name, values in samples.items()}
    ours = result["dbsync_read"]["median_ms"]
    for name in calls:
        if name != "dbsync_read":
            result[f"vs_{name}"] = round(ours / result[name]["median_ms"], 2)
    return result


def first_page(url: str, oid: int, iterations: int, warmup: int) -> dict[str, Any]:
    def read() -> relations.RecordsPage:
        return relations.read_records(
            Source(KEY, url), relations.Relation(oid, "public", "items"), LIMIT, 0
        )

    def read_shape_first() -> relations.RecordsPage:
        relations.forget_shapes()
        return read()

    read()  # the relation's shape is read once per process, and kept
    with captured() as statements:
        page = read()
    calls = {
        "dbsync_read": read,
        # The shape read from the catalog before every page: what keeping shapes saves.
        "shape_not_kept": read_shape_first,
        # Exactly what dbsync sent, on a plain connection: what dbsync itself costs.
        "same_sql_bare": bare(connect(BENCH_DATABASE), statements),
        # The page alone, as one would type it: no read-only transaction, no timeout, no
        # check that the relation is the one asked for, no count.
        "page_select_bare": bare(connect(BENCH_DATABASE), [(PAGE_SELECT, {"limit": LIMIT})]),
    }
    result = measure(calls, iterations, warmup)
    result["round_trips"] = len(statements)
    result["count"] = page.count
    result["count_is_estimate"] = page.count_is_estimate
    return result


def columns(url: str, oid: int, iterations: int, warmup: int) -> dict[str, Any]:
    def read() -> list[relations.Column]:
        return relations.read_columns(Source(KEY, url), oid)

    with captured() as statements:
        listed = read()
    calls = {"dbsync_read": read, "same_sql_bare": bare(connect(BENCH_DATABASE), statements)}
    result = measure(calls, iterations, warmup)
    result["round_trips"] = len(statements)
    result["columns"] = len(listed)
    return result


def targets(page: dict[str, Any], listed: dict[str, Any]) -> dict[str, bool]:
    return {
        "first_page_median_under_20_ms": page["dbsync_read"]["median_ms"] < 20,
        "first_page_within_1_3x_same_sql_bare": page["vs_same_sql_bare"] <= 1.3,
        "columns_within_1_3x_same_sql_bare": listed["vs_same_sql_bare"] <= 1.3,
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    url = ensure_database()
    pg = connect(BENCH_DATABASE)
    with pg.cursor() as cursor:
        cursor.execute("SELECT 'public.items'::regclass::oid")
        row = cursor.fetchone()
        assert row is not None, "the oid query answered no row"
        (oid,) = row
    pg.close()
    page = first_page(url, oid, arguments.iterations, arguments.warmup)
    listed = columns(url, oid, arguments.iterations, arguments.warmup)
    report = {
        "benchmark": "sync.remote.relations on-the-fly reads",
        "database": BENCH_DATABASE,
        "rows": ROWS,
        "limit": LIMIT,
        "iterations": arguments.iterations,
        "machine": machine(),
        "first_page": page,
        "columns": listed,
        "targets": targets(page, listed),
    }
    connections.engine(Source(KEY, url)).dispose()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
