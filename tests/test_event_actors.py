"""Change events on a watched database: who ran each DDL, from where, when, in which transaction."""

import logging
import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from django.db import connection as service

from sync.changes import watch
from sync.models import ChangeEvent, Database, Table, Webhook, WebhookDelivery
from sync.ops import webhooks
from tests.helpers import ScratchDatabase, admin_connection, one_row, reflect_recorded

pytestmark = pytest.mark.django_db


@pytest.fixture
def watched(registered: Database, user_db: ScratchDatabase, alice: str) -> Database:
    watch.install(registered)
    reflect_recorded(registered.id)  # the import: no events, and the log's position
    registered.refresh_from_db()
    return registered


@pytest.fixture
def alice(user_db: ScratchDatabase) -> Iterator[str]:
    """A role of its own (roles are the server's, shared by every test database)."""
    role = f"alice_{uuid.uuid4().hex[:8]}"
    user_db.execute(
        "CREATE SCHEMA app; CREATE TABLE app.orders (id int);"
        f"CREATE ROLE {role} LOGIN; GRANT CREATE ON DATABASE {user_db.name} TO {role};"
        f"GRANT ALL ON SCHEMA public, app TO {role}; ALTER TABLE app.orders OWNER TO {role}"
    )
    yield role
    user_db.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def run_as(user_db: ScratchDatabase, role: str, application: str, statements: str) -> int:
    """Run DDL over TCP as the role under an application_name, in one transaction; return its
    transaction id."""
    connection = psycopg2.connect(
        host="127.0.0.1", user=role, dbname=user_db.name, application_name=application
    )
    with connection, connection.cursor() as cursor:
        cursor.execute(statements)
        cursor.execute("SELECT txid_current()")
        (xid,) = one_row(cursor)
    connection.close()
    return int(xid)


def test_each_change_names_its_role_application_address_tag_and_statement_time(
    watched, user_db, alice
):
    run_as(user_db, alice, "psql", "CREATE TABLE app.created (id int)")
    run_as(user_db, alice, "psql", "ALTER TABLE app.orders RENAME TO purchases")
    reflect_recorded(watched.id)
    run_as(user_db, alice, "deploy", "ALTER TABLE app.created SET SCHEMA public")
    reflect_recorded(watched.id)
    events = {e.kind: e for e in ChangeEvent.objects.filter(database=watched)}
    assert set(events) == {"created", "renamed", "moved"}
    created, renamed, moved = events["created"], events["renamed"], events["moved"]
    assert (created.role, created.application, created.command_tag) == (
        alice, "psql", "CREATE TABLE"
    )  # fmt: skip
    assert (renamed.name_before, renamed.name_after, renamed.command_tag) == (
        "orders", "purchases", "ALTER TABLE"
    )  # fmt: skip
    assert (moved.schema_before, moved.schema_after, moved.application) == (
        "app", "public", "deploy"
    )  # fmt: skip
    for event in (created, renamed, moved):
        assert event.actor_known
        assert not event.time_seen
        assert event.client_addr == "127.0.0.1"
        assert event.backend_pid
        assert event.xid
        assert event.occurred_at < event.recorded_at
    assert created.occurred_at < renamed.occurred_at < moved.occurred_at


def test_drop_and_recreate_name_who_did_them(watched, user_db, alice):
    run_as(user_db, alice, "psql", "DROP TABLE app.orders; CREATE TABLE app.orders (id int)")
    reflect_recorded(watched.id)
    (event,) = ChangeEvent.objects.filter(database=watched)
    assert (event.kind, event.role, event.command_tag) == ("recreated", alice, "CREATE TABLE")
    run_as(user_db, alice, "cleanup", "DROP TABLE app.orders")
    reflect_recorded(watched.id)
    dropped = ChangeEvent.objects.filter(database=watched).latest("id")
    assert (dropped.kind, dropped.role, dropped.application) == ("dropped", alice, "cleanup")
    assert dropped.command_tag == "DROP TABLE"


def test_an_alter_that_changes_no_name_is_an_altered_event(watched, user_db, alice):
    table = Table.objects.get(database=watched, name="orders")
    run_as(user_db, alice, "django-migrate", "ALTER TABLE app.orders ADD COLUMN total numeric")
    result = reflect_recorded(watched.id)
    assert result.events == 1
    (event,) = table.events.all()
    assert (event.kind, event.name_before, event.name_after) == ("altered", "orders", "orders")
    assert (event.role, event.application) == (alice, "django-migrate")


