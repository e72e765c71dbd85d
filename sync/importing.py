"""The full import of registered databases that were never reflected, with progress."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from sync import reflection, state
from sync.exceptions import CatalogUnavailable, IdentityChanged, UnknownDatabase
from sync.models import Database, ReflectionRun

logger = logging.getLogger(__name__)

# A new database that does not answer is tried again on a later beat tick, not before.
FAILED_IMPORT_BACKOFF_SECONDS = 60

ImportProgress = Callable[[int, int, str], None]  # (done, total, database being imported)


def fan_out(progress: ImportProgress | None = None) -> dict[str, Any]:
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
        freshness = state.request_import(database, override_backoff=False)
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
    skipped: list[str] = field(default_factory=list)  # in flight elsewhere, or backing off
    failed: dict[str, str] = field(default_factory=dict)


def import_databases(
    token: str, only: int | None = None, progress: ImportProgress | None = None
) -> ImportReport:
    """Import every database never imported (or just `only`), one after the other.

    Each holds the database's lease for `token` (free, or taken for this task when it was
    queued), so it never runs beside a queued or running reflection of the database. A database
    backing off after a failure waits, unless this import was asked for it alone (by staff).
    """
    pending = Database.objects.filter(imported_at__isnull=True)
    if only is not None:
        pending = Database.objects.filter(pk=only)
    targets = list(pending.order_by("name").values_list("id", "name"))
    report = ImportReport()
    for done, (database_id, name) in enumerate(targets):
        if progress:
            progress(done, len(targets), name)
        if only is None and state.backing_off(database_id):
            report.skipped.append(name)
            continue
        with state.lease(database_id, token) as lease:
            if lease is None:
                report.skipped.append(name)
                continue
            try:
                reflection.reflect(database_id, trigger=ReflectionRun.Trigger.IMPORT)
                lease.succeeded(timezone.now())
                report.imported.append(name)
            except (CatalogUnavailable, IdentityChanged, UnknownDatabase) as error:
                lease.failed(FAILED_IMPORT_BACKOFF_SECONDS)
                report.failed[name] = str(error)
    if progress:
        progress(len(targets), len(targets), "")
    return report
