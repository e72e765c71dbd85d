"""The freshness gate and the reflect_db_objects task, with a real broker and a real worker."""

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
import redis
from celery import current_app
from celery.signals import task_postrun
from django.db.models import Sum
from django.utils import timezone

from sync import tasks
from sync.changes import leases, queues, recency, store
from sync.encryption import encrypt
from sync.models import Database, ReflectionRun, Schema, Table
from sync.reflection import runs
from tests import helpers
from tests.helpers import (
    HeldDatabaseRow,
    LockedTableInserts,
    backend_gone,
    client_for,
    free_port,
    hold_lease,
    make_user,
    run_together,
    start_redis_server,
    start_worker_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def runs_recorded(**where: object) -> int:
    """Count the reflections the history holds, each row standing for `repeats` of them."""
    return ReflectionRun.objects.filter(**where).aggregate(n=Sum("repeats"))["n"] or 0


@pytest.fixture
def reader_client(db: None):
    return client_for(make_user("reader"))


def table_names(client, database: Database) -> list[str]:
    response = client.get(f"/api/v1/tables/?database={database.id}")
    assert response.status_code == 200
    return sorted(row["name"] for row in response.json()["results"])


def test_new_table_appears_after_the_key_expires_and_the_worker_runs(
    worker, fresh, user_db, reader_client, published
):
    user_db.execute("CREATE TABLE arrived_later (id int)")
    first = reader_client.get(f"/api/v1/tables/?database={fresh.id}")
    assert first["X-Reflection-Status"] == "fresh"
    assert published == []

    recency.expire(fresh.id)
    expired = reader_client.get(f"/api/v1/tables/?database={fresh.id}")

    # Answered at once with the rows as they were, and one reflection queued.
    assert [row["name"] for row in expired.json()["results"]] == ["existing"]
    assert expired["X-Reflection-Status"] == "queued"
    wait_until(lambda: "arrived_later" in table_names(reader_client, fresh), what="the new table")
    assert (
        reader_client.get(f"/api/v1/tables/?database={fresh.id}")["X-Reflection-Status"] == "fresh"
    )
    assert len(published) == 1


def test_no_reflection_is_queued_within_the_minimum_gap(fresh, reader_client, published, settings):
    settings.SYNC_MIN_REFLECTION_GAP = 60
    recency.expire(fresh.id)  # lost moments after the reflection that set it

    within = reader_client.get(f"/api/v1/tables/?database={fresh.id}")

    assert within["X-Reflection-Status"] == "fresh"
    assert published == []
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Database.objects.filter(pk=fresh.id).update(reflected_at=an_hour_ago)
    after = reader_client.get(f"/api/v1/tables/?database={fresh.id}")
    assert after["X-Reflection-Status"] == "queued"
    assert len(published) == 1


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def test_a_list_after_a_broker_restart_queues_on_a_new_connection(fresh, reader_client):
    port = free_port()
    broker = start_redis_server(port)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis_answers(url), what="the broker to start")
    current_app.conf["broker_write_url"] = url
    try:
        recency.expire(fresh.id)
        before = reader_client.get(f"/api/v1/tables/?database={fresh.id}")
        stop_process(broker)  # the connection kept for publishing dies with it
        broker = start_redis_server(port)
        wait_until(lambda: redis_answers(url), what="the broker to restart")
        store.client().delete(store.lease_key(fresh.id))  # no worker took the first
        after = reader_client.get(f"/api/v1/tables/?database={fresh.id}")
        queued = redis.Redis.from_url(url).llen(queues.INTERACTIVE)
    finally:
        current_app.conf["broker_write_url"] = None
        stop_process(broker)

    assert (before["X-Reflection-Status"], after["X-Reflection-Status"]) == ("queued", "queued")
    assert queued == 1  # the message published after the restart


