"""Confirm, without the database's lock, that a database holds nothing its models lack: most
reflections find nothing to do, and this is all they cost.

One round trip reads what tells: for a database without the watch, the identity and the
catalog's fingerprint, which must be the one last applied; for a watched one (and a run that
may read only what the change log names), the identity and whether the log holds entries past
the position last applied, with no gap. Then one statement stamps the database and its
history, only while its row still says what this process last knew of it (URL, identity,
fingerprint, log position; see history.CONFIRM_SQL). Anything else (a fingerprint not known,
another identity, entries to apply, a reflection that changed the models meanwhile) is left to
the reflection under the lock, which reads everything again. That run makes three to five round
trips to the database and four to the service's where this one makes one and two: at 1,000
relations a no-change run took 2.9 times the bare catalog read, and takes 1.7 times it (2.4 ms
against 1.4 ms; at 10,000, 0.7 times: `bench/reflect.py --sizes 1000 10000`); a watched
database's targeted run that finds nothing logged took 3.7 ms and takes 2.2 ms, at 1,000
relations as at 100,000 (`bench/ddl_latency.py --catalog-sizes`, "nothing_logged").

What this process last knew of a database is kept in memory, and is only ever a guess that the
statement proves or refutes: reading the row first cost 0.5 of the 2.6 ms such a run took at
1,000 relations.
"""

from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

from django.utils import timezone

from sync.models import Database
from sync.reflection import history
from sync.reflection.diff import Counts
from sync.remote import catalog, changelog
from sync.remote.changelog import Position
from sync.remote.connections import Source


@dataclass(frozen=True)
class Known:
    """What a reflection of this process last applied to a database, as its row says."""

    name: str
    source: Source
    encrypted_url: str
    database_oid: int | None
    server_identifier: str
    watched: bool
    fingerprint: str  # empty: not known (a watched database's targeted runs leave it so)
    position: Position  # the change log's, where watched

    def expected(self) -> dict[str, Any]:
        """The columns the database's row must still hold (see history.CONFIRM_SQL)."""
        return {
            "encrypted_url": self.encrypted_url,
            "database_oid": self.database_oid,
            "server_identifier": self.server_identifier,
            "watched": self.watched,
            "fingerprint": self.fingerprint,
            "log_position": self.position.id,
            "log_snapshot": self.position.snapshot,
            "log_trimmed": self.position.trimmed,
        }


class Found(NamedTuple):
    """What a check found, where it found nothing to do."""

    version: int | None
    log_snapshot: str  # the snapshot to store as the log's position (unwatched: unchanged)
    objects: int  # the catalog's objects, where the fingerprint counted them


# The databases reflected most recently, the latest last; a process that reflects more forgets
# the oldest, which then cost one more read of their row.
KEPT = 1000
_known: OrderedDict[int, Known] = OrderedDict()


class Confirmed(NamedTuple):
    name: str  # the database's
    counts: Counts
    targeted: bool  # confirmed by the change log (a watched database), not the fingerprint


def confirm(
    database_id: int, trigger: str, started_at: datetime, targeted: bool
) -> Confirmed | None:
    """Return what a run that found nothing to do recorded; None where that could not be told
    this way. `targeted`: the run may rely on the change log (without it, a watched database's
    catalog is read whole)."""
    known = _known.get(database_id) or load(database_id)
    if known is None or (known.watched and not targeted):
        return None
    found = check_log(known) if known.watched else check_fingerprint(known)
    if found is None:
        forget(database_id)
        return None
    counts = Counts(unchanged=found.objects)
    run = history.Run(database_id, trigger, started_at, timezone.now(), counts, known.watched)
    if not history.confirm_unchanged(run, known.expected(), found.version, found.log_snapshot):
        forget(database_id)
        return None
    # The row now holds the snapshot this run read as the log's position.
    _known[database_id] = replace(
        known, position=replace(known.position, snapshot=found.log_snapshot)
    )
    _known.move_to_end(database_id)
    return Confirmed(known.name, counts, known.watched)


def check_fingerprint(known: Known) -> Found | None:
    read = catalog.check_catalog(known.source)
    if not same_identity(known, read.identity) or read.fingerprint.text != known.fingerprint:
        return None
    return Found(read.version, known.position.snapshot, read.fingerprint.objects)


def check_log(known: Known) -> Found | None:
    check = catalog.check_log(known.source, known.position)
    if check is None or check.pending or not same_identity(known, check.identity):
        return None
    if changelog.has_gap(known.position, check.here, check.version):
        return None
    return Found(check.version, check.here.snapshot, 0)


def same_identity(known: Known, identity: catalog.Identity) -> bool:
    return (identity.database_oid, identity.server_identifier) == (
        known.database_oid,
        known.server_identifier,
    )


def load(database_id: int) -> Known | None:
    """Read what the database's row says, if it was imported."""
    database = Database.objects.filter(pk=database_id).exclude(imported_at=None).first()
    return None if database is None else keep(database)


def remember(database: Database, stored: dict[str, Any]) -> None:
    """Remember what a reflection under the lock stored on the database, once committed."""
    for name, value in stored.items():
        setattr(database, name, value)
    keep(database)


def keep(database: Database) -> Known | None:
    """Remember what the database's row says now, if a check can confirm it; else forget it."""
    watched = database.watch_installed_at is not None
    position = Position(database.log_position, database.log_snapshot, database.log_trimmed)
    # What a check compares with: the log's position where watched, else the fingerprint.
    if watched:
        comparable = position.id is not None and bool(position.snapshot)
    else:
        comparable = bool(database.catalog_fingerprint)
    if not comparable:
        forget(database.id)
        return None
    known = Known(
        name=database.name,
        source=database.source,
        encrypted_url=database.encrypted_url,
        database_oid=database.database_oid,
        server_identifier=database.server_identifier,
        watched=watched,
        fingerprint=database.catalog_fingerprint,
        position=position,
    )
    _known[database.id] = known
    _known.move_to_end(database.id)
    while len(_known) > KEPT:
        _known.popitem(last=False)
    return known


def forget(database_id: int) -> None:
    _known.pop(database_id, None)
