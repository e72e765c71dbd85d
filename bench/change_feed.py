"""Benchmark the change feed: a storm of DDL from another client, its events and their webhooks.

Three figures, printed as one JSON object:

- reflection: the time of a reflection that applies a storm of 1,000 DDL statements (100
  transactions of 10), with events described and written as a batch against the same run with
  them switched off, alternated over rounds so that load drifts hit both (target: at most
  1.2x); and, beside it, the change feed's time to record the batch as events and deliveries,
  which the webhooks' worker does off the reflection's path;
- delivery: storms of their own, each reflected, then recorded and delivered to a local receiver
  by a real `celery worker` on the webhooks queue, one transaction a delivery: the lag from the
  reflection that saw the events to their delivery, the feed's turn included (target: p50 <
  1 s), and whether every event arrived exactly once;
- api: the first page of GET databases/ID/changes/ over 100,000 events against a minimal
  Django view over the same rows (target: at most 1.5x).

    python bench/change_feed.py [--rounds 3] [--statements 1000] [--events 100000]
                                [--trigger command|listener]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

isolate(
    "dbsync_bench_feed",
    DJANGO_SETTINGS_MODULE="bench.minimal_settings",
    SYNC_WEBHOOK_ALLOW_PRIVATE="true",
)

import argparse
import json
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from bench.common import connect, ensure_database, log, machine, server_url, service, spread
from sync.changes import deliveries, watch
from sync.models import ChangeEvent, Database, EventBatch, Webhook, WebhookDelivery
from sync.reflection import events, feed, registry, runs, writes
from worker.app import app

USER_DATABASE = "dbsync_bench_feed_user"
MARKER = "dbsync bench: change feed"
PER_TRANSACTION = 10


def storm(statements: int, round_number: int, drop: bool) -> None:
    """Run the DDL from another client: `statements` statements, PER_TRANSACTION a transaction."""
    pg = connect(USER_DATABASE, autocommit=False, name="storm")
    with pg.cursor() as cursor:
        for start in range(0, statements, PER_TRANSACTION):
            for i in range(start, min(statements, start + PER_TRANSACTION)):
                name = f"storm.t{round_number}_{i}"
                cursor.execute(f"DROP TABLE {name}" if drop else f"CREATE TABLE {name} (id int)")
            pg.commit()
    pg.close()


@contextmanager
def events_off() -> Iterator[None]:
    """Reflect as before this feature: no written rows returned, no event described or
    written."""
    apply, describe, write_batch = writes.apply, events.describe, events.write_batch
    writes.apply = lambda database_id, changes, now, returning: apply(
        database_id, changes, now, returning=False
    )
    events.describe = lambda *args, **kwargs: []
    events.write_batch = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        writes.apply, events.describe, events.write_batch = apply, describe, write_batch


class Receiver:
    """A local HTTP receiver that keeps each body and when it came."""

    def __init__(self) -> None:
        self.bodies: list[tuple[float, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append((time.time(), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def reflection_rounds(
    database: Database, rounds: int, statements: int, trigger: str
) -> dict[str, Any]:
    """Time the storm's reflection with events and without, alternated back to back (a
    reflection after an idle wait is slower: cold caches, a lower clock); return the figures.
    The feed's recording is timed beside it; the deliveries it owes are not sent."""
    times: dict[str, list[float]] = {"with_events": [], "without_events": []}
    by_storm: dict[tuple[str, bool], list[float]] = {}
    recording: list[float] = []
    for number in range(rounds * 2):
        mode = "with_events" if number % 2 == 0 else "without_events"
        for drop in (False, True):
            storm(statements, number, drop)
            if mode == "with_events":
                result = runs.reflect(database.id, trigger=trigger)
                assert result.events == statements, result
                # What the webhooks' worker does first, timed here: the feed's own cost.
                started = time.perf_counter()
                assert feed.record(database.id).events == statements
                recording.append(round((time.perf_counter() - started) * 1000, 1))
            else:
                with events_off():
                    result = runs.reflect(database.id, trigger=trigger)
            times[mode].append(result.duration_ms)
            by_storm.setdefault((mode, drop), []).append(result.duration_ms)
            log(f"round {number} {mode} {'drop' if drop else 'create'}: {result.duration_ms} ms")
    WebhookDelivery.objects.all().delete()
    # A storm of creates and one of drops, each its median: a median of both kinds together
    # falls between the two, wherever a sample or two tip it.
    with_median = sum(statistics.median(by_storm["with_events", drop]) for drop in (False, True))
    without_median = sum(
        statistics.median(by_storm["without_events", drop]) for drop in (False, True)
    )
    return {
        "trigger": trigger,
        "targeted": result.targeted,
        "statements_per_storm": statements,
        "transactions_per_storm": statements // PER_TRANSACTION,
        "with_events_ms": times["with_events"],
        "without_events_ms": times["without_events"],
        "with_events_median_create_plus_drop_ms": with_median,
        "without_events_median_create_plus_drop_ms": without_median,
        "ratio": round(with_median / without_median, 3),
        "target_ratio": 1.2,
        # Off the reflection's path: the change feed recording a storm's events and the
        # deliveries they owe, as the webhooks' worker does before it delivers them.
        "feed_record_ms": recording,
        "feed_record_median_ms": statistics.median(recording),
    }


