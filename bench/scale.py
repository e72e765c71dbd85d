"""Benchmark renewal at scale: hundreds of databases, two queues, a person's reflection meanwhile.

Registers `--databases` small databases on the local server (kept between runs), starts the
Procfile's two workers (interactive and bulk), expires every recency key and runs the renewal
dispatcher tick after tick until each database is reflected again: the cycle time, the peak of
connections dbsync held on the server, and those still held after. While the renewal runs, a
person's list of another database queues a reflection every few tenths of a second: its wait
(from the list to the reflection's end) is compared with the same waits on an idle system,
measured in the same run just before.

With `--listeners N`, the listeners instead (bench/takeover.py): the watch installed in every
database, N listeners sharing them, the connections of each, and a kill -9 of one of them.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

isolate("dbsync_bench_scale")

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from typing import Any

import redis
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from psycopg2 import sql

from bench import takeover
from bench.common import connect, log, machine, server_url, service
from sync.changes import gate, polling, queues, recency, store, turns
from sync.exceptions import IdentityChanged
from sync.models import Database, ReflectionRun
from sync.reflection import registry
from sync.reflection.runs import reflect

PREFIX = "dbsync_bench_scale_"  # user databases, kept between runs
MARKER = "dbsync bench: scale"
PEOPLE = 4  # databases a person lists during the renewal; never due for renewal themselves


def ensure_user_databases(count: int) -> list[str]:
    """Create the bench's user databases that are missing, each with a small catalog."""
    names = [f"{PREFIX}{number:04d}" for number in range(count)]
    admin = connect("postgres")
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE datname LIKE %s",
                [PREFIX + "%"],
            )
            found = dict(cursor.fetchall())
            for name in names:
                if name in found:
                    if found[name] != MARKER:
                        raise SystemExit(f"{name} exists without the marker; not touching it")
                    continue
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                cursor.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                        sql.Identifier(name), sql.Literal(MARKER)
                    )
                )
                pg = connect(name)
                with pg.cursor() as user:
                    user.execute(
                        "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int);"
                        " CREATE TABLE shop.items (id int); CREATE VIEW shop.totals AS SELECT 1;"
                        " CREATE TABLE customers (id int); CREATE TABLE notes (id int)"
                    )
                pg.close()
                if len(found) % 50 == 0:
                    log(f"created {name}")
                found[name] = MARKER
    finally:
        admin.close()
    return names


def prepare(count: int) -> list[Database]:
    """Migrate, register every user database, and import those never imported."""
    admin = connect("postgres")
    try:
        with admin.cursor() as cursor:
            name = settings.DATABASES["default"]["NAME"]
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()
    call_command("migrate", interactive=False, verbosity=0)
    databases = []
    for name in ensure_user_databases(count + PEOPLE):
        database, _ = registry.register(name, server_url(name))
        if database.imported_at is None:
            try:
                reflect(database.id)
            except IdentityChanged:  # the kept database was dropped and created again
                reflect(database.id, accept_new_identity=True)
        databases.append(database)
    return databases


def reset_state() -> None:
    """Empty the bench's queues and every lease, back-off and renewal slot."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        broker.delete(*queues.QUEUES, "unacked", "unacked_index")
    finally:
        broker.close()
    store.client().flushdb()  # every database's reflection state


class ConnectionSampler:
    """Sample, every 50 ms, the connections dbsync holds on the server (its listener's apart)."""

    def __init__(self) -> None:
        self.peak = 0
        self.samples: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="connections", daemon=True)

    def count(self) -> int:
        pg = connect("postgres", name="dbsync-bench-sampler")
        try:
            with pg.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbsync'"
                    " AND datname LIKE %s",
                    [PREFIX + "%"],
                )
                row = cursor.fetchone()
        finally:
            pg.close()
        return int(row[0]) if row else 0

    def run(self) -> None:
        while not self.stop.wait(0.05):
            held = self.count()
            self.samples.append(held)
            self.peak = max(self.peak, held)


def person_waits(people: list[Database], until: threading.Event, pause: float) -> list[float]:
    """A person's list of one of `people` after another: the seconds until it was reflected."""
    waits: list[float] = []
    number = 0
    while not until.is_set():
        database = people[number % len(people)]
        number += 1
        recency.expire(database.id)
        started = time.perf_counter()
        freshness = gate.ensure_fresh(database, ReflectionRun.Trigger.LIST)
        if not freshness.queued_now:
            continue
        while not recency.is_recent(database.id):
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"the reflection of {database.name} did not end in 60 s")
            time.sleep(0.005)
        waits.append(time.perf_counter() - started)
        time.sleep(pause)
    return waits


