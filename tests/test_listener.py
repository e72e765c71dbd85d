"""Instant sync: DDL from a second client shows in the lists, with a real listener and worker."""

import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import pytest
from django.db import connection

from sync.changes import leases, listening, watch
from sync.encryption import encrypt
from sync.models import Database, ReflectionRun, Schema, Table, Webhook
from sync.reflection import registry, runs
from tests.helpers import (
    ListenerProcess,
    ScratchDatabase,
    admin_connection,
    create_scratch,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

# A process's start (Django, the first connections) and a reflection may take seconds on a busy
# machine: the waits below are generous bounds, not measurements (bench/ddl_latency.py times).
SETTLE = 30


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[ListenerProcess]:
    process = ListenerProcess(tmp_path / "listener.log")
    yield process
    stop_process(process.process)
    print(process.text())  # shown by pytest when the test failed


@pytest.fixture
def watched(fresh: Database) -> Database:
    """A fresh database (see conftest) whose DDL watch is installed."""
    watch.install(fresh)
    fresh.refresh_from_db()
    return fresh


def listed_names(reader, database: Database) -> set[str]:
    response = reader.get(f"/api/v1/tables/?database={database.id}&limit=1000")
    assert response.status_code == 200
    return {row["name"] for row in response.json()["results"]}


def wait_for_listener(database: Database) -> None:
    wait_until(
        lambda: listening.watch_mode(database) == "listen", timeout=SETTLE, what="listen mode"
    )


def test_create_rename_move_drop_and_recreate_show_without_waiting_for_the_interval(
    worker, listener, watched, user_db, reader
):
    wait_for_listener(watched)
    steps = [
        ("CREATE TABLE made (id int)", {"existing", "made"}),
        ("ALTER TABLE made RENAME TO renamed", {"existing", "renamed"}),
        ("CREATE SCHEMA other; ALTER TABLE renamed SET SCHEMA other", {"existing", "renamed"}),
        ("DROP TABLE existing", {"renamed"}),
        ("CREATE TABLE existing (id int, again bool)", {"existing", "renamed"}),
    ]
    renamed_id = None
    for ddl, expected in steps:
        user_db.execute(ddl)
        wait_until(partial(lambda e: listed_names(reader, watched) == e, expected), what=ddl)
        if renamed_id is None and "renamed" in expected:
            renamed_id = Table.objects.live().get(name="renamed").id
    moved = Table.objects.live().get(name="renamed")
    assert (moved.id, moved.schema.name) == (renamed_id, "other")
    response = reader.get(f"/api/v1/tables/?database={watched.id}")
    assert response["X-Reflection-Status"] == "fresh"
    assert set(ReflectionRun.objects.values_list("trigger", flat=True)) >= {"listener"}


def test_a_storm_of_ddl_ends_in_a_few_reflections_and_the_exact_final_state(
    worker, listener, watched, user_db, reader
):
    wait_for_listener(watched)
    wait_until(lambda: leases.holder(watched.id) is None, what="the first reflection")
    runs_before = ReflectionRun.objects.count()
    storm = admin_connection(user_db.name)  # autocommit: each statement its own transaction
    with storm.cursor() as cursor:
        for i in range(100):
            cursor.execute(f"CREATE TABLE storm_{i} (id int)")
            cursor.execute(f"ALTER TABLE storm_{i} RENAME TO renamed_{i}")
            if i % 2:
                cursor.execute(f"DROP TABLE renamed_{i}")
    storm.close()
    expected = {"existing"} | {f"renamed_{i}" for i in range(0, 100, 2)}

    wait_until(lambda: listed_names(reader, watched) == expected, timeout=SETTLE, what="storm")
    wait_until(lambda: leases.holder(watched.id) is None, what="the last reflection")
    assert ReflectionRun.objects.count() - runs_before <= 10
    response = reader.get(f"/api/v1/tables/?database={watched.id}")
    assert response["X-Reflection-Status"] == "fresh"


def test_the_listener_killed_during_a_storm_loses_nothing(
    worker, listener, watched, user_db, reader
):
    wait_for_listener(watched)
    storm = admin_connection(user_db.name)  # autocommit: each statement its own transaction
    with storm.cursor() as cursor:
        for i in range(60):
            cursor.execute(f"CREATE TABLE killed_{i} (id int)")
            if i == 20:
                listener.kill()
            if i == 40:
                listener.restart()
            cursor.execute(f"ALTER TABLE killed_{i} RENAME TO survived_{i}")
    storm.close()
    expected = {"existing"} | {f"survived_{i}" for i in range(60)}

    wait_until(lambda: listed_names(reader, watched) == expected, timeout=SETTLE, what="storm")
    wait_until(lambda: leases.holder(watched.id) is None, what="the last reflection")
    full = runs.reflect(watched.id, trigger=ReflectionRun.Trigger.RENEWAL)
    assert (full.counts.added, full.counts.renamed, full.counts.dropped) == (0, 0, 0)


def terminate_listener_backends(database: ScratchDatabase) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'dbsync-listener' AND datname = %s",
            [database.name],
        )
        (terminated,) = cursor.fetchone()
    return int(terminated)


def test_a_change_made_while_the_listener_was_cut_off_shows_after_it_reconnects(
    worker, listener, watched, user_db, reader
):
    wait_for_listener(watched)
    assert terminate_listener_backends(user_db) == 1
    user_db.execute("CREATE TABLE while_away (id int)")  # its notice has nobody to go to

    wait_until(lambda: "while_away" in listed_names(reader, watched), timeout=SETTLE)
    wait_until(lambda: listening.watch_mode(watched) == "listen", timeout=SETTLE, what="reconnect")
    assert "reconnecting in" in listener.text()


