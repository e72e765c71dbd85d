"""Reflect one database: read its catalog, diff it by oid, write the changes and the run, in one
transaction."""

import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from sync import metrics
from sync.exceptions import CatalogUnavailable, IdentityChanged, UnknownDatabase
from sync.models import Database, ReflectionRun
from sync.reflection import events, history, names, signals, unchanged, writes
from sync.reflection.diff import (
    Changes,
    Counts,
    diff,
    diff_targeted,
    load_state,
    load_targeted_state,
    partitions_unread,
)
from sync.remote import catalog, changelog
from sync.remote.catalog import CatalogRead, Identity
from sync.remote.changelog import LogEntry, LogRead, Position

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReflectionResult:
    database: str
    counts: Counts
    duration_ms: int
    # The change log's entries this run applied (none in poll mode or when no log was read),
    # and whether it read only the objects they name.
    entries: tuple[LogEntry, ...] = ()
    targeted: bool = False
    events: int = 0  # change events left for the change feed (sync.reflection.feed) to record

    def as_dict(self) -> dict[str, Any]:
        return {"database": self.database, **asdict(self.counts), "duration_ms": self.duration_ms}


def identity_fields(database: Database, identity: Identity, accept_new: bool) -> dict[str, Any]:
    """Return the identity to store; raise IdentityChanged if it moved and that is not accepted."""
    same = database.database_oid in (None, identity.database_oid) and (
        not database.server_identifier
        or not identity.server_identifier
        or database.server_identifier == identity.server_identifier
    )
    if not same and not accept_new:
        raise IdentityChanged(
            f"database {database.name!r} now points at another database or server "
            f"(database oid {database.database_oid} -> {identity.database_oid}, "
            f"system identifier {database.server_identifier or '?'} -> "
            f"{identity.server_identifier or '?'}): its oids no longer match, so nothing was "
            f"applied. If this is intended, run: manage.py reflect {database.name} "
            "--accept-new-identity"
        )
    return {"database_oid": identity.database_oid, "server_identifier": identity.server_identifier}


STEPS = ("reading the catalog", "comparing with the models", "writing the changes", "done")

StepProgress = Callable[[int, int, str], None]  # (steps done, steps in all, what comes next)


def reflect(
    database_id: int,
    trigger: str = ReflectionRun.Trigger.COMMAND,
    accept_new_identity: bool = False,
    progress: StepProgress | None = None,
) -> ReflectionResult:
    """Bring the models of a database in step with its catalog, in one transaction.

    The row lock on the database serializes reflections of it across processes, and the
    catalog is read under that lock, so the later of two runs sees the earlier one's result.
    A run that finds nothing to do needs no lock (see unchanged.confirm).
    """
    started_at = timezone.now()
    clock = time.perf_counter()

    def step(done: int) -> None:
        if progress is not None:
            progress(done, len(STEPS) - 1, STEPS[done])

    try:
        targeted = trigger in TARGETED_TRIGGERS
        confirmed = (
            None
            if accept_new_identity or trigger in CHANGE_KNOWN
            else unchanged.confirm(database_id, trigger, started_at, targeted)
        )
        if confirmed is not None:
            transaction.on_commit(partial(announce, database_id))
            name, counts, by_log = confirmed
            return finished(name, counts, trigger, clock, targeted=by_log)
        with collector_paused(), transaction.atomic():
            database = lock_database(database_id)
            changes, stored, read = compute_changes(database, trigger, accept_new_identity, step)
            log = read.log
            step(2)
            # The first import is what the database holds, not a change: it has no events.
            before = events.read_before(changes) if database.imported_at else None
            written = record(database, changes, stored, read, trigger, started_at)
            entries = () if log is None else log.entries
            seen_at = timezone.now()
            described = record_events(database.id, changes, before, written, seen_at, entries)
            transaction.on_commit(partial(names.remember, database.id, changes.names))
            if log is not None and trim_due(database.log_position, log):
                applied = partial(changelog.mark_applied, database.source, log.applied_snapshot)
                transaction.on_commit(applied)
            transaction.on_commit(partial(unchanged.remember, database, stored))
            transaction.on_commit(partial(announce, database.id))
    except (CatalogUnavailable, IdentityChanged) as error:
        record_failure(database_id, trigger, started_at, error)
        raise
    step(3)
    count_drift(trigger, log, changes.counts)
    return finished(
        database.name, changes.counts, trigger, clock,
        entries=entries, targeted=read.targeted, events=described,
    )  # fmt: skip