def delivery_rounds(database: Database, rounds: int, statements: int, trigger: str) -> int:
    """Storms whose events the worker records and delivers, as after a task's reflection, one
    storm delivered before the next; return how many events they made."""
    made = 0
    for number in range(rounds):
        for drop in (False, True):
            storm(statements, 1000 + number, drop)
            result = runs.reflect(database.id, trigger=trigger)
            deliveries.queue_delivery(database.id)
            wait_delivered()
            made += result.events
    return made


def wait_delivered(seconds: float = 300) -> None:
    """Wait until the feed has recorded every batch and every delivery is delivered."""
    deadline = time.monotonic() + seconds
    pending = WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.DELIVERED)
    while (EventBatch.objects.exists() or pending.exists()) and time.monotonic() < deadline:
        time.sleep(0.02)


def delivery_figures(receiver: Receiver, expected_events: int) -> dict[str, Any]:
    """Wait for every delivery; return the lag and what the receiver got."""
    wait_delivered()
    rows = list(WebhookDelivery.objects.values_list("created_at", "delivered_at"))
    lags = [(done - made).total_seconds() * 1000 for made, done in rows if done is not None]
    received = [event["id"] for _, body in receiver.bodies for event in body["events"]]
    orders = [body["delivery"] for _, body in receiver.bodies]
    return {
        "deliveries": len(rows),
        "delivered": len(lags),
        "events_expected": expected_events,
        "events_received": len(received),
        "events_received_once": len(set(received)) == len(received) == expected_events,
        "in_order": orders == sorted(orders),
        "lag_recorded_to_delivered": spread(lags),
        "target_p50_ms": 1000,
    }


MINIMAL_FIELDS = ("id", "kind", "object_type", "name_after", "occurred_at", "role")


def api_figures(database: Database, count: int, repetitions: int = 200) -> dict[str, Any]:
    """Fill `count` events; time the API's first page against the minimal view of the same."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ChangeEvent._meta.db_table} (database_id, kind, object_type, oid,"
            " name_before, name_after, schema_before, schema_after, occurred_at, time_seen,"
            " recorded_at, role, application, command_tag)"
            " SELECT %s, 'created', 'table', i, '', 't' || i, '', 'storm', now(), false, now(),"
            " 'alice', 'psql', 'CREATE TABLE' FROM generate_series(1, %s) AS i",
            [database.id, count],
        )
        cursor.execute(f"ANALYZE {ChangeEvent._meta.db_table}")
    user, _ = User.objects.get_or_create(username="bench-reader", defaults={"is_staff": True})
    auth = f"Token {Token.objects.get_or_create(user=user)[0].key}"
    client = Client(HTTP_AUTHORIZATION=auth)
    urls = {
        "api_ms": f"/api/v1/databases/{database.id}/changes/",
        "minimal_ms": f"/bench/minimal-changes/{database.id}/",
    }
    times: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(repetitions):
        for name, url in urls.items():
            started = time.perf_counter()
            response = client.get(url, HTTP_HOST="localhost")
            times[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
    figures = {name: spread(values) for name, values in times.items()}
    ratio = figures["api_ms"]["median_ms"] / figures["minimal_ms"]["median_ms"]
    return {"events": count, "page": 50, **figures, "ratio": round(ratio, 3), "target_ratio": 1.5}


def wait_for_worker(seconds: float = 60) -> None:
    """Wait until the worker answers a ping, so that its start is not counted as lag."""
    deadline = time.monotonic() + seconds
    while not app.control.ping(timeout=1):
        if time.monotonic() > deadline:
            raise SystemExit("the webhooks worker did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--trigger", default="command",
        help="the reflections' trigger: command reads the whole catalog, listener only what "
        "the change log names",
    )  # fmt: skip
    options = parser.parse_args()
    started = machine()
    ensure_database(connection.settings_dict["NAME"])
    call_command("migrate", verbosity=0)
    ensure_database(USER_DATABASE, MARKER)
    admin = connect(USER_DATABASE)
    with admin.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS storm CASCADE; CREATE SCHEMA storm")
        # The catalog rows earlier runs' storms left dead: each run starts from the same.
        cursor.execute("VACUUM pg_class, pg_type, pg_attribute, pg_depend, pg_namespace")
    admin.close()
    ChangeEvent.objects.all().delete()
    WebhookDelivery.objects.all().delete()
    Webhook.objects.all().delete()
    database, _ = registry.register("feed", server_url(USER_DATABASE))
    watch.install(database)
    runs.reflect(database.id)
    feed.record(database.id)  # a previous run's schema, recreated: not the storm's
    receiver = Receiver()
    hook = Webhook(url=receiver.url, database=database)
    hook.secret = secrets.token_hex(16)
    hook.save()
    logs = Path(tempfile.mkdtemp(prefix="dbsync-bench-feed-"))
    worker = ["celery", "-A", "worker", "worker", "--queues", "webhooks", "--concurrency", "1",
              "--pool", "solo", "--loglevel", "WARNING"]  # fmt: skip
    with service("worker-webhooks", [sys.executable, "-m", *worker], logs):
        wait_for_worker()
        reflection = reflection_rounds(
            database, options.rounds, options.statements, options.trigger
        )
        made = delivery_rounds(database, options.rounds, options.statements, options.trigger)
        delivery = delivery_figures(receiver, made)
    api = api_figures(database, options.events)
    print(json.dumps({"machine": started, "reflection": reflection, "delivery": delivery,
                      "api": api}, indent=2))  # fmt: skip
    watch.uninstall(database)


if __name__ == "__main__":
    main()
