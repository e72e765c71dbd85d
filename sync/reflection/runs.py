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
from sync.reflection import names, signals
from sync.reflection.diff import Changes, Counts, diff, load_state
from sync.reflection.writes import apply
from sync.remote import catalog
from sync.remote.catalog import Identity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReflectionResult:
    database: str
    counts: Counts
    duration_ms: int

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
    """
    started_at = timezone.now()
    clock = time.perf_counter()

    def step(done: int) -> None:
        if progress is not None:
            progress(done, len(STEPS) - 1, STEPS[done])

    try:
        with collector_paused(), transaction.atomic():
            database = lock_database(database_id)
            changes, stored = compute_changes(database, accept_new_identity, step)
            step(2)
            apply(database.id, changes, started_at)
            finished_at = timezone.now()
            Database.objects.filter(pk=database.id).update(
                imported_at=database.imported_at or finished_at,
                reflected_at=finished_at,
                last_error="",
                last_error_at=None,
                **stored,
            )
            ReflectionRun.objects.create(
                database_id=database.id,
                trigger=trigger,
                started_at=started_at,
                finished_at=finished_at,
                outcome=ReflectionRun.Outcome.SUCCESS,
                **asdict(changes.counts),
            )
            transaction.on_commit(partial(names.remember, database.id, changes.names))
            transaction.on_commit(partial(announce, database.id))
    except (CatalogUnavailable, IdentityChanged) as error:
        record_failure(database_id, trigger, started_at, error)
        raise
    step(3)
    seconds = time.perf_counter() - clock
    metrics.REFLECTION_SECONDS.labels(trigger).observe(seconds)
    metrics.REFLECTIONS.labels(trigger, ReflectionRun.Outcome.SUCCESS).inc()
    duration_ms = round(seconds * 1000)
    logger.info("reflected %s in %d ms: %s", database.name, duration_ms, changes.counts)
    return ReflectionResult(database.name, changes.counts, duration_ms)


def compute_changes(
    database: Database, accept_new_identity: bool, step: Callable[[int], None]
) -> tuple[Changes, dict[str, Any]]:
    """Return what to apply, and the identity and fingerprint to store on the database."""
    step(0)
    # Most runs change nothing: a catalog whose fingerprint is the one last applied is not read.
    known = "" if accept_new_identity else database.catalog_fingerprint
    read = catalog.read_catalog(database.source, known=known)
    stored = identity_fields(database, read.identity, accept_new_identity)
    stored["catalog_fingerprint"] = read.fingerprint.text
    stored["catalog_version"] = read.version
    if read.snapshot is None:
        return Changes(counts=Counts(unchanged=read.fingerprint.objects)), stored
    step(1)
    state = load_state(database.id)
    if accept_new_identity:
        state = state.forget_oids()
    return diff(read.snapshot, state), stored


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