def finished(
    name: str, counts: Counts, trigger: str, clock: float, **details: Any
) -> ReflectionResult:
    """Count and log a successful run that started at `clock`; return its result (`details`:
    ReflectionResult's fields after the duration)."""
    seconds = time.perf_counter() - clock
    metrics.REFLECTION_SECONDS.labels(trigger).observe(seconds)
    metrics.REFLECTIONS.labels(trigger, ReflectionRun.Outcome.SUCCESS).inc()
    duration_ms = round(seconds * 1000)
    logger.info("reflected %s in %d ms: %s", name, duration_ms, counts)
    return ReflectionResult(name, counts, duration_ms, **details)


def changed(counts: Counts) -> bool:
    return bool(
        counts.added or counts.renamed or counts.moved or counts.dropped or counts.recreated
    )


def record(
    database: Database,
    changes: Changes,
    stored: dict[str, Any],
    read: CatalogRead,
    trigger: str,
    started_at: datetime,
) -> writes.Written:
    """Write the changes, the database's new state and the history row (in the transaction);
    return the rows written, those the change events name (none for a first import)."""
    unchanged = not changes.counts.changed() and not (read.log and read.log.entries)
    written = writes.Written()
    if not unchanged:
        written = writes.apply(
            database.id, changes, started_at, returning=bool(database.imported_at)
        )
    finished_at = timezone.now()
    fields = {
        "imported_at": database.imported_at or finished_at,
        "reflected_at": finished_at,
        "last_error": "",
        "last_error_at": None,
        **stored,
    }
    run = history.Run(database.id, trigger, started_at, finished_at, changes.counts, read.targeted)
    if unchanged:
        history.record_unchanged(run, fields)
        return written
    Database.objects.filter(pk=database.id).update(**fields)
    history.record_success(run)
    return written


# The watch trims its log every thousandth id: telling it how far the log is applied every few
# hundred entries keeps the log short without a round trip for every run.
TRIM_EVERY = 250


def trim_due(previous: int | None, log: LogRead) -> bool:
    """Whether to tell the watch how far its log is applied, after a run that read `log`."""
    if not log.entries or log.position.id is None:
        return False
    return previous is None or log.position.id // TRIM_EVERY > previous // TRIM_EVERY


def count_drift(trigger: str, log: LogRead | None, counts: Counts) -> None:
    """Count what a renewal found changed though the change log named nothing (expected 0)."""
    if trigger != ReflectionRun.Trigger.RENEWAL or log is None or log.gap or log.entries:
        return
    found = counts.changed()
    if found:
        metrics.LOG_DRIFT.inc(found)
        logger.warning("the renewal found %d changes the change log had not named", found)


# Runs that may read only what the change log names; the others read the whole catalog: the
# renewal (it is also the check that the log missed nothing), imports, manage.py reflect, and the
# first run after the listener (re)connects. Past TARGETED_LIMIT entries, a whole read is faster.
TARGETED_TRIGGERS = frozenset(
    {
        ReflectionRun.Trigger.LIST,
        ReflectionRun.Trigger.LIVE,
        ReflectionRun.Trigger.API,
        ReflectionRun.Trigger.ADMIN,
        ReflectionRun.Trigger.PAGE,
        ReflectionRun.Trigger.LISTENER,
        ReflectionRun.Trigger.POLL,
    }
)
TARGETED_LIMIT = 5000

# Runs asked for because a change is known (a notice, a poll that found the counter or the
# fingerprint moved, a read that found a table gone): a check that nothing changed would only
# read what the reflection reads again, the fingerprint of 100,000 relations 44 ms.
CHANGE_KNOWN = frozenset(
    {ReflectionRun.Trigger.LISTENER, ReflectionRun.Trigger.POLL, ReflectionRun.Trigger.LIVE}
)


