"""Imports: queue one for each database never reflected, and import one database, with progress."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from sync.changes import gate, leases
from sync.exceptions import CatalogUnavailable, IdentityChanged, UnknownDatabase
from sync.models import Database, ReflectionRun
from sync.reflection import runs

logger = logging.getLogger(__name__)

# A new database that does not answer is tried again on a later beat tick, not before.
FAILED_IMPORT_BACKOFF_SECONDS = 60

ImportProgress = Callable[[int, int, str], None]  # (done, total, database being imported)


def queue_new_imports(progress: ImportProgress | None = None) -> dict[str, Any]:
    """Queue one import task per database never imported, through the gate.

    Each runs on its own (a slow or dead database holds up no other) on whichever bulk worker
    is free, and reports its own progress; this reports how far the queuing went. Skipped: in
    flight already, backing off after a failure, or Redis or the broker down.
    """
    pending = list(Database.objects.filter(imported_at__isnull=True).order_by("name"))
    queued: dict[str, str] = {}  # database name -> the task id that imports it
    skipped: list[str] = []
    for done, database in enumerate(pending):
        if progress:
            progress(done, len(pending), database.name)
        freshness = gate.request_import(database, override_backoff=False)
        if freshness.queued_now and freshness.task_id:
            queued[database.name] = freshness.task_id
        else:
            skipped.append(database.name)
    if progress:
        progress(len(pending), len(pending), "")
    return {"queued": sorted(queued), "tasks": queued, "skipped": skipped}


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in flight elsewhere
    failed: dict[str, str] = field(default_factory=dict)


def import_one(
    token: str, database_id: int, progress: ImportProgress | None = None
) -> ImportReport:
    """Import one registered database (none if it was deleted since), holding its lease for token.

    The lease is free, or was taken for this task when it was queued, so the import never runs
    beside a queued or running reflection of the database. Whether a back-off lets it run was
    decided when it was queued (sync.changes.gate.request_import).
    """
    report = ImportReport()
    name = Database.objects.filter(pk=database_id).values_list("name", flat=True).first()
    if name is None:
        return report
    if progress:
        progress(0, 1, name)
    with leases.lease(database_id, token) as lease:
        if lease is None:
            report.skipped.append(name)
            return report
        try:
            runs.reflect(database_id, trigger=ReflectionRun.Trigger.IMPORT)
            lease.succeeded(timezone.now())
            report.imported.append(name)
        except (CatalogUnavailable, IdentityChanged, UnknownDatabase) as error:
            lease.failed(FAILED_IMPORT_BACKOFF_SECONDS)
            report.failed[name] = str(error)
    if progress:
        progress(1, 1, "")
    return report
