"""Benchmark encrypted database URLs: token-authenticated list and records requests, print JSON.

Three variants, interleaved in the same run so that the machine's drift hits them alike:
  plaintext  the URL as before encryption (the url property swapped for a dictionary lookup)
  encrypted  as dbsync runs: decrypted once per process, then cached
  uncached   the decryption cache emptied before every request (one Fernet decryption each)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

isolate("dbsync_bench_secrets", SYNC_REFLECTION_INTERVAL="3600")

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from bench.common import (
    connect,
    ensure_database,
    log,
    machine,
    server_url,
    spread,
    timed,
)
from sync import encryption
from sync.changes import recency
from sync.models import Database, DatabaseGrant, Table
from sync.reflection import registry, runs

USER_DATABASE = "dbsync_bench_secrets_user"  # kept between runs
# In the URL, to look for in the logs (the local server trusts 127.0.0.1 and ignores it).
PASSWORD = "bench-secret-pw"  # noqa: S105
TARGET_OVERHEAD = 0.05


def ensure_databases() -> str:
    """Create the service and user databases when missing; migrate; return the user URL."""
    ensure_database(settings.DATABASES["default"]["NAME"])
    ensure_database(USER_DATABASE)
    pg = connect(USER_DATABASE)
    with pg.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text NOT NULL);"
            " INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g"
            " ON CONFLICT DO NOTHING"
        )
    pg.close()
    call_command("migrate", verbosity=0)
    return server_url(USER_DATABASE).replace("postgres@", f"postgres:{PASSWORD}@")


def reader_token(database: Database) -> str:
    """A non-staff reader granted the database, records included: the access checks run."""
    group, _ = Group.objects.get_or_create(name="bench-readers")
    DatabaseGrant.objects.update_or_create(
        database=database, group=group, defaults={"records": True}
    )
    user, _ = User.objects.get_or_create(username="bench-reader")
    user.groups.add(group)
    return Token.objects.get_or_create(user=user)[0].key


@contextmanager
def plaintext_urls(plain: dict[int, str]) -> Iterator[None]:
    """Serve Database.url from a dictionary, as before encryption: no decryption at all."""
    encrypted = Database.__dict__["url"]
    Database.url = property(lambda database: plain[database.pk])  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        Database.url = encrypted  # type: ignore[method-assign]


def measure(path: str, client: Client, plain: dict[int, str], rounds: int) -> dict[str, Any]:
    def request() -> None:
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}: {response.content[:200]!r}")

    def plaintext() -> None:
        with plaintext_urls(plain):
            request()

    def uncached() -> None:
        encryption._decrypt.cache_clear()
        request()

    calls = list({"plaintext": plaintext, "encrypted": request, "uncached": uncached}.items())
    samples: dict[str, list[float]] = {name: [] for name, _ in calls}
    for number in range(rounds + rounds // 10):
        # Each variant takes each place in the round as often: no order favours one.
        shift = number % len(calls)
        for name, call in calls[shift:] + calls[:shift]:
            elapsed = timed(call)
            if number >= rounds // 10:  # the first tenth warms up
                samples[name].append(elapsed)
    result: dict[str, Any] = {name: spread(values) for name, values in samples.items()}
    base = result["plaintext"]["median_ms"]
    for name in ("encrypted", "uncached"):
        result[f"{name}_overhead"] = round(result[name]["median_ms"] / base - 1, 4)
    return result


def decryption_cost(token: str, iterations: int = 2000) -> dict[str, float]:
    def each(function: Callable[[], Any]) -> float:
        started = time.perf_counter()
        for _ in range(iterations):
            function()
        return round((time.perf_counter() - started) / iterations * 1e6, 2)

    def uncached() -> None:
        encryption._decrypt.cache_clear()
        encryption.decrypt(token, "bench")

    return {
        "uncached_us": each(uncached),
        "cached_us": each(lambda: encryption.decrypt(token, "bench")),
    }


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def password_logged(client: Client, path: str) -> bool:
    """Return whether a records request at DEBUG level logs the password anywhere."""
    handler, root = Collect(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        encryption._decrypt.cache_clear()
        client.get(path)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return any(PASSWORD in line for line in handler.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=600)
    rounds = parser.parse_args().rounds
    url = ensure_databases()
    database, _ = registry.register("bench", url)
    runs.reflect(database.id)
    recency.mark_recent(database.id, timezone.now())
    table = Table.objects.get(database=database, name="items")
    client = Client(HTTP_AUTHORIZATION=f"Token {reader_token(database)}", HTTP_HOST="127.0.0.1")
    plain = {database.pk: url}
    log(f"measuring {rounds} rounds of each request and variant")
    paths = {
        "records": f"/api/v1/tables/{table.id}/records/?limit=50",
        "list": f"/api/v1/tables/?database={database.id}",
    }
    results = {name: measure(path, client, plain, rounds) for name, path in paths.items()}
    report = {
        "benchmark": "encrypted database URLs: token-authenticated API requests",
        "rounds": rounds,
        "machine": machine(),
        "requests": results,
        "decryption": decryption_cost(database.encrypted_url),
        "password_in_debug_logs": password_logged(client, paths["records"]),
        # A list request decrypts nothing: its spread between variants is the noise floor.
        "noise_floor": results["list"]["encrypted_overhead"],
        "targets": {
            "records_overhead_at_most_5_percent": results["records"]["encrypted_overhead"]
            <= TARGET_OVERHEAD,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
