"""Benchmark DDL-to-visible latency in listen and poll mode, a DDL storm, and the no-change check.

Starts gunicorn, a Celery worker, beat and the listener on a Redis server of its own; makes DDL
from a second client and times each change until the list API (token auth) shows it. With
--catalog-sizes, the same rounds run on watched databases of those many relations beside the two
schemas the DDL changes; then a storm at the largest size, and the watch's own DDL overhead
(1,000 CREATE and DROP TABLE from psql, watched against unwatched).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

isolate("dbsync_bench_ddl")

import argparse
import http.client
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db.models import Sum
from psycopg2 import sql
from rest_framework.authtoken.models import Token

from bench.common import (
    connect,
    ensure_database,
    free_port,
    log,
    machine,
    server_url,
    service,
)
from sync.changes import (
    leases,
    listening,
    watch,
)
from sync.models import Database, DatabaseGrant, ReflectionRun
from sync.reflection import registry, runs
from sync.remote import catalog, connections

USER_DATABASE = "dbsync_bench_ddl_user"  # kept between runs
SCHEMAS = ("ddl_a", "ddl_b")
MARKER = "dbsync bench: ddl latency"


def ensure_databases() -> Database:
    """Create the service and user databases if missing, migrate, register and reflect."""
    ensure_database(settings.DATABASES["default"]["NAME"])
    ensure_database(USER_DATABASE)
    call_command("migrate", verbosity=0)
    user = connect(USER_DATABASE)
    with user.cursor() as cursor:
        for schema in SCHEMAS:
            cursor.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    user.close()
    # Only this bench's database is registered while the processes run: beat imports the rest.
    Database.objects.exclude(name="bench_ddl").delete()
    database, _ = registry.register("bench_ddl", server_url(USER_DATABASE))
    ReflectionRun.objects.filter(database=database).delete()
    runs.reflect(database.id)
    return database


def token(database: Database) -> str:
    """Return the API token of a reader granted the database (through a group, as readers are)."""
    user, _ = get_user_model().objects.get_or_create(username="bench_ddl_reader")
    readers, _ = Group.objects.get_or_create(name="bench_ddl_readers")
    DatabaseGrant.objects.get_or_create(database=database, group=readers)
    user.groups.add(readers)
    return Token.objects.get_or_create(user=user)[0].key


class Lister:
    """Read the list API as a client would, and compare it with what the DDL should have made."""

    def __init__(
        self, port: int, database_id: int, key: str, schema_ids: tuple[int, ...] = ()
    ) -> None:
        self.port, self.headers = port, {"Authorization": f"Token {key}", "Host": "127.0.0.1"}
        path = f"/api/v1/tables/?database={database_id}&limit=1000"
        # In a large catalog, the lists of the schemas the DDL changes, one request each.
        self.paths = [f"{path}&schema={i}" for i in schema_ids] or [path]

    def listed(self) -> set[tuple[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        found: set[tuple[str, str]] = set()
        try:
            for path in self.paths:
                connection.request("GET", path, headers=self.headers)
                body = json.loads(connection.getresponse().read())
                found |= {(row["schema_name"], row["name"]) for row in body["results"]}
        finally:
            connection.close()
        return found

    def seconds_until(self, expected: set[tuple[str, str]], started: float, limit: float) -> float:
        """Poll every 10 ms until the list is the expected one; seconds since `started`."""
        while time.perf_counter() - started < limit:
            try:
                if self.listed() == expected:
                    return time.perf_counter() - started
            except (OSError, http.client.HTTPException, ValueError):
                pass  # a server starting or restarting: ask again
            time.sleep(0.01)
        raise RuntimeError(f"the list did not show the change within {limit:.0f} s")


Name = tuple[str, str]


# One object goes through five rounds: created, renamed, moved, dropped, created again.
def round_ddl(number: int) -> tuple[str, Name | None, Name | None]:
    """Return round `number`'s statement, the name it removes and the name it adds."""
    i, step = divmod(number, 5)
    a, b = SCHEMAS
    steps: list[tuple[str, Name | None, Name | None]] = [
        (f"CREATE TABLE {a}.t{i} (id int)", None, (a, f"t{i}")),
        (f"ALTER TABLE {a}.t{i} RENAME TO u{i}", (a, f"t{i}"), (a, f"u{i}")),
        (f"ALTER TABLE {a}.u{i} SET SCHEMA {b}", (a, f"u{i}"), (b, f"u{i}")),
        (f"DROP TABLE {b}.u{i}", (b, f"u{i}"), None),
        (f"CREATE TABLE {b}.u{i} (id int, again bool)", None, (b, f"u{i}")),
    ]
    return steps[step]


