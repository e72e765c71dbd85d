"""The periodic checks: renew databases nobody lists, and poll each one's catalog for changes."""

import logging
import random
from collections import Counter

from django.conf import settings
from django.db.models import F

from sync.changes import gate, recency, turns
from sync.exceptions import CatalogUnavailable
from sync.models import Database, ReflectionRun
from sync.remote import catalog

logger = logging.getLogger(__name__)

Trigger = ReflectionRun.Trigger


def renew_expired(bound: int | None = None, spread: float | None = None) -> dict[str, int]:
    """Queue a reflection of the databases whose recency key expired, a bounded slice per tick.

    The most overdue go first. At most `bound` (SYNC_RENEWAL_IN_FLIGHT) renewal reflections are
    queued or running at once, so a thousand databases never open a thousand connections; those
    queued now are spread with jitter over the next `spread` seconds (SYNC_RENEWAL_SPREAD, the
    tick's period) rather than land together. The rest wait for a later tick ("deferred").
    """
    bound = settings.SYNC_RENEWAL_IN_FLIGHT if bound is None else bound
    spread = settings.SYNC_RENEWAL_SPREAD if spread is None else spread
    databases = list(Database.objects.order_by(F("reflected_at").asc(nulls_first=True), "id"))
    recent = recency.recent_among([database.id for database in databases])
    due = [database for database, fresh in zip(databases, recent, strict=True) if not fresh]
    outcome: Counter[str] = Counter()
    if len(due) < len(databases):
        outcome["fresh"] = len(databases) - len(due)
    budget = max(0, bound - turns.renewals_in_flight())
    countdowns = spread_over(spread, min(budget, len(due)))
    for database in due:
        if not countdowns:
            outcome["deferred"] += 1
            continue
        freshness = gate.ensure_fresh(
            database, Trigger.RENEWAL, countdown=countdowns[-1] or None, recent=False
        )
        if freshness.queued_now:
            countdowns.pop()
        outcome[freshness.status] += 1
    return dict(outcome)


def spread_over(seconds: float, count: int) -> list[float]:
    """Return `count` countdowns, one in each equal slice of `seconds`, at random within it."""
    if count == 0:
        return []
    width = seconds / count
    return [round(width * (slot + random.random()), 3) for slot in reversed(range(count))]  # noqa: S311


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
    for database_id in turns.take_poll_turns(databases, interval):
        outcome[check(databases[database_id])] += 1
    return dict(outcome)


def check(database: Database) -> str:
    """Compare the database's catalog with the one last applied; say what was found."""
    try:
        if not changed(database):
            return "unchanged"
    except CatalogUnavailable as error:
        gate.record_unreachable(database.id, str(error))
        return "unreachable"
    gate.notice_change(database, Trigger.POLL)
    return "changed"


def changed(database: Database) -> bool:
    """Whether DDL ran since the last reflection: by the watch's counter where it is installed
    (one row, whatever the size of the catalog), else by the catalog's fingerprint."""
    if database.watch_installed_at is not None:
        version = catalog.read_version(database.source)
        if version is not None:
            return version != database.catalog_version
    fingerprint = catalog.read_fingerprint(database.source)
    return fingerprint.text != database.catalog_fingerprint
