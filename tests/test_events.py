"""Change events: each change a reflection applies, with its kind, names, time and actor."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sync import tasks
from sync.models import ChangeEvent, Database, EventBatch, Table
from sync.reflection import feed, retention, runs
from tests.helpers import ScratchDatabase, reflect_recorded, run_together, wait_until

pytestmark = pytest.mark.django_db


def events_of(database: Database) -> list[tuple[str, str, str, str, str, str]]:
    rows = ChangeEvent.objects.filter(database=database).order_by("id")
    return list(
        rows.values_list(
            "kind", "object_type", "schema_before", "name_before", "schema_after", "name_after"
        )
    )


@pytest.fixture
def imported(registered: Database, user_db: ScratchDatabase) -> Database:
    user_db.execute("CREATE SCHEMA app; CREATE TABLE app.a (id int); CREATE TABLE app.b (id int)")
    reflect_recorded(registered.id)
    return registered


def test_the_first_import_records_no_event(imported):
    assert events_of(imported) == []


def test_each_kind_of_change_is_one_event_with_its_names(imported, user_db):
    user_db.execute(
        "CREATE TABLE app.c (id int); ALTER TABLE app.a RENAME TO a2;"
        "CREATE SCHEMA other; ALTER TABLE app.b SET SCHEMA other;"
        "CREATE VIEW app.v AS SELECT 1 AS one"
    )
    result = reflect_recorded(imported.id)
    assert result.events == 5
    assert sorted(events_of(imported)) == sorted(
        [
            ("created", "schema", "", "", "other", "other"),
            ("created", "table", "", "", "app", "c"),
            ("created", "view", "", "", "app", "v"),
            ("renamed", "table", "app", "a", "app", "a2"),
            ("moved", "table", "app", "b", "other", "b"),
        ]
    )
    user_db.execute("DROP TABLE app.c; DROP TABLE other.b; CREATE TABLE other.b (id int)")
    reflect_recorded(imported.id)
    latest = events_of(imported)[5:]
    assert sorted(latest) == [
        ("dropped", "table", "app", "c", "", ""),
        ("recreated", "table", "other", "b", "other", "b"),
    ]


def test_an_event_keeps_the_object_by_its_model_id_across_a_rename(imported, user_db):
    table = Table.objects.get(database=imported, name="a")
    user_db.execute("ALTER TABLE app.a RENAME TO a2")
    reflect_recorded(imported.id)
    user_db.execute("ALTER TABLE app.a2 RENAME TO a3")
    reflect_recorded(imported.id)
    history = list(table.events.order_by("id").values_list("name_before", "name_after"))
    assert history == [("a", "a2"), ("a2", "a3")]


def test_without_the_change_log_the_actor_is_unknown_and_the_time_is_when_seen(imported, user_db):
    user_db.execute("CREATE TABLE app.seen (id int)")
    reflect_recorded(imported.id)
    event = ChangeEvent.objects.get(database=imported, name_after="seen")
    assert event.role == ""
    assert not event.actor_known
    assert event.time_seen
    assert event.xid is None
    assert event.client_addr is None
    assert event.command_tag == ""
    assert event.run is not None
    assert event.run.trigger == "command"
    assert event.occurred_at == event.recorded_at  # the time dbsync saw it
    assert event.run.started_at <= event.occurred_at


def test_a_reflection_that_changes_nothing_records_nothing(imported):
    reflect_recorded(imported.id)
    assert events_of(imported) == []


def test_a_rolled_back_ddl_has_no_event(imported, user_db):
    user_db.execute("BEGIN; CREATE TABLE app.never (id int); ROLLBACK")
    reflect_recorded(imported.id)
    assert events_of(imported) == []


def test_a_schema_dropped_with_its_tables_is_one_event_each(imported, user_db):
    user_db.execute("DROP SCHEMA app CASCADE")
    reflect_recorded(imported.id)
    assert sorted(events_of(imported)) == [
        ("dropped", "schema", "app", "app", "", ""),
        ("dropped", "table", "app", "a", "", ""),
        ("dropped", "table", "app", "b", "", ""),
    ]


def test_a_renamed_schema_is_one_event(imported, user_db):
    user_db.execute("ALTER SCHEMA app RENAME TO application")
    reflect_recorded(imported.id)
    assert events_of(imported) == [
        ("renamed", "schema", "app", "app", "application", "application")
    ]


def test_events_go_after_the_retention_period(imported, user_db):
    user_db.execute("CREATE TABLE app.old (id int)")
    reflect_recorded(imported.id)
    ChangeEvent.objects.update(recorded_at=timezone.now() - timedelta(days=40))
    purged = retention.purge_expired(days=30)
    assert purged["events"] == 1
    assert not ChangeEvent.objects.exists()


def test_a_reflection_leaves_its_events_as_one_batch_the_feed_records_once(imported, user_db):
    user_db.execute("CREATE TABLE app.c (id int); CREATE TABLE app.d (id int)")
    assert runs.reflect(imported.id).events == 2
    batch = EventBatch.objects.get(database=imported)
    assert (batch.count, events_of(imported)) == (2, [])  # nothing recorded yet
    assert feed.record().kinds == {"created": 2}  # every database's, as the beat job's pass
    assert not EventBatch.objects.exists()
    assert feed.record(imported.id).events == 0
    assert [name for *_, name in events_of(imported)] == ["c", "d"]


@pytest.mark.django_db(transaction=True)
def test_two_feeds_at_once_record_each_event_once_in_order(imported, user_db):
    for name in ("c", "d", "e"):
        user_db.execute(f"CREATE TABLE app.{name} (id int)")
        runs.reflect(imported.id)
    recorded = run_together(2, lambda: feed.record(imported.id).events)
    assert sorted(recorded) == [0, 3]
    assert [name for *_, name in events_of(imported)] == ["c", "d", "e"]


@pytest.mark.django_db(transaction=True)
def test_the_webhooks_worker_records_a_task_s_reflection_without_being_asked(
    worker, imported, user_db
):
    user_db.execute("CREATE TABLE app.c (id int)")
    tasks.reflect_db_objects.delay(imported.id, force=True)
    wait_until(lambda: events_of(imported), timeout=30, what="the event recorded")
    assert events_of(imported) == [("created", "table", "", "", "app", "c")]
    assert not EventBatch.objects.exists()


def test_a_batch_that_cannot_be_recorded_holds_up_no_other_database(imported, user_db, caplog):
    broken = Database.objects.create(name="broken")
    EventBatch.objects.create(database=broken, recorded_at=timezone.now(), rows="[[", count=1)
    user_db.execute("CREATE TABLE app.c (id int)")
    runs.reflect(imported.id)

    assert feed.record().events == 1

    assert [name for *_, name in events_of(imported)] == ["c"]
    assert EventBatch.objects.filter(database=broken).count() == 1  # kept, not lost
    assert f"the events of database {broken.id} not recorded" in caplog.text
