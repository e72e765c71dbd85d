"""Two-phase commit on a watched database: a server of its own that allows prepared
transactions, where the watch sends no NOTIFY and the listener asks the counter instead."""

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from django.db import connection as db_connection

from sync.changes import listener as listener_module
from sync.changes import watch
from sync.models import Database, WatchSignal
from sync.reflection import registry, runs
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(command: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user there."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def two_phase_server() -> Iterator[int]:
    """Start a private PostgreSQL cluster with max_prepared_transactions = 5; yield its port."""
    if not (BIN / "initdb").exists():
        pytest.skip("no PostgreSQL 15 server binaries to start a private cluster")
    # Outside pytest's own temporary directory, which only root may enter.
    data = Path(tempfile.mkdtemp(prefix="dbsync-2pc-")) / "data"
    if os.geteuid() == 0:
        shutil.chown(data.parent, "postgres")
    port = free_port()
    subprocess.run(as_postgres([str(BIN / "initdb"), "-D", str(data), "-A", "trust",
                                "-U", "postgres"]), check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -c max_prepared_transactions=5 -c listen_addresses=127.0.0.1 -k /tmp"
    subprocess.run(as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                                "-l", str(data.parent / "log"), "start"]), check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield port
    finally:
        subprocess.run(as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                    "stop"]), check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture
def prepared_db(two_phase_server: int) -> Iterator[Database]:
    server = f"postgresql://postgres@127.0.0.1:{two_phase_server}"
    admin = psycopg2.connect(f"{server}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS twophase")
        cursor.execute("CREATE DATABASE twophase")
    database, _ = registry.register("twophase", f"{server}/twophase")
    yield database
    with admin.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS twophase WITH (FORCE)")
    admin.close()


def connect(database: Database) -> "psycopg2.extensions.connection":
    connection = psycopg2.connect(database.url)
    connection.autocommit = True
    return connection


def test_ddl_in_a_prepared_transaction_commits_and_then_shows(prepared_db):
    assert watch.install(prepared_db) == WatchSignal.COUNTER  # the server allows 2PC
    runs.reflect(prepared_db.id)
    prepared_db.refresh_from_db()
    connection = connect(prepared_db)
    with connection.cursor() as cursor:
        cursor.execute("BEGIN; CREATE TABLE t (a int); PREPARE TRANSACTION 'x'")
        cursor.execute("COMMIT PREPARED 'x'")
    connection.close()

    result = runs.reflect(prepared_db.id, trigger="listener")

    assert [e.command_tag for e in result.entries] == ["CREATE TABLE"]
    assert prepared_db.tables.live().filter(name="t").exists()


def test_the_listener_hears_a_watch_without_notify_by_its_counter(prepared_db):
    watch.install(prepared_db)
    runs.reflect(prepared_db.id)
    listener = listener_module.Listener()
    heard: list[int] = []
    listener.queue = lambda database_id, now, trigger="listener": heard.append(database_id)  # type: ignore[method-assign]
    stop = threading.Event()

    def listen() -> None:
        try:
            listener.run(stop)
        finally:
            db_connection.close()  # the thread's own connection to the service database

    thread = threading.Thread(target=listen)
    thread.start()
    try:
        wait_until(lambda: heard, what="the reflection after connecting")
        wait_until(
            lambda: any(item.version is not None for item in listener.watched.values()),
            what="the first read of the counter",
        )
        heard.clear()
        connection = connect(prepared_db)
        with connection.cursor() as cursor:
            cursor.execute("BEGIN; CREATE TABLE u (a int); PREPARE TRANSACTION 'y'")
            cursor.execute("COMMIT PREPARED 'y'")
        connection.close()

        wait_until(lambda: heard, what="the counter's move")
    finally:
        stop.set()
        thread.join(timeout=10)
