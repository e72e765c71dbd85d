"""/metrics: Prometheus text for staff or the metrics token, every figure the operator needs."""

from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from sync.changes import gate, leases, listening, recency
from sync.models import Database, ReflectionRun
from sync.reflection import feed, registry, runs
from sync.tasks import reflect_db_objects
from tests.helpers import (
    process_environment,
    start_procfile_role,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

METRICS = (
    "dbsync_reflection_duration_seconds",
    "dbsync_reflections",
    "dbsync_last_success_timestamp_seconds",
    "dbsync_objects",
    "dbsync_listener_connected",
    "dbsync_listener_reconnects",
    "dbsync_listener_databases",
    "dbsync_ddl_to_visible_seconds",
    "dbsync_queue_depth",
    "dbsync_gate_decisions",
    "dbsync_renewals_in_flight",
    # django-prometheus: requests by view and status, queries of the service database.
    "django_http_requests_latency_seconds_by_view_method",
    "django_http_responses_total_by_status_view_method",
    "django_db_execute",
)


def scrape(client: APIClient, **headers: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(response.content.decode())
    }


def test_metrics_show_every_figure_after_a_reflection_and_a_list(
    worker, registered: Database, user_db, reader, staff
):
    user_db.execute("CREATE TABLE counted (id int)")
    gate.notice_change(registered, ReflectionRun.Trigger.LISTENER)  # as a DDL notice would
    wait_until(lambda: recency.is_recent(registered.id), what="the reflection")
    wait_until(lambda: leases.holder(registered.id) is None, what="the task to end")
    assert reader.get(f"/api/v1/tables/?database={registered.id}").status_code == 200

    families = scrape(staff)

    assert set(METRICS) <= set(families)
    assert ({"database": "userdb", "kind": "relation"}, 1.0) in families["dbsync_objects"]
    assert families["dbsync_listener_connected"] == []  # polled: no listener to be connected
    assert {"queue": "interactive"} in [labels for labels, _ in families["dbsync_queue_depth"]]
    successes = dict(
        (labels["trigger"], value)
        for labels, value in families["dbsync_reflections"]
        if labels.get("outcome") == "success"
    )
    assert successes["listener"] >= 1
    visible = [s for s in families["dbsync_ddl_to_visible_seconds"] if s[0].get("le") == "+Inf"]
    assert any(labels["trigger"] == "listener" and value >= 1 for labels, value in visible)
    decisions = {
        (labels["decision"], labels["trigger"]) for labels, _ in families["dbsync_gate_decisions"]
    }
    assert {("queued", "listener"), ("fresh", "list")} <= decisions
    last = dict(
        (labels["database"], v) for labels, v in families["dbsync_last_success_timestamp_seconds"]
    )
    registered.refresh_from_db()
    assert registered.reflected_at is not None
    assert last["userdb"] == pytest.approx(registered.reflected_at.timestamp())


def test_listener_connected_is_exported_for_watched_databases_only(
    registered: Database, user_db, staff, scratch_factory
):
    watched, _ = registry.register("watcheddb", registered.url)
    Database.objects.filter(pk=watched.pk).update(watch_installed_at=timezone.now())

    families = scrape(staff)

    assert families["dbsync_listener_connected"] == [({"database": "watcheddb"}, 0.0)]


def test_a_listener_reconnect_is_counted(registered, staff):
    listening.count_reconnect(registered.id)
    listening.count_reconnect(registered.id)

    families = scrape(staff)

    assert ({"database": "userdb"}, 2.0) in families["dbsync_listener_reconnects"]


def test_metrics_refuse_anonymous_readers_and_readers_who_are_not_staff(db, reader):
    assert APIClient().get("/metrics").status_code == 401
    assert reader.get("/metrics").status_code == 403


def test_metrics_open_to_the_metrics_token(db, settings):
    settings.SYNC_METRICS_TOKEN = "scrape-me"
    assert "dbsync_queue_depth" in scrape(APIClient(), HTTP_AUTHORIZATION="Bearer scrape-me")
    wrong = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer guess")
    assert wrong.status_code == 401


def test_without_a_token_set_no_bearer_token_opens_metrics(db, settings):
    settings.SYNC_METRICS_TOKEN = ""
    assert APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code in {401, 403}


def test_a_worker_started_by_the_procfile_writes_its_reflection_metrics_for_the_scrape(
    registered: Database, user_db, tmp_path
):
    # As under `make run`: the directory is named by the settings, not by the environment
    # the `celery` command starts in.
    env = {**process_environment(), "DBSYNC_TEST_METRICS_DIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR")
    # A queue of its own: no other worker (the test session's) takes the task.
    worker_process = start_procfile_role(
        "worker",
        env,
        replace={"--queues interactive": "--queues metrics-test", "interactive@%h": "m@%h"},
    )
    try:
        reflect_db_objects.apply_async(
            kwargs={"database_id": registered.id, "force": True, "trigger": "api"},
            queue="metrics-test",
        )
        wait_until(lambda: recency.is_recent(registered.id), timeout=60, what="the reflection")
        wait_until(lambda: leases.holder(registered.id) is None, what="the task to end")
    finally:
        stop_process(worker_process)

    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected, path=str(tmp_path))
    text = generate_latest(collected).decode()
    assert 'dbsync_reflections_total{outcome="success",trigger="api"} 1.0' in text
    assert 'dbsync_reflection_duration_seconds_count{trigger="api"} 1.0' in text


def test_events_waiting_for_the_change_feed_are_counted_until_it_records_them(
    registered, user_db, staff
):
    runs.reflect(registered.id)  # the first import: no events
    user_db.execute("CREATE TABLE a (id int); CREATE TABLE b (id int)")
    runs.reflect(registered.id)
    families = scrape(staff)
    assert families["dbsync_change_events_waiting"] == [({"database": "userdb"}, 2.0)]
    [(_, age)] = families["dbsync_change_events_waiting_oldest_seconds"]
    assert 0 <= age < 60
    feed.record(registered.id)
    assert scrape(staff)["dbsync_change_events_waiting"] == []
