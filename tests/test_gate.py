"""The reflection state of a database: the gate, leases, the dirty mark, back-off and status."""

import time
from collections.abc import Callable

import pytest
from django.core.cache import cache

from sync import tasks
from sync.changes import gate, leases, polling, recency, store
from sync.encryption import encrypt
from sync.models import Database, ReflectionRun, Table
from tests.helpers import (
    HeldDatabaseRow,
    LockedTableInserts,
    run_together,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def list_status(client, database: Database) -> str:
    return str(client.get(f"/api/v1/tables/?database={database.id}")["X-Reflection-Status"])


def test_a_known_change_is_never_reported_fresh(worker, fresh, reader):
    assert list_status(reader, fresh) == "fresh"
    held = HeldDatabaseRow(fresh)  # the reflection that the notice queues waits for the row
    try:
        gate.notice_change(fresh, ReflectionRun.Trigger.LISTENER)
        wait_until(lambda: (leases.holder(fresh.id) or ("",))[0] == "running", what="the task")
        assert list_status(reader, fresh) == "running"
        cache.clear()  # the recency key goes, the lease and the mark stay
        assert gate.status_of(fresh).status == "running"
    finally:
        held.release()
    wait_until(lambda: list_status(reader, fresh) == "fresh", what="the reflection to end")


def test_a_live_read_that_finds_the_database_unreachable_turns_the_status_failed_at_once(
    fresh, reader
):
    table = Table.objects.get(name="existing")
    Database.objects.filter(pk=fresh.pk).update(
        encrypted_url=encrypt("postgresql://u:pw@127.0.0.1:1/gone")
    )

    columns = reader.get(f"/api/v1/tables/{table.id}/columns/")

    assert columns.status_code == 503
    assert list_status(reader, fresh) == "failed"
    detail = reader.get(f"/api/v1/databases/{fresh.id}/").json()
    assert detail["status"] == "failed"
    assert "Connection refused" in detail["last_error"]


def test_a_ddl_committed_while_a_reflection_runs_is_visible_right_after_it_ends(
    worker, fresh, user_db
):
    user_db.execute("CREATE TABLE first (id int)")
    locked = LockedTableInserts()
    try:
        gate.notice_change(fresh, ReflectionRun.Trigger.LISTENER)
        wait_until(locked.blocked, what="the reflection to block after its snapshot")
        user_db.execute("CREATE TABLE second (id int)")  # after the snapshot began
        gate.notice_change(fresh, ReflectionRun.Trigger.LISTENER)  # what the listener does
    finally:
        locked.release()

    wait_until(lambda: leases.holder(fresh.id) is None, what="the task to end")
    assert Table.objects.live().filter(name="second").exists()
    assert ReflectionRun.objects.filter(trigger="listener").count() == 2
    assert gate.status_of(fresh).status == "fresh"


def test_a_lease_is_renewed_while_a_long_reflection_runs(worker, fresh, user_db):
    locked = LockedTableInserts()
    user_db.execute("CREATE TABLE slow (id int)")
    try:
        queued = gate.request_reflection(fresh, ReflectionRun.Trigger.API)
        wait_until(locked.blocked, what="the reflection to block")
        time.sleep(3 * 2)  # twice SYNC_LEASE_SECONDS of the test settings: renewal keeps it
        assert leases.holder(fresh.id) == (leases.LeaseState.RUNNING, queued.task_id)
    finally:
        locked.release()
    wait_until(lambda: leases.holder(fresh.id) is None, what="the task to end")


def backing_off(database: Database) -> Database:
    store.client().set(store.backoff_key(database.id), 1, ex=60)
    recency.expire(database.id)
    return database


def renewal(database: Database) -> str:
    return "failed" if polling.renew_expired() == {"failed": 1} else "queued"


def poll(database: Database) -> str:
    return "failed" if polling.poll_due() == {} else "polled"


def beat_import(database: Database) -> str:
    Database.objects.filter(pk=database.pk).update(imported_at=None)  # a new registration
    report = tasks.import_new_databases.apply().get()
    return "failed" if report["skipped"] == [database.name] else "imported"


CALLERS: dict[str, Callable[[Database], str]] = {
    "list": lambda d: gate.ensure_fresh(d).status,
    "live-read": lambda d: gate.notice_change(d, ReflectionRun.Trigger.LIVE).status,
    "listener": lambda d: gate.notice_change(d, ReflectionRun.Trigger.LISTENER).status,
    "renewal": renewal,
    "poll": poll,
    "import": beat_import,
}


@pytest.mark.parametrize("caller", CALLERS.values(), ids=CALLERS.keys())
def test_every_caller_obeys_the_back_off(fresh, published, caller):
    assert caller(backing_off(fresh)) == "failed"

    assert published == []
    assert leases.holder(fresh.id) is None


@pytest.mark.parametrize("trigger", [ReflectionRun.Trigger.API, ReflectionRun.Trigger.ADMIN])
def test_only_a_staff_request_overrides_the_back_off(fresh, published, trigger):
    queued = gate.request_reflection(backing_off(fresh), trigger)
    assert (queued.status, queued.queued_now) == ("queued", True)
    assert len(published) == 1


def test_the_api_reflect_overrides_the_back_off(fresh, published, staff):
    backing_off(fresh)
    response = staff.post(f"/api/v1/databases/{fresh.id}/reflect/")
    assert (response.status_code, response.json()["status"]) == (202, "queued")


def test_fifty_concurrent_notices_publish_one_task_and_end_in_at_most_two_runs(
    worker, fresh, user_db, published
):
    user_db.execute("CREATE TABLE noticed (id int)")
    held = HeldDatabaseRow(fresh)  # the task, once taken, waits for the row
    try:
        outcomes = run_together(50, lambda: gate.notice_change(fresh, "listener").status)
    finally:
        held.release()

    assert set(outcomes) <= {"queued", "running"}
    assert len(published) == 1
    wait_until(lambda: leases.holder(fresh.id) is None, what="the task to end")
    assert Table.objects.live().filter(name="noticed").exists()
    assert 1 <= ReflectionRun.objects.filter(trigger="listener").count() <= 2


def test_a_change_noticed_right_after_a_runs_last_look_queues_the_next_run(
    fresh, published, monkeypatch
):
    looked = leases.Lease.dirty

    def then_noticed(lease: leases.Lease) -> bool:
        # The notice lands between the run's last look at the mark and its lease going: the
        # lease deduplicates it, so only the release can tell.
        found = looked(lease)
        if not published:
            assert gate.notice_change(fresh, ReflectionRun.Trigger.LISTENER).status == "running"
        return found

    monkeypatch.setattr(leases.Lease, "dirty", then_noticed)
    outcome = tasks.reflect_db_objects.apply(
        kwargs={"database_id": fresh.id, "force": True, "trigger": ReflectionRun.Trigger.LIST}
    ).get()

    assert outcome == "reflected"
    assert len(published) == 1  # the next run, for the change noticed
