"""The import of new databases and the beat jobs around it, run as Celery tasks."""

import importlib
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from celery import current_app
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from sync import tasks
from sync.changes import leases, progress, recency
from sync.encryption import encrypt
from sync.models import Database, ReflectionRun, Schema, Table
from sync.reflection import registry, runs
from tests import helpers
from tests.helpers import ScratchDatabase, create_scratch, hold_lease, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_new_registration_is_imported_by_the_next_import_run(worker, registered, user_db):
    user_db.execute("CREATE TABLE arrived (id int)")
    states: list[dict[str, Any]] = []

    backend = current_app.backend

    def remember_state(task_id: str, meta: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        if isinstance(meta, dict):
            states.append({"state": state, **meta})
        return original(task_id, meta, state, *args, **kwargs)

    original = backend.store_result
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(backend, "store_result", remember_state)  # observe, then store
        report: dict[str, Any] = tasks.import_new_databases.apply().get()
        # The database's own import task, on a worker.
        wait_until(lambda: Table.objects.live().filter(name="arrived").exists())
        wait_until(lambda: leases.holder(registered.id) is None, what="the import to end")

    assert (report["queued"], report["skipped"]) == (["userdb"], [])
    assert {"state": "PROGRESS", "done": 0, "total": 1, "current": "userdb"} in states
    registered.refresh_from_db()
    assert registered.imported_at is not None
    assert recency.is_recent(registered.id)
    imported = progress.task_progress(report["tasks"]["userdb"])
    assert imported is not None
    assert (imported.state, imported.result) == (
        "SUCCESS",
        {"imported": ["userdb"], "skipped": [], "failed": {}},
    )
    # Imported databases are not imported again.
    assert tasks.import_new_databases.apply().get()["queued"] == []


def test_the_import_fans_out_one_task_per_new_database(db, user_db, routed):
    for name in ("a", "b", "c"):
        registry.register(name, user_db.url)

    report = tasks.import_new_databases.apply().get()

    assert report["queued"] == ["a", "b", "c"]
    assert (
        sorted((r.task, r.queue) for r in routed)
        == [("sync.tasks.import_registered_database", "bulk")] * 3
    )
    assert {r.kwargs["database_id"] for r in routed} == set(
        Database.objects.values_list("id", flat=True)
    )


def test_import_skips_a_database_whose_reflection_is_in_flight(registered, routed):
    hold_lease(registered.id, "someone-else")
    report = tasks.import_new_databases.apply().get()
    assert report["skipped"] == ["userdb"]
    assert routed == []


def test_import_of_an_unreachable_database_backs_off(worker, db):
    down = Database.objects.create(
        name="down", encrypted_url=encrypt("postgresql://u:hunter2@127.0.0.1:1/x")
    )

    assert tasks.import_new_databases.apply().get()["queued"] == ["down"]

    wait_until(lambda: helpers.backing_off(down.id), what="the import to fail")
    down.refresh_from_db()
    assert down.imported_at is None
    assert "hunter2" not in down.last_error
    assert tasks.import_new_databases.apply().get()["skipped"] == ["down"]  # backing off


def test_an_import_message_queued_before_the_split_is_run(worker, registered, user_db):
    user_db.execute("CREATE TABLE arrived (id int)")

    one = current_app.send_task("sync.tasks.import_database", kwargs={"database_id": registered.id})

    assert one.get(timeout=15) == {"imported": ["userdb"], "skipped": [], "failed": {}}
    assert Table.objects.live().filter(name="arrived").exists()
    every_new = current_app.send_task("sync.tasks.import_database")
    assert every_new.get(timeout=15)["queued"] == []  # imported already


def test_migrate_points_the_import_job_at_the_new_task_name(db):
    rename = importlib.import_module("sync.migrations.0004_split_import_task").rename
    job = PeriodicTask.objects.get(name="Import new databases")
    PeriodicTask.objects.filter(pk=job.pk).update(task="sync.tasks.import_database")

    rename(django_apps, None)

    job.refresh_from_db()
    assert job.task == "sync.tasks.import_new_databases"


def test_renew_queues_exactly_the_expired_databases(
    db, scratch_factory: list[ScratchDatabase], published: list[str]
):
    databases = []
    for name in ("fresh", "expired", "also-expired"):
        scratch = create_scratch()
        scratch_factory.append(scratch)
        databases.append(Database.objects.create(name=name, encrypted_url=encrypt(scratch.url)))
    recency.mark_recent(databases[0].id, timezone.now())

    first = tasks.renew_databases.apply().get()
    second = tasks.renew_databases.apply().get()

    assert first == {"fresh": 1, "queued": 2}
    assert len(published) == 2  # the second pass found both queued, running or done
    assert sum(second.values()) == 3
    assert leases.holder(databases[0].id) is None


def test_purge_deletes_only_what_was_dropped_before_the_retention_period(registered, user_db):
    user_db.execute("CREATE SCHEMA gone; CREATE TABLE gone.old (id int); CREATE TABLE keep (x int)")
    runs.reflect(registered.id)
    user_db.execute("DROP SCHEMA gone CASCADE")
    runs.reflect(registered.id)
    long_ago = timezone.now() - timedelta(days=31)
    Table.objects.filter(name="old").update(dropped_at=long_ago)
    Schema.objects.filter(name="gone").update(dropped_at=long_ago)
    ReflectionRun.objects.update(started_at=long_ago)

    counts = tasks.purge_dropped.apply().get()

    assert not Table.objects.filter(name="old").exists()
    assert not Schema.objects.filter(name="gone").exists()
    assert Table.objects.filter(name="keep").exists()
    assert counts["runs"] == 2


def test_import_database_command_registers_and_imports(user_db):
    user_db.execute("CREATE TABLE t (id int)")
    out = StringIO()
    call_command("import_database", "shop", user_db.url, stdout=out)
    assert "import: 3/3 done" in out.getvalue()
    assert Database.objects.get(name="shop").imported_at is not None
    assert Table.objects.live().filter(name="t").exists()


def test_a_refused_import_keeps_its_record_in_the_history(user_db, scratch_factory):
    call_command("import_database", "shop", user_db.url, stdout=StringIO())
    elsewhere = create_scratch()
    scratch_factory.append(elsewhere)

    with pytest.raises(CommandError, match="now points at another database"):
        call_command("import_database", "shop", elsewhere.url, stdout=StringIO())

    database = Database.objects.get(name="shop")
    assert "now points at another database" in database.last_error
    assert ReflectionRun.objects.filter(database=database, outcome="refused").count() == 1


def test_import_database_of_an_unreachable_url_registers_nothing(db):
    with pytest.raises(CommandError) as raised:
        call_command(
            "import_database", "shop", "postgresql://u:hunter2@127.0.0.1:1/x", stdout=StringIO()
        )
    assert "hunter2" not in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not Database.objects.exists()