def test_a_migration_of_many_statements_is_one_transaction_and_one_delivery(
    watched, user_db, alice
):
    hook = Webhook(url="http://127.0.0.1:9/unused", database=watched)
    hook.secret = "s"
    hook.save()
    xid = run_as(
        user_db,
        alice,
        "django-migrate",
        "CREATE TABLE app.a (id int); CREATE TABLE app.b (id int);"
        "ALTER TABLE app.orders RENAME TO orders_old; CREATE VIEW app.v AS SELECT 1 AS one",
    )
    reflect_recorded(watched.id)
    events = list(ChangeEvent.objects.filter(database=watched))
    assert len(events) == 4
    assert {event.xid for event in events} == {xid}
    assert {event.group_key for event in events} == {f"xid-{xid}"}
    (delivery,) = WebhookDelivery.objects.all()
    assert sorted(delivery.event_ids) == sorted(event.id for event in events)


def test_two_transactions_seen_by_one_reflection_are_two_groups(watched, user_db, alice):
    first = run_as(user_db, alice, "psql", "CREATE TABLE app.one (id int)")
    second = run_as(user_db, alice, "psql", "CREATE TABLE app.two (id int)")
    reflect_recorded(watched.id)
    by_xid = dict(ChangeEvent.objects.values_list("name_after", "xid"))
    assert by_xid == {"one": first, "two": second}


def test_a_rolled_back_ddl_on_a_watched_database_has_no_event(watched, user_db):
    connection = admin_connection(user_db.name)
    connection.autocommit = False
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE app.never (id int); ALTER TABLE app.orders RENAME TO x")
    connection.rollback()
    connection.close()
    reflect_recorded(watched.id)
    assert not ChangeEvent.objects.exists()


PASSWORD = "hunter2-never-stored"


def test_a_user_mapping_password_is_stored_nowhere(
    watched, user_db, staff, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    hook = Webhook(url="http://127.0.0.1:9/unused", database=watched)
    hook.secret = "s"
    hook.save()
    with django_capture_on_commit_callbacks(execute=True):
        user_db.execute(
            "CREATE FOREIGN DATA WRAPPER dummy_fdw; CREATE SERVER remote FOREIGN DATA WRAPPER"
            f" dummy_fdw; CREATE USER MAPPING FOR CURRENT_USER SERVER remote OPTIONS"
            f" (password '{PASSWORD}'); CREATE TABLE app.beside (id int)"
        )
        reflect_recorded(watched.id)
    assert ChangeEvent.objects.filter(name_after="beside").exists()
    with service.cursor() as cursor:
        for table in (ChangeEvent._meta.db_table, WebhookDelivery._meta.db_table):
            cursor.execute(
                f"SELECT count(*) FROM {table} t WHERE t::text LIKE %s", [f"%{PASSWORD}%"]
            )
            assert cursor.fetchone() == (0,), table
    with admin_connection(user_db.name) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM dbsync.change_log c WHERE c::text LIKE %s", [f"%{PASSWORD}%"]
        )
        assert one_row(cursor) == (0,)
    connection.close()
    api = staff.get(f"/api/v1/databases/{watched.id}/changes/").content.decode()
    assert "beside" in api
    assert PASSWORD not in api
    body = webhooks.body_of(WebhookDelivery.objects.select_related("database").get())
    assert PASSWORD.encode() not in body
    assert PASSWORD not in caplog.text


def test_a_targeted_reflection_records_the_same_events(watched, user_db, alice):
    run_as(user_db, alice, "psql", "CREATE TABLE app.made (id int); DROP TABLE app.orders")
    result = reflect_recorded(watched.id, trigger="listener")
    assert result.targeted
    run_as(user_db, alice, "psql", "ALTER TABLE app.made RENAME TO kept")
    assert reflect_recorded(watched.id, trigger="listener").targeted
    found = ChangeEvent.objects.filter(database=watched).order_by("id")
    assert [(e.kind, e.name_before, e.name_after, e.role) for e in found] == [
        ("created", "", "made", alice),
        ("dropped", "orders", "", alice),
        ("renamed", "made", "kept", alice),
    ]
