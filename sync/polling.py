"""The periodic checks: renew databases nobody lists, and poll each one's catalog for changes."""

import logging
from collections import Counter

from django.conf import settings

from sync import catalog, state
from sync.exceptions import CatalogUnavailable
from sync.models import Database, ReflectionRun

logger = logging.getLogger(__name__)

Trigger = ReflectionRun.Trigger


def renew_expired() -> dict[str, int]:
    """Pass every registered database through the gate: queue those whose key expired."""
    outcome: Counter[str] = Counter()
    for database in Database.objects.all():
        outcome[state.ensure_fresh(database, Trigger.RENEWAL).status] += 1
    return dict(outcome)


def poll_due() -> dict[str, int]:
    """Check each imported database whose poll is due; queue a reflection of those changed.

    Due means not checked for SYNC_POLL_INTERVAL seconds, not backing off and with no
    reflection in flight (that one will see the change anyway).
    """
    interval = settings.SYNC_POLL_INTERVAL
    if interval == 0:
        return {}
    databases = {d.id: d for d in Database.objects.exclude(imported_at=None)}
    outcome: Counter[str] = Counter()
    for database_id in state.take_poll_turns(databases, interval):
        outcome[check(databases[database_id])] += 1
    return dict(outcome)


def check(database: Database) -> str:
    """Compare the database's catalog with the one last applied; say what was found."""
    try:
        if not changed(database):
            return "unchanged"
    except CatalogUnavailable as error:
        state.record_unreachable(database.id, str(error))
        return "unreachable"
    state.notice_change(database, Trigger.POLL)
    return "changed"


def changed(database: Database) -> bool:
    """Whether DDL ran since the last reflection: by the watch's counter where it is installed
    (one row, whatever the size of the catalog), else by the catalog's fingerprint."""
    if database.watch_installed_at is not None:
        version = catalog.read_version(database.id, database.url)
        if version is not None:
            return version != database.catalog_version
    fingerprint = catalog.read_fingerprint(database.id, database.url)
    return fingerprint.text != database.catalog_fingerprint