def latency(waits: list[float]) -> dict[str, Any]:
    if not waits:
        return {"n": 0}
    ordered = sorted(waits)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def renewal_cycle(due: list[Database], args: argparse.Namespace) -> dict[str, Any]:
    """Expire every due database's key, tick the dispatcher until all are reflected again."""
    for database in due:
        recency.expire(database.id)
    started, ticks, in_flight_peak = time.perf_counter(), 0, 0
    outcomes: list[dict[str, int]] = []
    deadline = started + args.time_limit
    while True:
        outcomes.append(polling.renew_expired(bound=args.bound, spread=args.tick))
        ticks += 1
        tick_end = time.perf_counter() + args.tick
        while time.perf_counter() < tick_end:
            in_flight_peak = max(in_flight_peak, turns.renewals_in_flight())
            if all(recency.recent_among([d.id for d in due])):
                return {
                    "cycle_s": round(time.perf_counter() - started, 2),
                    "ticks": ticks,
                    "renewals_in_flight_peak": in_flight_peak,
                    "first_tick": outcomes[0],
                }
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the renewal did not end within {args.time_limit} s")
            time.sleep(0.1)


def measure(databases: list[Database], args: argparse.Namespace) -> dict[str, Any]:
    due, people = databases[:-PEOPLE], databases[-PEOPLE:]
    for person in people:  # kept fresh: the renewal never takes them
        recency.mark_recent(person.id, timezone.now())
    log(f"idle: {args.idle_seconds} s of a person's lists, nothing else running")
    stop = threading.Event()
    timer = threading.Timer(args.idle_seconds, stop.set)
    timer.start()
    idle = person_waits(people, stop, args.pause)
    log(f"idle: p50 {latency(idle).get('p50_ms')} ms; now the renewal of {len(due)} databases")
    sampler = ConnectionSampler()
    sampler.thread.start()
    stop = threading.Event()
    during: list[float] = []
    lister = threading.Thread(target=lambda: during.extend(person_waits(people, stop, args.pause)))
    lister.start()
    try:
        cycle = renewal_cycle(due, args)
    finally:
        stop.set()
        lister.join()
        time.sleep(1)  # let the last reflections close their connections
        sampler.stop.set()
        sampler.thread.join()
    held_after = sampler.count()
    runs = ReflectionRun.objects.filter(trigger="renewal", database__in=due)
    return {
        "renewal": {
            **cycle,
            "databases": len(due),
            "reflections": runs.count(),
            "peak_connections": sampler.peak,
            "connections_held_after": held_after,
            "bound_in_flight": args.bound,
            "tick_s": args.tick,
        },
        "person_wait_idle": latency(idle),
        "person_wait_during_renewal": latency(during),
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--databases", type=int, default=200, help="databases to renew")
    parser.add_argument("--bound", type=int, default=50, help="renewals in flight at most")
    parser.add_argument("--tick", type=float, default=5, help="seconds between dispatcher ticks")
    parser.add_argument("--idle-seconds", type=float, default=15, help="baseline duration")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between lists")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the cycle")
    parser.add_argument(
        "--listeners", type=int, default=0, help="measure N listeners' takeover instead"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    wall = time.perf_counter()
    report: dict[str, Any] = {"machine": machine()}
    databases = prepare(args.databases)
    reset_state()
    ReflectionRun.objects.filter(trigger="renewal").delete()
    procfile = (Path(__file__).resolve().parent.parent / "Procfile").read_text().splitlines()
    roles = dict(line.split(": ", 1) for line in procfile if line and not line.startswith("#"))
    python = str(Path(sys.executable).parent)
    with tempfile.TemporaryDirectory(prefix="dbsync-bench-scale-") as logs:
        os.environ["PATH"] = f"{python}:{os.environ['PATH']}"
        if args.listeners:
            with service("worker", roles["worker"].split(), Path(logs)):
                report.update(
                    takeover.measure(databases[: args.databases], args.listeners, Path(logs))
                )
            report["wall_s"] = round(time.perf_counter() - wall, 1)
            print(json.dumps(report, indent=2))
            return
        with (
            service("worker", roles["worker"].split(), Path(logs)),
            service("worker-bulk", roles["worker-bulk"].split(), Path(logs)),
        ):
            time.sleep(args.idle_seconds / 3)  # the workers start
            report.update(measure(databases, args))
    during = report["person_wait_during_renewal"]
    report["targets"] = {
        "person_p99_under_1s": during.get("p99_ms", 1e9) < 1000,
        "every_database_renewed_once": report["renewal"]["reflections"] == args.databases,
        "no_connection_held_after": report["renewal"]["connections_held_after"] == 0,
    }
    report["machine"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    report["wall_s"] = round(time.perf_counter() - wall, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
