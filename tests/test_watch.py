"""The DDL watch in a real database: install, uninstall, privileges, what it counts, announces."""

import time
import uuid
from collections.abc import Iterator
from io import StringIO

import psycopg2
import pytest
from django.core.management import CommandError, call_command
from psycopg2 import sql

from sync.changes import listening, watch
from sync.encryption import encrypt
from sync.exceptions import WatchRefused
from sync.models import Database, Schema
from sync.reflection import runs
from sync.remote import catalog
from tests.helpers import ScratchDatabase, admin_connection, one_row, server_url, wait_until

pytestmark = pytest.mark.django_db


def version(user_db: ScratchDatabase) -> int:
    """Return the watch's DDL version counter (-1 where none can be read)."""
    with admin_connection(user_db.name) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce({catalog.VERSION_SQL}, -1)")
        (value,) = one_row(cursor)
    connection.close()
    return int(value)


def watch_objects(user_db: ScratchDatabase) -> dict[str, int]:
    """Count what the watch creates: event triggers, its functions, its sequence, its schema."""
    with admin_connection(user_db.name) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'dbsync%%'),"
            " (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            "  WHERE n.nspname = 'dbsync'),"
            " (SELECT count(*) FROM pg_class WHERE relname = 'ddl_version'),"
            " (SELECT count(*) FROM pg_namespace WHERE nspname = 'dbsync')"
        )
        triggers, functions, sequences, schemas = one_row(cursor)
    connection.close()
    return {"triggers": triggers, "functions": functions, "sequences": sequences,
            "schemas": schemas}  # fmt: skip


@pytest.fixture
def watched(registered: Database) -> Database:
    watch.install(registered)
    registered.refresh_from_db()
    return registered


class Notices:
    """A LISTEN connection of the test's own on the watch's channel."""

    def __init__(self, user_db: ScratchDatabase) -> None:
        self.connection = admin_connection(user_db.name)
        with self.connection.cursor() as cursor:
            cursor.execute(f"LISTEN {watch.CHANNEL}")

    def received(self) -> list[str]:
        self.connection.poll()
        payloads = [notice.payload for notice in self.connection.notifies]
        self.connection.notifies.clear()
        return payloads


@pytest.fixture
def notices(user_db: ScratchDatabase) -> Iterator[Notices]:
    listening = Notices(user_db)
    yield listening
    listening.connection.close()


def test_install_twice_is_idempotent_and_uninstall_removes_everything(registered, user_db):
    watch.install(registered)
    watch.install(registered)

    assert watch_objects(user_db) == {"triggers": 2, "functions": 2, "sequences": 1, "schemas": 1}
    registered.refresh_from_db()
    assert registered.watch_installed_at is not None
    assert listening.watch_mode(registered) == "poll"  # no listener connected yet

    watch.uninstall(registered)

    assert watch_objects(user_db) == {"triggers": 0, "functions": 0, "sequences": 0, "schemas": 0}
    registered.refresh_from_db()
    assert registered.watch_installed_at is None
    watch.uninstall(registered)  # nothing left to remove: still fine


def test_ddl_bumps_the_counter_and_notifies_with_a_constant_payload(watched, user_db, notices):
    before = version(user_db)
    long_name = "x" * 63
    user_db.execute(
        f"CREATE SCHEMA s; CREATE TABLE s.{long_name} (id int);"
        f" ALTER TABLE s.{long_name} RENAME TO t; CREATE VIEW s.v AS SELECT 1 AS one;"
        " DROP VIEW s.v"
    )

    assert version(user_db) > before
    received = notices.received()
    assert received
    assert set(received) == {watch.PAYLOAD}


def test_temporary_objects_and_indexes_trigger_nothing(watched, user_db, notices):
    user_db.execute("CREATE TABLE kept (id int)")
    wait_until(notices.received, what="the notice of a real change")
    before = version(user_db)

    user_db.execute(
        "CREATE TEMP TABLE scratch (id int); CREATE INDEX ON scratch (id); DROP TABLE scratch;"
        " CREATE INDEX ON kept (id)"
    )

    assert version(user_db) == before
    user_db.execute("CREATE TABLE marker (id int)")  # a notice of its own, after the others
    received: list[str] = []

    def marker_arrived() -> bool:
        received.extend(notices.received())
        return bool(received)

    wait_until(marker_arrived, what="the marker's notice")
    time.sleep(0.2)  # anything sent before the marker has arrived by now
    assert received + notices.received() == [watch.PAYLOAD]


def test_the_watch_schema_is_not_listed(watched, user_db):
    runs.reflect(watched.id)
    assert "dbsync" not in set(Schema.objects.live().values_list("name", flat=True))
    assert "public" in set(Schema.objects.live().values_list("name", flat=True))


