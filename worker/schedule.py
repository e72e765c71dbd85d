"""The beat schedule, declared in code and written into django-celery-beat's tables at migrate.

Entries are created when missing and never overwritten, so what an admin edits, disables or
reschedules in the admin survives every later migrate and beat start.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    name: str
    task: str
    every_seconds: int
    description: str


JOBS = (
    # Databases registered by the API, the admin, a command or SYNC_DATABASES are imported
    # within a minute; ones that do not answer are tried again on a later tick.
    Job(
        "Import new databases",
        "sync.tasks.import_new_databases",
        60,
        "Register SYNC_DATABASES and import every database never reflected.",
    ),
    # Databases nobody lists are renewed too, within a minute of their recency key expiring.
    Job(
        "Renew databases",
        "sync.tasks.renew_databases",
        60,
        "Queue one reflection of each database whose recency key expired.",
    ),
    # Changes made behind dbsync's back, where no listener hears them: each imported database
    # is checked every SYNC_POLL_INTERVAL seconds (the tick only picks those due), by its watch's
    # version counter where installed, else by its catalog's fingerprint.
    Job(
        "Poll databases for changes",
        "sync.tasks.poll_databases",
        5,
        "Check each database due for a poll; queue a reflection of those that changed.",
    ),
    # Webhook deliveries whose task was lost (a worker killed, a reflection run by a command) or
    # whose retry is due go within half a minute; each reflection queues its own at once.
    Job(
        "Deliver webhooks",
        "sync.tasks.deliver_webhooks",
        30,
        "Deliver the pending webhook deliveries that are due, in order per database.",
    ),
    # Soft-deleted objects and old history go after SYNC_RETENTION_DAYS.
    Job(
        "Purge dropped objects",
        "sync.tasks.purge_dropped",
        24 * 3600,
        "Delete objects dropped, and reflection history, older than the retention period.",
    ),
)


def install_schedule(**_: Any) -> None:
    """Create the periodic task of each job that does not exist yet."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for job in JOBS:
        interval, _created = IntervalSchedule.objects.get_or_create(
            every=job.every_seconds, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.get_or_create(
            name=job.name,
            defaults={"task": job.task, "interval": interval, "description": job.description},
        )