def record_events(
    database_id: int,
    changes: Changes,
    before: events.Before | None,
    written: writes.Written,
    seen_at: datetime,
    entries: tuple[LogEntry, ...],
) -> int:
    """Write the change events of an applied diff and of the log's entries as one batch for
    the change feed (none for a first import: `before` None); return how many."""
    if before is None:
        return 0
    found = events.describe(database_id, changes, before, written, entries)
    return events.write_batch(database_id, found, entries, seen_at)


def compute_changes(
    database: Database, trigger: str, accept_new_identity: bool, step: Callable[[int], None]
) -> tuple[Changes, dict[str, Any], CatalogRead]:
    """Return what to apply, the fields to store on the database (identity, fingerprint, log
    position) and the read (with the change log read beside the catalog)."""
    step(0)
    # Most runs change nothing: a catalog whose fingerprint is the one last applied is not read.
    known = "" if accept_new_identity else database.catalog_fingerprint
    position = log_position(database, accept_new_identity)
    targeted = TARGETED_LIMIT if trigger in TARGETED_TRIGGERS and not accept_new_identity else 0
    read = catalog.read_catalog(database.source, known, position, targeted)
    stored = stored_fields(database, read, accept_new_identity)
    if read.targeted and read.snapshot is not None and read.log is not None:
        step(1)
        named = {entry.objid for entry in read.log.entries}
        state = load_targeted_state(database.id, read.snapshot, named)
        if not partitions_unread(read.snapshot, state, named):
            return diff_targeted(read.snapshot, state, named), stored, read
        read = catalog.read_catalog(database.source, "", position, 0)
        stored = stored_fields(database, read, accept_new_identity)
    if read.snapshot is None:
        return Changes(counts=Counts(unchanged=read.fingerprint.objects)), stored, read
    step(1)
    state = load_state(database.id)
    if accept_new_identity:
        state = state.forget_oids()
    return diff(read.snapshot, state), stored, read


def log_position(database: Database, accept_new_identity: bool) -> Position | None:
    """Return where the change log was left, None where no watch is installed.

    A new identity's log says nothing of the models' oids: its position starts again.
    """
    if database.watch_installed_at is None:
        return None
    if accept_new_identity:
        return Position()
    return Position(database.log_position, database.log_snapshot, database.log_trimmed)


def stored_fields(database: Database, read: CatalogRead, accept_new: bool) -> dict[str, Any]:
    """Return the identity, fingerprint, version and log position to store with the changes."""
    stored = identity_fields(database, read.identity, accept_new)
    # A targeted read leaves the rest of the catalog unread: its fingerprint is not known, and
    # the one stored still holds only where the log named nothing since.
    if not read.targeted:
        stored["catalog_fingerprint"] = read.fingerprint.text
    elif read.log is None or read.log.entries:
        stored["catalog_fingerprint"] = ""
    stored["catalog_version"] = read.version
    if read.log is not None:
        stored["log_position"] = read.log.position.id
        stored["log_snapshot"] = read.log.position.snapshot
        stored["log_trimmed"] = read.log.position.trimmed
    return stored


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector.

    A large reflection makes hundreds of thousands of short-lived tuples, none in a cycle:
    the collections they trigger free nothing and cost a third of the run.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def lock_database(database_id: int) -> Database:
    try:
        return Database.objects.select_for_update().get(pk=database_id)
    except Database.DoesNotExist:
        raise UnknownDatabase(f"no database with id {database_id}") from None


def record_failure(database_id: int, trigger: str, started_at: datetime, error: Exception) -> None:
    """Record a failed reflection on the database and in its history."""
    outcome = (
        ReflectionRun.Outcome.REFUSED
        if isinstance(error, IdentityChanged)
        else ReflectionRun.Outcome.FAILED
    )
    now = timezone.now()
    with transaction.atomic():
        Database.objects.filter(pk=database_id).update(last_error=str(error), last_error_at=now)
        ReflectionRun.objects.create(
            database_id=database_id,
            trigger=trigger,
            started_at=started_at,
            finished_at=now,
            outcome=outcome,
            error=str(error),
        )
        transaction.on_commit(partial(announce, database_id))
    metrics.REFLECTIONS.labels(trigger, outcome).inc()
    logger.warning("reflection of database %s %s: %s", database_id, outcome, error)


def announce(database_id: int) -> None:
    """Tell whoever listens (the push channel) that the database's models just changed."""
    signals.reflected.send(sender=ReflectionRun, database_id=database_id)
