"""The --catalog-sizes runs of bench/ddl_latency.py: DDL to visible on watched catalogs of 1,000
to 100,000 relations, the reflection of one change, a storm at the largest, and the watch's own
DDL overhead. Imported by bench/ddl_latency.py, which sets the benchmark apart first."""

import http.client
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from psycopg2 import sql

from bench.common import connect, ensure_database, free_port, log, server_url, service
from bench.ddl_latency import (
    SCHEMAS,
    Lister,
    latency,
    processes,
    round_ddl,
    rounds,
    storm,
    token,
    wait_for,
)
from bench.reflect import bare_read, ensure_user_database, tidy_service_tables
from sync.changes import listening, watch
from sync.models import Database, ReflectionRun, Schema
from sync.reflection import registry, runs

PREFIX = "dbsync_bench_ddl"  # the kept databases dbsync_bench_ddl_<n>, this bench's own
OVERHEAD_DATABASE = f"{PREFIX}_overhead"
OVERHEAD_MARKER = "dbsync bench: watch overhead"
CHANGE_KINDS = ("added", "renamed", "moved", "dropped", "recreated")


def prepare(n: int) -> tuple[Database, str, dict[str, Any]]:
    """Make the database of n relations and the two DDL schemas, register it alone, watch it,
    and import it (timed beside a bare catalog read)."""
    dbname = ensure_user_database(n, PREFIX)
    user = connect(dbname)
    with user.cursor() as cursor:
        for schema in SCHEMAS:
            name = sql.Identifier(schema)
            cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(name))
    Database.objects.filter(name=f"bench_ddl_{n}").delete()
    tidy_service_tables("VACUUM (ANALYZE)")
    bare_ms = statistics.median(bare_read(user) for _ in range(5))
    user.close()
    # Registered, watched and imported in one transaction: beat's import of new databases
    # cannot see the row before, and run the import beside this one.
    with transaction.atomic():
        database, _ = registry.register(f"bench_ddl_{n}", server_url(dbname))
        watch.install(database)
        started = time.perf_counter()
        runs.reflect(database.id, trigger=ReflectionRun.Trigger.IMPORT)
        import_ms = (time.perf_counter() - started) * 1000
    tidy_service_tables("ANALYZE")
    database.refresh_from_db()
    figures = {
        "bare_catalog_read_ms": round(bare_ms, 1),
        "first_import_ms": round(import_ms, 1),
        "first_import_vs_bare": round(import_ms / bare_ms, 2),
    }
    return database, dbname, figures


def one_change(database: Database, since: Any) -> dict[str, Any]:
    """The worker's targeted reflections of the rounds' changes: how long each took, in ms."""
    rows = ReflectionRun.objects.filter(
        database=database, targeted=True, started_at__gte=since, outcome="success"
    ).exclude(added=0, renamed=0, moved=0, dropped=0, recreated=0)
    ms = sorted(
        (row.finished_at - row.started_at).total_seconds() * 1000
        for row in rows
        if row.finished_at is not None
    )
    if not ms:
        return {"runs": 0}
    return {"runs": len(ms), "p50_ms": round(statistics.median(ms), 1), "max_ms": round(ms[-1], 1)}