def test_fifty_concurrent_lists_on_an_expired_key_publish_one_task(
    worker, fresh, user_db, published
):
    user_db.execute("CREATE TABLE burst (id int)")
    recency.expire(fresh.id)
    user = make_user("burst")

    def list_tables() -> str:
        response = client_for(user).get(f"/api/v1/tables/?database={fresh.id}")
        return f"{response.status_code} {response['X-Reflection-Status']}"

    statuses = run_together(50, list_tables)

    assert len(statuses) == 50
    assert all(status.startswith("200 ") for status in statuses)
    assert len(published) == 1
    wait_until(lambda: Table.objects.live().filter(name="burst").exists(), what="the reflection")
    assert ReflectionRun.objects.filter(database=fresh, trigger="list").count() == 1


def test_list_answers_when_the_broker_is_down(fresh, reader_client, published):
    recency.expire(fresh.id)
    app = current_app
    app.conf["broker_write_url"] = "redis://127.0.0.1:1/0"
    try:
        down = reader_client.get(f"/api/v1/tables/?database={fresh.id}")
    finally:
        app.conf["broker_write_url"] = None

    assert down.status_code == 200
    assert [row["name"] for row in down.json()["results"]] == ["existing"]
    assert down["X-Reflection-Status"] == "unavailable"
    assert published == []
    # Nothing was left holding the lock: once the broker is back, the next list queues.
    back = reader_client.get(f"/api/v1/tables/?database={fresh.id}")
    assert back["X-Reflection-Status"] == "queued"


