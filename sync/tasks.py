"""Celery tasks: thin wrappers over reflection, taking ids and re-reading state."""

import contextlib
import logging
from functools import partial
from typing import Any, TypeAlias

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from sync import metrics
from sync.changes import (
    deliveries,
    gate,
    importing,
    leases,
    polling,
    recency,
    store,
    task_names,
    turns,
)
from sync.exceptions import CatalogUnavailable, IdentityChanged, UnknownDatabase
from sync.models import Database, ReflectionRun
from sync.ops import webhooks
from sync.reflection import feed, registry, retention, runs

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 10
RETRY_CAP_SECONDS = 600
MAX_RETRIES = 5
# Changes noticed while a run works are reflected by the same task this many times at most;
# past that it queues a new task, so that a long migration cannot hold a worker to itself.
MAX_RERUNS = 3


def backoff_seconds(retries: int) -> int:
    """Return the wait before retry number `retries` + 1: 10 s, 20 s, 40 s, ... up to the cap."""
    return int(min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**retries))


# Task annotations are quoted: celery-types makes Task generic, but Celery's class takes no type
# arguments at run time.
def run_id(task: "Task[..., Any]") -> str:
    """Return the id of the task's current run, the token of the leases it takes."""
    run = task.request.id
    if run is None:  # a plain call of the function, outside any run Celery started
        raise RuntimeError(f"{task.name} has no task id: run it with delay() or apply()")
    return run


@shared_task(
    name=task_names.REFLECT,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.SYNC_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.SYNC_TASK_TIME_LIMIT,
)
def reflect_db_objects(
    self: "Task[..., str]",
    database_id: int,
    force: bool = False,
    trigger: str = ReflectionRun.Trigger.LIST,
) -> str:
    """Reflect a database unless it is fresh or another run of it holds the lease.

    A change noticed while it runs (the dirty mark) is reflected again before the lease goes.
    """
    try:
        return _reflect(self, database_id, force, trigger)
    finally:
        with contextlib.suppress(*store.STATE_ERRORS):
            turns.reflection_ended(database_id)  # a renewal's slot is free again


def _reflect(self: "Task[..., str]", database_id: int, force: bool, trigger: str) -> str:
    with leases.lease(database_id, run_id(self)) as lease:
        if lease is None:
            return "duplicate"
        outcome = _reflect_held(self, lease, database_id, force, trigger)
    if lease.left_dirty:
        # Still changing after MAX_RERUNS, or a change noticed after the last look at the mark:
        # a new task takes the rest, behind other databases'.
        requeue = Database.objects.filter(pk=database_id).first()
        if requeue is not None:
            gate.notice_change(requeue, trigger)
    return outcome


def _reflect_held(
    self: "Task[..., str]", lease: leases.Lease, database_id: int, force: bool, trigger: str
) -> str:
    if not force and recency.is_recent(database_id) and not lease.dirty():
        return "fresh"
    try:
        for _ in range(MAX_RERUNS + 1):
            # Cleared before the snapshot: a change after this point marks it again.
            trigger = lease.take_dirty() or trigger
            result = runs.reflect(database_id, trigger=trigger)
            if result.events:  # the delivery pass records them first (sync.reflection.feed)
                deliveries.queue_delivery(database_id)
            heard = lease.succeeded(timezone.now())
            if heard is not None:
                metrics.DDL_TO_VISIBLE.labels(trigger).observe(heard)
            if not lease.dirty():
                return "reflected"
    except CatalogUnavailable as error:
        # The database is not hammered meanwhile: every caller sees the back-off and waits.
        delay = backoff_seconds(self.request.retries)
        if self.request.retries >= MAX_RETRIES:
            lease.failed(delay)
            return "unavailable"
        lease.retry_after(delay)
        raise self.retry(exc=error, countdown=delay) from None
    except (IdentityChanged, UnknownDatabase) as error:
        logger.warning("reflection of database %s refused: %s", database_id, error)
        return "refused"
    return "reflected"


# Each import task reports done/total as its state while it works (GET tasks/ID/).
IMPORT_SOFT_TIME_LIMIT = 30 * 60
# The import tasks' self; a string, as the annotations above run_id say.
ImportTask: TypeAlias = "Task[..., dict[str, object]]"


@shared_task(
    name=task_names.IMPORT_NEW,
    bind=True,
    soft_time_limit=IMPORT_SOFT_TIME_LIMIT,
    time_limit=IMPORT_SOFT_TIME_LIMIT + 60,
)
def import_new_databases(self: ImportTask) -> dict[str, object]:
    """Register SYNC_DATABASES, then queue an import of each database never imported."""
    return _import_new(self)


@shared_task(
    name=task_names.IMPORT_ONE,
    bind=True,
    soft_time_limit=IMPORT_SOFT_TIME_LIMIT,
    time_limit=IMPORT_SOFT_TIME_LIMIT + 60,
)
def import_registered_database(self: ImportTask, database_id: int) -> dict[str, object]:
    """Import one registered database now (its reflection, trigger `import`)."""
    return _import_one(self, database_id)


@shared_task(
    name=task_names.IMPORT_BEFORE_SPLIT,
    bind=True,
    soft_time_limit=IMPORT_SOFT_TIME_LIMIT,
    time_limit=IMPORT_SOFT_TIME_LIMIT + 60,
)
def import_database(self: ImportTask, database_id: int | None = None) -> dict[str, object]:
    """A message queued by an earlier version: do the job that its arguments named."""
    if database_id is None:
        return _import_new(self)
    return _import_one(self, database_id)


def _import_new(task: ImportTask) -> dict[str, object]:
    registry.register_configured()
    return importing.queue_new_imports(partial(_report_progress, task))


def _import_one(task: ImportTask, database_id: int) -> dict[str, object]:
    report = importing.import_one(run_id(task), database_id, partial(_report_progress, task))
    return {"imported": report.imported, "skipped": report.skipped, "failed": report.failed}


def _report_progress(task: ImportTask, done: int, total: int, current: str) -> None:
    task.update_state(state="PROGRESS", meta={"done": done, "total": total, "current": current})


@shared_task(name=task_names.RENEW, soft_time_limit=60, time_limit=90)
def renew_databases() -> dict[str, int]:
    """Queue a reflection of every database whose recency key expired (deduplicated)."""
    return polling.renew_expired()


@shared_task(name=task_names.POLL, soft_time_limit=60, time_limit=90)
def poll_databases() -> dict[str, int]:
    """Check the databases due for a poll; queue a reflection of those that changed."""
    return polling.poll_due()


@shared_task(name=task_names.PURGE, soft_time_limit=600, time_limit=660)
def purge_dropped() -> dict[str, int]:
    """Delete objects dropped, and history recorded, before the retention period."""
    return retention.purge_expired()


# A retry's countdown stays far below the broker's visibility timeout (see FIELD-NOTES): a
# longer wait is left to the beat job's next pass.
LONGEST_DELIVERY_COUNTDOWN = 300


@shared_task(name=task_names.DELIVER, soft_time_limit=120, time_limit=150, ignore_result=True)
def deliver_webhooks(database_id: int | None = None) -> dict[str, int]:
    """Record the events the reflections left (of one database, or all) with the deliveries
    they owe, deliver the due deliveries in order per database, and queue the next pass for
    when a failed one is due again."""
    feed.record(database_id)
    report = webhooks.deliver_pending(database_id)
    if report.next_due is not None:
        wait = (report.next_due - timezone.now()).total_seconds()
        deliveries.queue_delivery(database_id, min(max(wait, 0.5), LONGEST_DELIVERY_COUNTDOWN))
    return report.outcomes