def reflected_alone(database: Database, dbname: str, changes: int) -> dict[str, Any]:
    """Time targeted reflections of one change each, the rounds' five kinds in turn (create,
    rename, move, drop, create again), each followed by one that finds nothing logged, in this
    process with nothing else running (the worker's figures above share the two cores with
    gunicorn answering the polls)."""
    ddl = connect(dbname, name="dbsync-bench-one")
    first = 5 * 1000  # objects of their own, apart from the rounds' (round_ddl's numbering)
    numbers = range(first, first + changes)
    ms: dict[str, list[float]] = {}
    idle: list[float] = []
    try:
        runs.reflect(database.id)  # the position, on a connection now kept
        for number in numbers:
            statement, _, _ = round_ddl(number)
            with ddl.cursor() as cursor:
                cursor.execute(statement)
            started = time.perf_counter()
            result = runs.reflect(database.id, trigger=ReflectionRun.Trigger.LISTENER)
            elapsed = (time.perf_counter() - started) * 1000
            if not result.targeted or result.counts.changed() != 1:
                raise RuntimeError(f"not one targeted change: {result}")
            kind = next(k for k in CHANGE_KINDS if getattr(result.counts, k))
            ms.setdefault(kind, []).append(elapsed)
            # And once more with nothing logged since: what a list's expired key costs.
            started = time.perf_counter()
            result = runs.reflect(database.id, trigger=ReflectionRun.Trigger.LIST)
            idle.append((time.perf_counter() - started) * 1000)
            if not result.targeted or result.counts.changed():
                raise RuntimeError(f"not a targeted run that found nothing: {result}")
    finally:
        with ddl.cursor() as cursor:
            for i in sorted({number // 5 for number in numbers}):
                a, b = SCHEMAS
                cursor.execute(f"DROP TABLE IF EXISTS {a}.t{i}, {a}.u{i}, {b}.u{i}")
        ddl.close()
    every = sorted(value for values in ms.values() for value in values)
    return {
        "runs": changes,
        "p50_ms": round(statistics.median(every), 1),
        "max_ms": round(every[-1], 1),
        "p50_ms_by_kind": {kind: round(statistics.median(v), 1) for kind, v in ms.items()},
        "nothing_logged_p50_ms": round(statistics.median(idle), 2),
    }


def size_run(port: int, n: int, args: Any, storm_here: bool) -> dict[str, Any]:
    database, dbname, figures = prepare(n)
    ids = tuple(
        Schema.objects.live().filter(database=database, name=name).values_list("id", flat=True)[0]
        for name in SCHEMAS
    )
    lister = Lister(port, database.id, token(database), ids)
    wait_for(lambda: listening.watch_mode(database) == "listen", "the listener", 60)
    log(f"{n:,} relations: {args.rounds} rounds")
    since = timezone.now()
    result: dict[str, Any] = {"relations": n, **figures}
    result["ddl_to_visible"] = latency(rounds(lister, range(args.rounds), 30, dbname))
    result["one_change_reflection"] = one_change(database, since)
    log(f"{n:,} relations: {result}")
    if storm_here:
        log(f"{n:,} relations: storm of {args.storm} statements in {args.storm_seconds} s")
        result["storm"] = storm(lister, database, args.storm, args.storm_seconds, dbname)
        log(f"storm: {result['storm']}")
    return result


def psql_seconds(dbname: str, script: Path) -> float:
    psql = shutil.which("psql") or "psql"
    started = time.perf_counter()
    subprocess.run(
        [psql, "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", dbname, "-f", str(script)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def watch_overhead(statements: int, repeat: int) -> dict[str, Any]:
    """Time a psql script of `statements` CREATE TABLE and as many DROP TABLE, each its own
    transaction, on one database unwatched and watched, in turns."""
    ensure_database(OVERHEAD_DATABASE, OVERHEAD_MARKER)
    database, _ = registry.register("bench_ddl_overhead", server_url(OVERHEAD_DATABASE))
    watched: list[float] = []
    unwatched: list[float] = []
    with tempfile.TemporaryDirectory(prefix="dbsync-bench-overhead-") as folder:
        script = Path(folder) / "ddl.sql"
        script.write_text(
            "".join(f"CREATE TABLE w{i} (a int);\nDROP TABLE w{i};\n" for i in range(statements))
        )
        psql_seconds(OVERHEAD_DATABASE, script)  # warm the server's caches
        for turn in range(repeat):
            # In turns, each first every other time: a shared machine's load drifts.
            for watching in (False, True) if turn % 2 == 0 else (True, False):
                if watching:
                    watch.install(database)
                else:
                    watch.uninstall(database)
                seconds = psql_seconds(OVERHEAD_DATABASE, script)
                (watched if watching else unwatched).append(seconds)
    watch.uninstall(database)
    database.delete()
    bare, with_watch = statistics.median(unwatched), statistics.median(watched)
    return {
        "statements": 2 * statements,
        "unwatched_s": round(bare, 3),
        "watched_s": round(with_watch, 3),
        "overhead": round(with_watch / bare, 3),
        "unwatched_min_s": round(min(unwatched), 3),
        "watched_min_s": round(min(watched), 3),
        "overhead_of_minimums": round(min(watched) / min(unwatched), 3),
        "repeat": repeat,
    }


def web_answers(port: int) -> bool:
    """Whether gunicorn answers at all (any status)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/api/v1/", headers={"Host": "127.0.0.1"})
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True


def measure_sizes(args: Any) -> dict[str, Any]:
    """Run each catalog size in turn with the Procfile's processes up, then the overhead."""
    ensure_database(settings.DATABASES["default"]["NAME"])
    call_command("migrate", verbosity=0)
    port = free_port()
    argv = processes(port)
    results = []
    largest = max(args.catalog_sizes)
    # Each size's database stays registered for the run (the listener follows them all).
    Database.objects.filter(name__startswith="bench_ddl").delete()
    os.environ["SYNC_POLL_INTERVAL"] = str(args.poll_interval)
    with tempfile.TemporaryDirectory(prefix="dbsync-bench-ddl-") as logs, ExitStack() as stack:
        for name in ("web", "worker", "beat", "listener"):
            stack.enter_context(service(name, argv[name], Path(logs)))
        wait_for(lambda: web_answers(port), "gunicorn")
        for n in args.catalog_sizes:
            results.append(size_run(port, n, args, storm_here=n == largest))
    for result in results:
        n = result["relations"]
        log(f"{n:,} relations: one change reflected alone")
        database = Database.objects.get(name=f"bench_ddl_{n}")
        result["one_change_alone"] = reflected_alone(database, f"{PREFIX}_{n}", args.rounds)
    report: dict[str, Any] = {"catalog_sizes": results}
    log("watch overhead")
    report["watch_overhead"] = watch_overhead(args.overhead_statements, args.overhead_repeat)
    report["targets"] = size_targets(report)
    return report


def size_targets(report: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's targets on this machine."""
    sizes = {r["relations"]: r for r in report["catalog_sizes"]}
    large, small = sizes.get(100_000), sizes.get(1_000)
    storm_done = large.get("storm") if large else None
    changes = [r["one_change_alone"].get("p50_ms") for r in sizes.values()]
    return {
        "p50_at_100k_at_most_100_ms": large["ddl_to_visible"]["p50_ms"] <= 100 if large else None,
        "p99_at_100k_at_most_500_ms": large["ddl_to_visible"]["p99_ms"] <= 500 if large else None,
        "p50_at_100k_at_most_1_5x_p50_at_1k": (
            large["ddl_to_visible"]["p50_ms"] <= 1.5 * small["ddl_to_visible"]["p50_ms"]
            if large and small
            else None
        ),
        "one_change_at_most_20_ms": all(ms is not None and ms <= 20 for ms in changes),
        "storm_exact_within_1_s": (
            storm_done["exact_final_state_s_after_last"] <= 1 if storm_done else None
        ),
        "watch_overhead_at_most_1_3x": report["watch_overhead"]["overhead"] <= 1.3,
        "first_import_100k_within_8x_bare": (large["first_import_vs_bare"] <= 8 if large else None),
    }
