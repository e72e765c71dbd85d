"""The beat schedule: declared in code, written at migrate, and an admin's edits survive."""

import pytest
from celery import current_app
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from worker.schedule import JOBS

pytestmark = pytest.mark.django_db(transaction=True)


def test_after_migrate_every_job_exists_and_is_enabled():
    tasks = dict(PeriodicTask.objects.values_list("task", "enabled"))
    assert {job.task for job in JOBS} <= set(tasks)
    assert all(tasks[job.task] for job in JOBS)


def test_an_admin_edit_survives_migrate_and_a_beat_start():
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.filter(task="sync.tasks.renew_databases").update(
        interval=hourly, enabled=False
    )

    call_command("migrate", verbosity=0)
    DatabaseScheduler(app=current_app).setup_schedule()  # what beat does when it starts

    edited = PeriodicTask.objects.get(task="sync.tasks.renew_databases")
    assert (edited.interval, edited.enabled) == (hourly, False)
    assert PeriodicTask.objects.filter(task="sync.tasks.renew_databases").count() == 1


def test_registered_task_names_are_pinned():
    import sync.tasks  # noqa: F401  (registers the tasks with the app)

    names = {name for name in current_app.tasks if name.startswith("sync.")}
    assert names == {
        "sync.tasks.reflect_db_objects",
        "sync.tasks.import_new_databases",
        "sync.tasks.import_registered_database",
        "sync.tasks.import_database",  # consumed for messages queued before it was split
        "sync.tasks.renew_databases",
        "sync.tasks.poll_databases",
        "sync.tasks.purge_dropped",
        "sync.tasks.deliver_webhooks",
    }