def rounds(
    lister: Lister, numbers: range, limit: float, dbname: str = USER_DATABASE
) -> list[float]:
    """Run the numbered rounds of DDL from a second client; return each one's seconds to visible."""
    expected = lister.listed()
    ddl = connect(dbname, name="dbsync-bench-ddl")
    seconds = []
    try:
        for number in numbers:
            statement, removed, added = round_ddl(number)
            with ddl.cursor() as cursor:
                cursor.execute(statement)
            started = time.perf_counter()
            expected = (expected - {removed}) | ({added} if added else set())
            seconds.append(lister.seconds_until(expected, started, limit))
            time.sleep(0.2)  # let the reflection settle: each round times a change on its own
    finally:
        ddl.close()
    return seconds


def latency(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(s * 1000 for s in seconds)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {"rounds": len(ordered), "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1], 1)}  # fmt: skip


def reflections(database: Database) -> int:
    """Count the database's reflections (a history row stands for `repeats` unchanged ones)."""
    rows = ReflectionRun.objects.filter(database=database)
    return int(rows.aggregate(n=Sum("repeats"))["n"] or 0)


def storm(
    lister: Lister,
    database: Database,
    statements: int,
    seconds: float,
    dbname: str = USER_DATABASE,
) -> dict[str, Any]:
    """Send `statements` DDL statements, each its own transaction, evenly over `seconds`."""
    expected = lister.listed()
    runs_before = reflections(database)
    ddl = connect(dbname, name="dbsync-bench-storm")
    a, _ = SCHEMAS
    started = time.perf_counter()
    with ddl.cursor() as cursor:
        for n in range(statements):
            i, kind = divmod(n, 2)  # create a table, then rename it
            if kind == 0:
                cursor.execute(f"CREATE TABLE {a}.storm{i} (id int)")
            else:
                cursor.execute(f"ALTER TABLE {a}.storm{i} RENAME TO stormed{i}")
                expected.add((a, f"stormed{i}"))
            time.sleep(max(0.0, started + (n + 1) * seconds / statements - time.perf_counter()))
    ended = time.perf_counter()
    ddl.close()
    settled = lister.seconds_until(expected, ended, 60)
    deadline = time.monotonic() + 30
    while leases.holder(database.id) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    runs = reflections(database) - runs_before
    return {"statements": statements, "sent_in_s": round(ended - started, 2),
            "exact_final_state_s_after_last": round(settled, 3), "reflections": runs}  # fmt: skip


def median_ms(function: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def check_cost(n: int, repeat: int) -> dict[str, Any]:
    """The no-change check at n relations: version counter, fingerprint, bare catalog read."""
    from bench.reflect import ensure_user_database  # builds the kept databases of n relations

    dbname = ensure_user_database(n)
    url = server_url(dbname)
    database, _ = registry.register(f"bench_check_{n}", url)
    watch.install(database)
    bare = connect(dbname)
    query = str(catalog.CATALOG_QUERY)

    def bare_read() -> None:
        with bare.cursor() as cursor:
            cursor.execute(query)
            cursor.fetchall()

    # The same check on a kept connection (the query's own cost, beside a bare read on a kept
    # connection: the target), and as a poll runs it: on a connection opened for it and
    # closed after, so that a thousand databases hold no idle connection between polls.
    def kept(sql: str) -> Callable[[], Any]:
        return lambda: connections.read_once(database.source, sql, {})

    kept(catalog.VERSION_CHECK)()  # warm the pooled engine
    version = median_ms(kept(catalog.VERSION_CHECK), repeat)
    fingerprint = median_ms(kept(catalog.FINGERPRINT_CHECK), repeat)
    version_poll = median_ms(lambda: catalog.read_version(database.source), repeat)
    fingerprint_poll = median_ms(lambda: catalog.read_fingerprint(database.source), repeat)
    bare_ms = median_ms(bare_read, max(3, repeat // 5))
    bare.close()
    return {
        "relations": n, "version_counter_ms": version, "fingerprint_ms": fingerprint,
        "bare_catalog_read_ms": bare_ms,
        "version_vs_bare": round(version / bare_ms, 4),
        "fingerprint_vs_bare": round(fingerprint / bare_ms, 3),
        "as_polled_with_a_new_connection_ms": {
            "version_counter": version_poll, "fingerprint": fingerprint_poll,
        },
    }  # fmt: skip


def processes(port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "web": [python, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--log-level", "warning"],
        "worker": [python, "-m", "celery", "-A", "worker", "worker", "--loglevel", "WARNING",
                   "--concurrency", "2", "--queues", "interactive,bulk"],
        "beat": [python, "-m", "celery", "-A", "worker", "beat", "--loglevel", "WARNING"],
        "listener": [python, "manage.py", "listen"],
    }  # fmt: skip


def wait_for(ready: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {seconds:.0f} s")
        time.sleep(0.1)


def answers(lister: Lister) -> bool:
    try:
        lister.listed()
    except (OSError, http.client.HTTPException, ValueError):
        return False
    return True


def measure(args: argparse.Namespace) -> dict[str, Any]:
    database = ensure_databases()
    watch.install(database)
    database.refresh_from_db()
    port = free_port()
    lister = Lister(port, database.id, token(database))
    argv = processes(port)
    report: dict[str, Any] = {}
    os.environ["SYNC_POLL_INTERVAL"] = str(args.poll_interval)
    with tempfile.TemporaryDirectory(prefix="dbsync-bench-ddl-") as logs, ExitStack() as stack:
        for name in ("web", "worker", "beat"):
            stack.enter_context(service(name, argv[name], Path(logs)))
        with service("listener", argv["listener"], Path(logs)):
            wait_for(lambda: answers(lister), "gunicorn")
            wait_for(lambda: listening.watch_mode(database) == "listen", "the listener")
            log(f"listen mode: {args.rounds} rounds")
            report["listen_mode"] = latency(rounds(lister, range(args.rounds), 30))
            log(f"listen mode: {report['listen_mode']}")
            log(f"storm: {args.storm} statements in {args.storm_seconds} s")
            report["storm"] = storm(lister, database, args.storm, args.storm_seconds)
            log(f"storm: {report['storm']}")
        watch.uninstall(database)
        log(f"poll mode (fingerprint, every {args.poll_interval} s): {args.poll_rounds} rounds")
        limit = args.poll_interval * 3 + 30
        # Numbered after the listen rounds: each round's object is one of its own.
        first = (args.rounds // 5 + 1) * 5
        numbers = range(first, first + args.poll_rounds)
        report["poll_mode"] = latency(rounds(lister, numbers, limit))
        report["poll_mode"]["poll_interval_s"] = args.poll_interval
    report["no_change_check"] = [check_cost(n, args.repeat) for n in args.sizes]
    return report


def targets(report: dict[str, Any]) -> dict[str, bool]:
    at_10k = [r for r in report["no_change_check"] if r["relations"] == 10_000]
    return {
        "listen_p50_under_500_ms": report["listen_mode"]["p50_ms"] < 500,
        "listen_p99_under_2_s": report["listen_mode"]["p99_ms"] < 2000,
        "storm_at_most_10_reflections": report["storm"]["reflections"] <= 10,
        "version_check_at_most_0.05x_bare_at_10k": bool(at_10k)
        and at_10k[0]["version_vs_bare"] <= 0.05,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50, help="listen-mode rounds")
    parser.add_argument("--poll-rounds", type=int, default=10, help="poll-mode rounds")
    parser.add_argument("--poll-interval", type=int, default=10, help="SYNC_POLL_INTERVAL, s")
    parser.add_argument("--storm", type=int, default=500, help="DDL statements in the storm")
    parser.add_argument("--storm-seconds", type=float, default=5.0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=50, help="no-change checks per size")
    parser.add_argument(
        "--catalog-sizes",
        type=int,
        nargs="+",
        help="instead: the rounds on watched catalogs of these many relations, a storm at the "
        "largest, and the watch's DDL overhead",
    )
    parser.add_argument("--overhead-statements", type=int, default=1000)
    parser.add_argument("--overhead-repeat", type=int, default=6)
    args = parser.parse_args()
    started = time.perf_counter()
    report: dict[str, Any] = {"machine": machine()}
    if args.catalog_sizes:
        from bench.ddl_sizes import measure_sizes  # after isolate(): it imports the app

        report.update(measure_sizes(args))
    else:
        report.update(measure(args))
        report["targets"] = targets(report)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