def test_list_answers_when_the_cache_is_down(fresh, reader_client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    response = reader_client.get(f"/api/v1/tables/?database={fresh.id}")

    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["existing"]
    assert response["X-Reflection-Status"] == "unavailable"


def test_two_reflections_at_once_end_in_the_same_state_as_one(registered, user_db):
    user_db.execute(
        "CREATE SCHEMA a; CREATE TABLE a.one (id int); CREATE VIEW a.two AS SELECT 1 AS x"
    )
    results = run_together(2, lambda: runs.reflect(registered.id).as_dict())

    assert sorted(result["added"] for result in results) == [0, 4]
    assert sorted(Table.objects.live().values_list("name", flat=True)) == ["one", "two"]
    assert Table.objects.count() == 2


def test_a_message_delivered_twice_through_the_broker_reflects_once(worker, registered, user_db):
    user_db.execute("CREATE TABLE t (id int)")
    token = "redelivered-token"
    hold_lease(registered.id, token)
    outcomes: list[str] = []

    def finished(task_id: str | None = None, retval: object = None, **_: object) -> None:
        if task_id == token:
            outcomes.append(str(retval))

    task_postrun.connect(finished, weak=False)
    try:
        for _ in range(2):  # the same message again, as a broker redelivers it
            tasks.reflect_db_objects.apply_async((registered.id,), task_id=token)
        wait_until(lambda: len(outcomes) == 2, what="both deliveries to run")
    finally:
        task_postrun.disconnect(finished)

    assert outcomes == ["reflected", "fresh"]
    assert ReflectionRun.objects.filter(database=registered).count() == 1


def test_a_message_whose_lock_is_held_by_another_run_is_a_no_op(registered):
    hold_lease(registered.id, "the-other-run")

    outcome = tasks.reflect_db_objects.apply((registered.id,), task_id="a-duplicate").get()

    assert outcome == "duplicate"
    assert leases.holder(registered.id) == (leases.LeaseState.QUEUED, "the-other-run")
    assert not ReflectionRun.objects.exists()


def test_reflect_now_answers_202_and_the_same_task_while_one_is_running(worker, fresh):
    staff = client_for(make_user("operator", staff=True))
    held = HeldDatabaseRow(fresh)
    try:
        first = staff.post(f"/api/v1/databases/{fresh.id}/reflect/")
        wait_until(
            lambda: leases.holder(fresh.id) == (leases.LeaseState.RUNNING, first.json()["task_id"]),
            what="the task to start",
        )
        second = staff.post(f"/api/v1/databases/{fresh.id}/reflect/")
    finally:
        held.release()

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["status"] == "queued"
    assert second.json() == {"task_id": first.json()["task_id"], "status": "running"}
    wait_until(lambda: leases.holder(fresh.id) is None, what="the task to finish")
    # The second request came while the first ran: the same task reflected once more after.
    assert runs_recorded(database=fresh, trigger="api") == 2  # a run of unchanged ones: one row


def test_an_unreachable_database_is_backed_off_not_hammered(worker, db, reader_client, published):
    database = Database.objects.create(
        name="down", encrypted_url=encrypt("postgresql://u:pw@127.0.0.1:1/gone")
    )

    first = reader_client.get(f"/api/v1/schemas/?database={database.id}")
    wait_until(lambda: helpers.backing_off(database.id), what="the back-off")
    later = reader_client.get(f"/api/v1/schemas/?database={database.id}")

    assert first["X-Reflection-Status"] == "queued"
    assert later["X-Reflection-Status"] == "failed"
    assert len(set(published)) == 1  # the worker's retry is the same task, not a new one
    database.refresh_from_db()
    assert "Connection refused" in database.last_error
    assert ReflectionRun.objects.get(database=database).outcome == "failed"


def test_backoff_grows_and_is_capped():
    waits = [tasks.backoff_seconds(retry) for retry in range(8)]
    assert waits[:4] == [10, 20, 40, 80]
    assert waits[-1] == tasks.RETRY_CAP_SECONDS


def test_a_worker_killed_mid_reflection_leaves_nothing_half_done_and_is_forgotten(
    registered, user_db, reader_client
):
    user_db.execute("CREATE SCHEMA half; CREATE TABLE half.done (id int)")
    token = "killed-mid-run"
    hold_lease(registered.id, token)
    locked = LockedTableInserts()  # reads go on, the table insert waits: stopped between writes
    worker_process = start_worker_process(queue="killable")
    try:
        tasks.reflect_db_objects.apply_async((registered.id,), task_id=token, queue="killable")
        wait_until(locked.blocked, timeout=60, what="the worker to block mid-reflection")
        (backend,) = locked.blocked()
        assert leases.holder(registered.id) == (leases.LeaseState.RUNNING, token)
        os.killpg(worker_process.pid, signal.SIGKILL)
        worker_process.wait(timeout=10)
    finally:
        locked.release()
        stop_process(worker_process)
    # Its server process notices the dead client at its next write and rolls back.
    wait_until(lambda: backend_gone(backend), what="the rollback")

    # Its schema insert went with it; nothing renews its lease, so within the lease the
    # next list queues anew, and a staff request no longer answers with the dead task's id.
    assert not Schema.objects.filter(database=registered).exists()
    wait_until(
        lambda: (
            reader_client.get(f"/api/v1/schemas/?database={registered.id}")["X-Reflection-Status"]
            == "queued"
        ),
        timeout=3 * 3,  # SYNC_LEASE_SECONDS is 3 in the test settings
        what="the lease to lapse",
    )
    staff = client_for(make_user("operator", staff=True))
    assert staff.post(f"/api/v1/databases/{registered.id}/reflect/").json()["task_id"] != token


def test_a_database_still_changing_after_the_reruns_is_handed_to_a_new_task(fresh, published):
    token = "busy-run"
    hold_lease(fresh.id, token)
    changing = threading.Event()

    def keep_changing() -> None:  # what the listener does during a long migration
        while not changing.is_set():
            store.client().set(store.dirty_key(fresh.id), "listener")
            time.sleep(0.001)

    marker = threading.Thread(target=keep_changing)
    marker.start()
    try:
        outcome = tasks.reflect_db_objects.apply((fresh.id,), task_id=token).get()
    finally:
        changing.set()
        marker.join()

    assert outcome == "reflected"
    assert runs_recorded(trigger="listener") == tasks.MAX_RERUNS + 1
    assert len(published) == 1  # the rest goes to a new task, behind other databases'
