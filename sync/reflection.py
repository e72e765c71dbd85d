"""Diff a catalog snapshot against the models by oid and apply the difference in one transaction."""

import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from sync import catalog, metrics, names
from sync.catalog import CatalogRelation, Identity, Snapshot
from sync.exceptions import CatalogUnavailable, IdentityChanged, UnknownDatabase
from sync.models import Database, ReflectionRun, Schema, Table
from sync.names import QualifiedName

logger = logging.getLogger(__name__)


class SchemaRow(NamedTuple):
    id: int
    oid: int
    name: str


class TableRow(NamedTuple):
    id: int
    oid: int
    schema_id: int
    name: str
    kind: str


@dataclass(frozen=True)
class ModelState:
    """The live model rows of one database, as plain tuples."""

    schemas: list[SchemaRow]
    tables: list[TableRow]

    def forget_oids(self) -> "ModelState":
        """Return the state with oids that match nothing, so rows match by name alone."""
        return ModelState(
            schemas=[row._replace(oid=-row.id) for row in self.schemas],
            tables=[row._replace(oid=-row.id) for row in self.tables],
        )


@dataclass
class Counts:
    added: int = 0
    renamed: int = 0
    moved: int = 0
    dropped: int = 0
    recreated: int = 0
    unchanged: int = 0


@dataclass
class Changes:
    """What to write so that the models match the snapshot."""

    new_schemas: list[tuple[int, str]] = field(default_factory=list)  # (oid, name)
    changed_schemas: list[SchemaRow] = field(default_factory=list)  # id, new oid, new name
    dropped_schema_ids: list[int] = field(default_factory=list)
    new_tables: list[CatalogRelation] = field(default_factory=list)
    changed_tables: list[tuple[int, CatalogRelation]] = field(default_factory=list)  # (id, new)
    dropped_table_ids: list[int] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    names: dict[int, QualifiedName] = field(default_factory=dict)  # oid -> name


@dataclass(frozen=True)
class ReflectionResult:
    database: str
    counts: Counts
    duration_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {"database": self.database, **asdict(self.counts), "duration_ms": self.duration_ms}


SCHEMAS_QUERY = (
    f"SELECT id, oid, name FROM {Schema._meta.db_table}"
    " WHERE database_id = %s AND dropped_at IS NULL"
)
TABLES_QUERY = (
    f"SELECT id, oid, schema_id, name, kind FROM {Table._meta.db_table}"
    " WHERE database_id = %s AND dropped_at IS NULL"
)


def load_state(database_id: int) -> ModelState:
    """Read the live schema and table rows of a database in two queries, as plain tuples."""
    with connection.cursor() as cursor:
        cursor.execute(SCHEMAS_QUERY, [database_id])
        schemas = list(map(SchemaRow._make, cursor.fetchall()))
        cursor.execute(TABLES_QUERY, [database_id])
        tables = list(map(TableRow._make, cursor.fetchall()))
    return ModelState(schemas=schemas, tables=tables)


def diff(snapshot: Snapshot, state: ModelState) -> Changes:
    """Return the changes that bring the model state to the snapshot, matched by oid."""
    changes = Changes()
    renamed_schema_oids = diff_schemas(snapshot, state, changes)
    diff_tables(snapshot, state, changes, renamed_schema_oids)
    return changes


def diff_schemas(snapshot: Snapshot, state: ModelState, changes: Changes) -> set[int]:
    """Fill in the schema changes; return the oids of renamed schemas."""
    counts = changes.counts
    live = {row.oid: row for row in state.schemas}
    # Rows whose oid is gone may come back under the same name (dropped and recreated).
    vanished = {row.name: row for row in state.schemas if row.oid not in snapshot.schemas}
    renamed: set[int] = set()
    for oid, name in snapshot.schemas.items():
        row = live.get(oid)
        if row is None:
            old = vanished.pop(name, None)
            if old is None:
                changes.new_schemas.append((oid, name))
                counts.added += 1
            else:
                changes.changed_schemas.append(SchemaRow(old.id, oid, name))
                counts.recreated += 1
        elif row.name != name:
            changes.changed_schemas.append(SchemaRow(row.id, oid, name))
            counts.renamed += 1
            renamed.add(oid)
        else:
            counts.unchanged += 1
    changes.dropped_schema_ids = [row.id for row in vanished.values()]
    counts.dropped += len(changes.dropped_schema_ids)
    return renamed


