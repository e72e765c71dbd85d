"""The API's reflection history (databases/ID/runs/) and task progress (tasks/ID/)."""

import uuid

import pytest
from celery import current_app

from sync.changes import gate
from sync.models import Database, ReflectionRun
from sync.reflection import runs
from tests.helpers import client_for, wait_until


@pytest.fixture
def twice_reflected(registered: Database, user_db) -> Database:
    user_db.execute("CREATE TABLE first (id int)")
    runs.reflect(registered.id)
    user_db.execute("CREATE TABLE second (id int)")
    runs.reflect(registered.id)
    return registered


@pytest.mark.django_db
def test_runs_lists_the_history_latest_first(twice_reflected, reader):
    response = reader.get(f"/api/v1/databases/{twice_reflected.id}/runs/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    latest, first = body["results"]
    assert (latest["added"], latest["unchanged"], first["added"]) == (1, 2, 2)
    assert latest["trigger"] == "command"
    assert latest["trigger_display"] == "Command"
    assert latest["outcome"] == "success"
    assert isinstance(latest["duration_ms"], int)
    assert latest["error"] == ""


@pytest.mark.django_db
def test_runs_paginates(twice_reflected, reader):
    body = reader.get(f"/api/v1/databases/{twice_reflected.id}/runs/?limit=1&offset=1").json()
    assert (body["count"], len(body["results"]), body["results"][0]["added"]) == (2, 1, 2)


@pytest.mark.django_db
def test_runs_of_an_unknown_database_is_a_404(reader):
    assert reader.get("/api/v1/databases/987654/runs/").status_code == 404


@pytest.mark.django_db
def test_task_progress_needs_staff(reader):
    task_id = uuid.uuid4().hex
    assert client_for(None).get(f"/api/v1/tasks/{task_id}/").status_code == 401
    assert reader.get(f"/api/v1/tasks/{task_id}/").status_code == 403


@pytest.mark.django_db
def test_a_malformed_task_id_is_a_404(staff):
    assert staff.get("/api/v1/tasks/not-a-task/").status_code == 404


@pytest.mark.django_db
def test_an_unknown_task_is_a_404(staff):
    response = staff.get(f"/api/v1/tasks/{uuid.uuid4().hex}/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_a_queued_task_not_yet_started_is_pending(staff, registered, routed):
    queued = gate.request_reflection(registered, ReflectionRun.Trigger.API)

    assert staff.get(f"/api/v1/tasks/{queued.task_id}/").json() == {
        "id": queued.task_id, "state": "PENDING", "done": None, "total": None, "current": "",
        "result": None, "error": "",
    }  # fmt: skip


@pytest.mark.django_db
def test_a_task_in_progress_reports_done_and_total(staff):
    task_id = uuid.uuid4().hex
    progress = {"done": 1, "total": 3, "current": "shop"}
    current_app.backend.store_result(task_id, progress, "PROGRESS")
    body = staff.get(f"/api/v1/tasks/{task_id}/").json()
    assert (body["state"], body["done"], body["total"], body["current"]) == (
        "PROGRESS", 1, 3, "shop",
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_queued_import_reports_its_result(worker, registered, staff):
    queued = gate.request_import(registered)
    assert queued.queued_now

    def finished() -> bool:
        return staff.get(f"/api/v1/tasks/{queued.task_id}/").json()["state"] == "SUCCESS"

    wait_until(finished, timeout=30, what="the import to finish")
    body = staff.get(f"/api/v1/tasks/{queued.task_id}/").json()
    assert body["result"] == {"imported": ["userdb"], "skipped": [], "failed": {}}


@pytest.mark.django_db
def test_a_failed_task_shows_no_foreign_message(staff):
    task_id = uuid.uuid4().hex
    leak = RuntimeError("could not connect to postgresql://u:hunter2@db/x")
    current_app.backend.store_result(task_id, leak, "FAILURE")
    body = staff.get(f"/api/v1/tasks/{task_id}/").json()
    assert body["state"] == "FAILURE"
    assert body["error"] == "RuntimeError: see the worker's log"
