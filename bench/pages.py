"""Benchmark the pages' server time: the tables page (its facts read from the user's database)
beside the API list of the same rows, with and without facts, and an unchanged poll (204)
beside the full fragment; print JSON. (bench/push.py times the open page: push against poll.)

Requests go through the whole Django stack in this process (middleware, session
authentication, the freshness gate in Redis, templates), without a network in between, and
alternate kind by kind within each round, so that the shared machine's drift falls on all alike.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

isolate("dbsync_bench_pages")

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench.common import connect, ensure_database, log, machine, server_url
from sync.changes import recency
from sync.exceptions import IdentityChanged
from sync.models import DatabaseGrant
from sync.reflection import registry
from sync.reflection.runs import reflect

# Kept between runs; named for the service database, so that two runs apart never share it.
USER_DATABASE = settings.DATABASES["default"]["NAME"] + "_user"
MARKER = "dbsync bench: pages"
SCHEMAS = 10
BENCH_USER = "bench_pages_reader"


def prepare(tables: int) -> int:
    """Migrate, build `tables` tables over SCHEMAS schemas, register and reflect; return the id."""
    ensure_database(settings.DATABASES["default"]["NAME"], None)
    ensure_database(USER_DATABASE, MARKER)
    call_command("migrate", interactive=False, verbosity=0)
    statements = [f"CREATE SCHEMA IF NOT EXISTS s{number}" for number in range(SCHEMAS)]
    statements += [
        f"CREATE TABLE IF NOT EXISTS s{number % SCHEMAS}.t{number:05d} (id int)"
        for number in range(tables)
    ]
    # One partitioned table of 50 partitions: folded into one row of the page.
    statements.append("CREATE TABLE IF NOT EXISTS s0.events (at int) PARTITION BY RANGE (at)")
    statements += [
        f"CREATE TABLE IF NOT EXISTS s0.events_{n} PARTITION OF s0.events"
        f" FOR VALUES FROM ({n * 10}) TO ({n * 10 + 10})"
        for n in range(50)
    ]
    pg = connect(USER_DATABASE)
    try:
        with pg.cursor() as cursor:
            cursor.execute("; ".join(statements))
    finally:
        pg.close()
    database, _ = registry.register("bench_pages", server_url(USER_DATABASE))
    try:
        result = reflect(database.id)
    except IdentityChanged:  # the kept user database was dropped and created again
        result = reflect(database.id, accept_new_identity=True)
    log(f"reflected {USER_DATABASE} in {result.duration_ms} ms: {result.counts}")
    database.refresh_from_db()
    assert database.reflected_at is not None, "the reflection set no reflected_at"
    # Fresh for the whole run: the gate answers from Redis and queues nothing.
    recency.mark_recent(database.id, database.reflected_at)
    # The bench's reader is no staff: it reads the database through a group's grant.
    readers, _ = Group.objects.get_or_create(name=BENCH_USER)
    DatabaseGrant.objects.get_or_create(
        database=database, group=readers, defaults={"records": True}
    )
    return database.id


def logged_in_client() -> Client:
    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
    user.groups.add(Group.objects.get(name=BENCH_USER))
    client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
    client.force_login(user)  # a session row in the service database, as a browser has
    return client


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
        "min_ms": round(ordered[0], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    arguments = parser.parse_args()
    database_id = prepare(arguments.tables)
    client = logged_in_client()
    page_url = f"/databases/{database_id}/tables/"
    version_match = re.search(r'data-version="([0-9a-f]+)"', client.get(page_url).content.decode())
    assert version_match is not None, "the tables page carries no version"
    version = version_match.group(1)
    polled = {"HX-Request": "true"}

    kinds: dict[str, tuple[Callable[[], Any], int]] = {
        "tables_page": (lambda: client.get(page_url), 200),
        "api_list": (lambda: client.get(f"/api/v1/tables/?database={database_id}"), 200),
        "api_list_facts": (
            lambda: client.get(f"/api/v1/tables/?database={database_id}&facts=true"),
            200,
        ),
        "fragment": (lambda: client.get(page_url, headers=polled), 200),
        "unchanged_poll": (lambda: client.get(f"{page_url}?v={version}", headers=polled), 204),
    }
    queries = {}
    for name, (request, status) in kinds.items():
        with CaptureQueriesContext(connection) as captured:
            response = request()
        if response.status_code != status:
            raise SystemExit(f"{name} answered {response.status_code}, expected {status}")
        queries[name] = len(captured)
    rows = {
        "tables_page": client.get(page_url).content.decode().count('<tr id="oid-'),
        "api_list": len(client.get(f"/api/v1/tables/?database={database_id}").json()["results"]),
    }

    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for round_number in range(arguments.warmup + arguments.rounds):
        for name, (request, _) in kinds.items():
            started = time.perf_counter()
            request()
            elapsed = (time.perf_counter() - started) * 1000
            if round_number >= arguments.warmup:
                samples[name].append(elapsed)
    results = {
        name: summary(values) | {"sql_queries": queries[name]} for name, values in samples.items()
    }
    page_ratio = results["tables_page"]["median_ms"] / results["api_list"]["median_ms"]
    facts_ratio = results["tables_page"]["median_ms"] / results["api_list_facts"]["median_ms"]
    poll_ratio = results["unchanged_poll"]["median_ms"] / results["fragment"]["median_ms"]
    report = {
        "benchmark": "pages: tables page vs API list, unchanged poll vs fragment",
        "tables": arguments.tables,
        "rows_per_page": rows,
        "rounds": arguments.rounds,
        "authentication": "session (django.contrib.sessions, database backend)",
        "machine": machine(),
        "results": results,
        "tables_page_over_api_list": round(page_ratio, 2),
        "tables_page_over_api_list_with_facts": round(facts_ratio, 2),
        "unchanged_poll_over_fragment": round(poll_ratio, 3),
        "targets": {
            "tables_page_at_most_1.5x_api_list": page_ratio <= 1.5,
            "tables_page_at_most_1.5x_api_list_with_facts": facts_ratio <= 1.5,
            "unchanged_poll_median_under_5_ms": results["unchanged_poll"]["median_ms"] < 5,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