def diff_tables(
    snapshot: Snapshot, state: ModelState, changes: Changes, renamed_schema_oids: set[int]
) -> None:
    """Fill in the table changes and the names to cache."""
    counts = changes.counts
    schema_names = snapshot.schemas
    schema_oid_of = {row.id: row.oid for row in state.schemas}
    old_schema_name_of = {row.id: row.name for row in state.schemas}
    live = {row.oid: row for row in state.tables}
    present = {relation.oid for relation in snapshot.relations}
    vanished = {
        (old_schema_name_of[row.schema_id], row.name): row
        for row in state.tables
        if row.oid not in present
    }
    for relation in snapshot.relations:
        qualified = (schema_names[relation.schema_oid], relation.name)
        row = live.get(relation.oid)
        if row is None:
            old = vanished.pop(qualified, None)
            if old is None:
                # Nothing is cached under a new oid: its name is cached when first read.
                changes.new_tables.append(relation)
                counts.added += 1
                continue
            changes.changed_tables.append((old.id, relation))
            counts.recreated += 1
        elif schema_oid_of[row.schema_id] != relation.schema_oid:
            changes.changed_tables.append((row.id, relation))
            counts.moved += 1
        elif row.name != relation.name or row.kind != relation.kind:
            changes.changed_tables.append((row.id, relation))
            counts.renamed += 1
        else:
            counts.unchanged += 1
            if relation.schema_oid not in renamed_schema_oids:
                continue
        changes.names[relation.oid] = qualified
    changes.dropped_table_ids = [row.id for row in vanished.values()]
    counts.dropped += len(changes.dropped_table_ids)


def apply(database_id: int, changes: Changes, now: datetime) -> None:
    """Write the changes with a bounded number of set-based statements.

    Raw SQL over unnest() arrays: one statement per kind of change whatever the number of
    objects, where bulk_create/bulk_update would build a model instance per object.
    """
    schema_table, table_table = Schema._meta.db_table, Table._meta.db_table
    with connection.cursor() as cursor:
        # Drops first, so that their oids leave the live-row unique index.
        for db_table, dropped in (
            (table_table, changes.dropped_table_ids),
            (schema_table, changes.dropped_schema_ids),
        ):
            if dropped:
                cursor.execute(
                    f"UPDATE {db_table} SET dropped_at = %s WHERE id = ANY(%s::bigint[])",
                    [now, array_literal(dropped)],
                )
        if changes.changed_schemas:
            ids, oids, schema_names = columns(changes.changed_schemas, 3)
            park_oids(cursor, schema_table, ids)
            cursor.execute(
                f"UPDATE {schema_table} AS s SET oid = u.oid, name = u.name"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS u(id, oid, name)"
                " WHERE s.id = u.id",
                [ids, oids, schema_names],
            )
        if changes.new_schemas:
            oids, schema_names = columns(changes.new_schemas, 2)
            cursor.execute(
                f"INSERT INTO {schema_table} (database_id, oid, name)"
                " SELECT %s, u.oid, u.name FROM unnest(%s::bigint[], %s::text[]) AS u(oid, name)",
                [database_id, oids, schema_names],
            )
        if changes.changed_tables:
            ids, oids, schema_oids, table_names, kinds = columns(
                ((table_id, *relation) for table_id, relation in changes.changed_tables), 5
            )
            park_oids(cursor, table_table, ids)
            cursor.execute(
                f"UPDATE {table_table} AS t"
                " SET oid = u.oid, schema_id = s.id, name = u.name, kind = u.kind"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[])"
                "      AS u(id, oid, schema_oid, name, kind)"
                f" JOIN {schema_table} AS s"
                "   ON s.database_id = %s AND s.oid = u.schema_oid AND s.dropped_at IS NULL"
                " WHERE t.id = u.id",
                [ids, oids, schema_oids, table_names, kinds, database_id],
            )
        if changes.new_tables:
            oids, schema_oids, table_names, kinds = columns(changes.new_tables, 4)
            cursor.execute(
                f"INSERT INTO {table_table} (database_id, schema_id, oid, name, kind)"
                " SELECT %s, s.id, u.oid, u.name, u.kind"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[])"
                "      AS u(oid, schema_oid, name, kind)"
                f" JOIN {schema_table} AS s"
                "   ON s.database_id = %s AND s.oid = u.schema_oid AND s.dropped_at IS NULL",
                [database_id, oids, schema_oids, table_names, kinds, database_id],
            )


def columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[str]:
    """Transpose rows into `width` PostgreSQL array literals, the shape unnest() takes.

    One text parameter per column: psycopg2 would otherwise quote every element into an
    ARRAY[...] constructor, and the server parse each one.
    """
    transposed = list(zip(*rows, strict=True)) or [() for _ in range(width)]
    return [array_literal(column) for column in transposed]


def array_literal(values: Iterable[Any]) -> str:
    quoted = ('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def park_oids(cursor: Any, db_table: str, ids: str) -> None:
    # Rows about to take new oids first step aside, so that two of them trading oids (a
    # database restored in place) never collide in the live-row unique index mid-statement.
    cursor.execute(f"UPDATE {db_table} SET oid = -id WHERE id = ANY(%s::bigint[])", [ids])


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
    metrics.REFLECTIONS.labels(trigger, outcome).inc()
    logger.warning("reflection of database %s %s: %s", database_id, outcome, error)
