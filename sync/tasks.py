"""Celery tasks: thin wrappers over reflection, taking ids and re-reading state."""

import logging

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from sync import freshness, importing, recency, reflection, registry, retention
from sync.exceptions import CatalogUnavailable, IdentityChanged, UnknownDatabase
from sync.models import ReflectionRun
from sync.recency import LockState

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 10
RETRY_CAP_SECONDS = 600
MAX_RETRIES = 5


def backoff_seconds(retries: int) -> int:
    """Return the wait before retry number `retries` + 1: 10 s, 20 s, 40 s, ... up to the cap."""
    return int(min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**retries))


@shared_task(
    name=freshness.REFLECT_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.SYNC_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.SYNC_TASK_TIME_LIMIT,
)
def reflect_db_objects(self: Task, database_id: int, force: bool = False) -> str:
    """Reflect a database unless it is fresh or another run of it holds the lock."""
    token = self.request.id
    if not recency.claim(database_id, token, LockState.RUNNING, settings.SYNC_LOCK_TTL):
        return "duplicate"
    retrying = False
    try:
        if not force and recency.is_recent(database_id):
            return "fresh"
        reflection.reflect(database_id, trigger=ReflectionRun.Trigger.TASK)
        recency.mark_recent(database_id, timezone.now())
        return "reflected"
    except CatalogUnavailable as error:
        # The database is not hammered meanwhile: list views see the back-off and wait.
        delay = backoff_seconds(self.request.retries)
        recency.back_off(database_id, delay)
        if self.request.retries >= MAX_RETRIES:
            return "unavailable"
        retrying = True
        recency.claim(database_id, token, LockState.RETRYING, delay + settings.SYNC_LOCK_TTL)
        raise self.retry(exc=error, countdown=delay) from None
    except (IdentityChanged, UnknownDatabase) as error:
        logger.warning("reflection of database %s refused: %s", database_id, error)
        return "refused"
    finally:
        if not retrying:
            recency.release(database_id, token)


@shared_task(
    name=freshness.IMPORT_TASK,
    bind=True,
    soft_time_limit=30 * 60,
    time_limit=31 * 60,
)
def import_database(self: Task, database_id: int | None = None) -> dict[str, object]:
    """Import the databases never imported (or one), reporting done/total as task state."""

    def progress(done: int, total: int, current: str) -> None:
        meta = {"done": done, "total": total, "current": current}
        self.update_state(state="PROGRESS", meta=meta)

    registry.register_configured()
    report = importing.import_databases(self.request.id, only=database_id, progress=progress)
    return {"imported": report.imported, "skipped": report.skipped, "failed": report.failed}


@shared_task(name="sync.tasks.renew_databases", soft_time_limit=60, time_limit=90)
def renew_databases() -> dict[str, int]:
    """Queue a reflection of every database whose recency key expired (deduplicated)."""
    return freshness.renew_expired()


@shared_task(name="sync.tasks.purge_dropped", soft_time_limit=600, time_limit=660)
def purge_dropped() -> dict[str, int]:
    """Delete objects dropped, and history recorded, before the retention period."""
    return retention.purge_expired()