def test_a_change_made_while_the_listener_process_was_dead_shows_after_it_restarts(
    worker, listener, watched, user_db, reader
):
    wait_for_listener(watched)
    listener.kill()
    user_db.execute("CREATE TABLE while_dead (id int)")
    listener.restart()

    wait_until(lambda: "while_dead" in listed_names(reader, watched), timeout=SETTLE)


def test_a_database_watched_later_is_picked_up_without_a_restart(
    worker, listener, registered, user_db, reader
):
    runs.reflect(registered.id)
    watch.install(registered)
    registered.refresh_from_db()
    wait_for_listener(registered)

    user_db.execute("CREATE TABLE noticed (id int)")

    wait_until(lambda: "noticed" in listed_names(reader, registered), timeout=SETTLE)


def test_a_watch_dropped_by_hand_is_reported_and_polling_takes_over(
    worker, listener, watched, user_db
):
    wait_for_listener(watched)
    user_db.execute("DROP EVENT TRIGGER dbsync_ddl_command_end; DROP EVENT TRIGGER dbsync_sql_drop")

    wait_until(
        lambda: Database.objects.get(pk=watched.pk).watch_installed_at is None,
        timeout=SETTLE,
        what="the listener's heartbeat to notice",
    )
    watched.refresh_from_db()
    assert "removed" in watched.watch_error
    assert listening.watch_mode(watched) == "poll"
    assert listener.process.poll() is None  # still running


def test_an_unreachable_database_is_reported_failed_and_the_log_shows_no_password(
    listener, db, reader
):
    down = Database.objects.create(
        name="down",
        encrypted_url=encrypt("postgresql://u:hunter2@127.0.0.1:1/gone"),
        watch_installed_at="2026-01-01T00:00:00Z",
    )

    wait_until(lambda: "down unavailable" in listener.text(), timeout=SETTLE, what="the log")
    response = reader.get(f"/api/v1/schemas/?database={down.id}")

    assert response["X-Reflection-Status"] == "failed"
    down.refresh_from_db()
    assert "Connection refused" in down.last_error
    assert "hunter2" not in listener.text() + down.last_error
    assert listener.process.poll() is None


def test_temporary_tables_queue_nothing(worker, listener, watched, user_db):
    wait_for_listener(watched)
    wait_until(lambda: leases.holder(watched.id) is None, what="the first reflection")
    runs = ReflectionRun.objects.count()

    user_db.execute("CREATE TEMP TABLE scratch (id int); DROP TABLE scratch")
    user_db.execute("CREATE TABLE marker (id int)")  # a real change after them, as a clock

    wait_until(lambda: Table.objects.live().filter(name="marker").exists(), timeout=SETTLE)
    wait_until(lambda: leases.holder(watched.id) is None, what="the reflection")
    assert ReflectionRun.objects.count() == runs + 1
    assert not Schema.objects.filter(name__startswith="pg_temp").exists()


def test_a_watch_disabled_on_one_database_leaves_the_listener_serving_the_others(
    worker, listener, watched, user_db, scratch_factory, reader
):
    other_db = create_scratch()
    scratch_factory.append(other_db)
    other, _ = registry.register("otherdb", other_db.url)
    runs.reflect(other.id)
    watch.install(other)
    other.refresh_from_db()
    wait_for_listener(watched)
    wait_for_listener(other)

    user_db.execute("ALTER EVENT TRIGGER dbsync_sql_drop DISABLE")
    wait_until(
        lambda: Database.objects.get(pk=watched.pk).watch_installed_at is None,
        timeout=SETTLE,
        what="the listener's heartbeat to notice",
    )
    # Past several heartbeats of the database still watched: the loop that lost one goes on.
    for round_ in range(3):
        other_db.execute(f"CREATE TABLE after_{round_} (id int)")
        wait_until(
            partial(lambda r: f"after_{r}" in listed_names(reader, other), round_),
            timeout=SETTLE,
            what=f"after_{round_} on the database still watched",
        )
        time.sleep(2)  # one heartbeat interval (SYNC_LISTEN_HEARTBEAT in the test settings)
    assert listener.process.poll() is None, listener.text()
    assert "dictionary changed size" not in listener.text()
    assert listening.watch_mode(other) == "listen"


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A webhook receiver on the loopback address: its URL and the bodies it accepted."""
    bodies: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", bodies
    server.shutdown()
    server.server_close()


def test_a_ddl_from_psql_reaches_the_change_feed_and_a_webhook_with_who_ran_it(
    worker, listener, watched, user_db, reader, received
):
    url, bodies = received
    hook = Webhook(url=url, database=watched)
    hook.secret = "listener-test"
    hook.save()
    runs.reflect(watched.id)  # the log's position after the install
    wait_for_listener(watched)
    client = psycopg2.connect(user_db.url, application_name="psql")
    with client, client.cursor() as cursor:
        cursor.execute("CREATE TABLE made (id int); ALTER TABLE existing RENAME TO kept")
    client.close()

    feed = f"/api/v1/databases/{watched.id}/changes/"
    wait_until(lambda: len(reader.get(feed).json()["results"]) == 2, timeout=SETTLE, what="events")
    events = {row["kind"]: row for row in reader.get(feed).json()["results"]}
    assert set(events) == {"created", "renamed"}
    for row in events.values():
        assert (row["role"], row["application"], row["actor_known"]) == ("postgres", "psql", True)
    assert events["created"]["transaction"] == events["renamed"]["transaction"]
    wait_until(lambda: len(bodies) == 1, timeout=SETTLE, what="the webhook's delivery")
    delivered = bodies[0]["events"]
    assert isinstance(delivered, list)
    assert sorted(event["kind"] for event in delivered) == ["created", "renamed"]