def test_reflection_stores_the_version_it_read(watched, user_db):
    user_db.execute("CREATE TABLE t (id int)")
    runs.reflect(watched.id)
    watched.refresh_from_db()
    assert watched.catalog_version == version(user_db)


@pytest.fixture
def plain_role(user_db: ScratchDatabase) -> Iterator[str]:
    """A login role that may create tables in the scratch database but is no superuser."""
    role = f"dbsync_plain_{uuid.uuid4().hex[:8]}"
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    connection.close()
    user_db.execute(
        f'GRANT CREATE ON DATABASE "{user_db.name}" TO {role}; GRANT ALL ON SCHEMA public TO {role}'
    )
    yield role
    user_db.execute(f"DROP OWNED BY {role}")
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    connection.close()


def plain_url(user_db: ScratchDatabase, role: str) -> str:
    return server_url(user_db.name).replace("postgres@", f"{role}@", 1)


def test_install_without_the_privilege_says_what_is_needed_and_stays_in_poll_mode(
    registered, user_db, plain_role
):
    Database.objects.filter(pk=registered.pk).update(
        encrypted_url=encrypt(plain_url(user_db, plain_role))
    )
    registered.refresh_from_db()

    with pytest.raises(WatchRefused) as refused:
        watch.install(registered)

    message = str(refused.value)
    assert "superuser" in message
    assert "\n" not in message
    assert watch_objects(user_db)["triggers"] == 0
    registered.refresh_from_db()
    assert registered.watch_installed_at is None
    assert registered.watch_error == message
    assert listening.watch_mode(registered) == "poll"


def test_a_plain_roles_ddl_is_counted_and_never_fails(watched, user_db, plain_role):
    before = version(user_db)
    connection = psycopg2.connect(plain_url(user_db, plain_role))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE made_by_a_plain_role (id int)")
    connection.close()

    assert version(user_db) > before


def test_a_broken_watch_warns_but_never_fails_the_users_ddl(watched, user_db):
    user_db.execute("DROP SEQUENCE dbsync.ddl_version")  # broken by hand
    user_db.execute("CREATE TABLE still_works (id int)")
    assert user_db.oid_of("still_works") > 0


def test_watch_command_installs_removes_and_refuses_in_one_line(registered, user_db, plain_role):
    out = StringIO()
    call_command("watch", registered.name, stdout=out)
    assert out.getvalue().startswith(f"watching {registered.name}")
    call_command("watch", registered.name, "--uninstall", stdout=out)
    assert "removed the watch" in out.getvalue()

    Database.objects.filter(pk=registered.pk).update(
        encrypted_url=encrypt(plain_url(user_db, plain_role))
    )
    with pytest.raises(CommandError) as refused:
        call_command("watch", registered.name, stdout=StringIO())
    assert "superuser" in str(refused.value)
    # With a superuser's URL given for the install only, it works and that URL is not stored.
    call_command("watch", registered.name, "--url", user_db.url, stdout=StringIO())
    registered.refresh_from_db()
    assert registered.watch_installed_at is not None
    assert registered.url == plain_url(user_db, plain_role)


def test_api_installs_and_removes_the_watch_for_staff_only(staff, reader, registered, user_db):
    path = f"/api/v1/databases/{registered.id}/watch/"

    assert reader.post(path).status_code == 403
    installed = staff.post(path)
    detail = staff.get(f"/api/v1/databases/{registered.id}/")
    removed = staff.delete(path)

    assert (installed.status_code, installed.json()) == (200, {"watch_mode": "poll"})
    assert detail.json()["watch_mode"] == "poll"
    assert (removed.status_code, removed.json()) == (200, {"watch_mode": "poll"})
    assert watch_objects(user_db)["triggers"] == 0


def test_api_refusal_is_a_409_with_the_message(staff, registered, user_db, plain_role):
    Database.objects.filter(pk=registered.pk).update(
        encrypted_url=encrypt(plain_url(user_db, plain_role))
    )

    response = staff.post(f"/api/v1/databases/{registered.id}/watch/")

    assert response.status_code == 409
    assert "superuser" in response.json()["detail"]


def test_uninstall_keeps_a_watch_schema_holding_someone_elses_objects(watched, user_db):
    user_db.execute("CREATE TABLE dbsync.not_ours (id int)")

    with pytest.raises(WatchRefused, match="schema was kept"):
        watch.uninstall(watched)

    objects = watch_objects(user_db)
    assert (objects["triggers"], objects["schemas"]) == (0, 1)
