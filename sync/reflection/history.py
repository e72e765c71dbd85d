"""Record a successful reflection: the database's row and the history, where a run of unchanged
reflections is one row, counted."""

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from sync.models import Database, ReflectionRun
from sync.reflection.diff import Counts

RUNS = ReflectionRun._meta.db_table
DATABASES = Database._meta.db_table

# The latest row of the database, if it is an unchanged success of the same kind, takes this run:
# one statement, one row updated, where 1,000 databases renewed every 5 minutes would otherwise
# add 288,000 rows a day that say nothing.
REPEAT_SQL = f"""
    UPDATE {RUNS} SET repeats = repeats + 1,
                      first_started_at = coalesce(first_started_at, started_at),
                      started_at = %(started)s, finished_at = %(finished)s,
                      unchanged = %(unchanged)s
    WHERE id = (SELECT id FROM {RUNS} WHERE database_id = %(database)s
                ORDER BY started_at DESC, id DESC LIMIT 1)
      AND outcome = %(success)s AND trigger = %(trigger)s AND targeted = %(targeted)s
      AND added = 0 AND renamed = 0 AND moved = 0 AND dropped = 0 AND recreated = 0
"""

# A run that found nothing to do, recorded without the database's lock: the database's row is
# stamped only while it still holds what the run compared with (URL, identity, the fingerprint
# last applied, the change log's position; a reflection that applied changes meanwhile changed
# them, and the caller then reflects under the lock), and the history's latest row counts the
# run only if the stamp was made. One statement, its own transaction.
CONFIRM_SQL = f"""
    SET LOCAL synchronous_commit = off;
    WITH confirmed AS (
        UPDATE {DATABASES} SET reflected_at = %(finished)s, last_error = '', last_error_at = NULL,
                               catalog_version = %(version)s, log_snapshot = %(new_log_snapshot)s
        WHERE id = %(database)s AND encrypted_url = %(encrypted_url)s
          AND database_oid IS NOT DISTINCT FROM %(database_oid)s
          AND server_identifier = %(server_identifier)s
          AND (watch_installed_at IS NOT NULL) = %(watched)s
          AND catalog_fingerprint = %(fingerprint)s
          AND log_position IS NOT DISTINCT FROM %(log_position)s
          AND log_snapshot = %(log_snapshot)s AND log_trimmed IS NOT DISTINCT FROM %(log_trimmed)s
        RETURNING id
    ), repeated AS (
        {REPEAT_SQL} AND EXISTS (SELECT FROM confirmed) RETURNING id
    )
    SELECT EXISTS (SELECT FROM confirmed), EXISTS (SELECT FROM repeated)
"""


@dataclass(frozen=True)
class Run:
    """A successful reflection, as the history records it."""

    database_id: int
    trigger: str
    started_at: datetime
    finished_at: datetime
    counts: Counts
    targeted: bool


def record_success(run: Run) -> None:
    """Add the run to the history, or count it on the latest row when both changed nothing."""
    if not run.counts.changed():
        with connection.cursor() as cursor:
            cursor.execute(REPEAT_SQL, repeat_parameters(run))
            if cursor.rowcount == 1:
                return
    create(run)


def record_unchanged(run: Run, fields: dict[str, Any]) -> None:
    """Write the database's fields and count the run on the latest history row, in one round
    trip, on a commit that does not wait for its WAL flush: what a run that changed nothing
    writes may be lost in a server crash without harm, and those waits were most of such a
    run's time at 1,000 relations."""
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)  # our own field names
    statement = (
        "SET LOCAL synchronous_commit = off;"
        f" UPDATE {DATABASES} SET {assignments} WHERE id = %(database)s; {REPEAT_SQL}"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, {**fields, **repeat_parameters(run)})
        if cursor.rowcount == 1:
            return
    create(run)


def confirm_unchanged(
    run: Run, expected: Mapping[str, Any], version: int | None, log_snapshot: str
) -> bool:
    """Record a run that found nothing to do, if the database's row still holds the `expected`
    columns (see CONFIRM_SQL), with the counter and log snapshot it read; return whether it
    was recorded."""
    parameters = {
        **repeat_parameters(run),
        **expected,
        "version": version,
        "new_log_snapshot": log_snapshot,
    }
    with connection.cursor() as cursor:
        cursor.execute(CONFIRM_SQL, parameters)
        confirmed, repeated = cursor.fetchone()
    if confirmed and not repeated:
        create(run)
    return bool(confirmed)


def repeat_parameters(run: Run) -> dict[str, Any]:
    return {
        "started": run.started_at,
        "finished": run.finished_at,
        "unchanged": run.counts.unchanged,
        "database": run.database_id,
        "success": ReflectionRun.Outcome.SUCCESS,
        "trigger": run.trigger,
        "targeted": run.targeted,
    }


def create(run: Run) -> None:
    ReflectionRun.objects.create(
        database_id=run.database_id,
        trigger=run.trigger,
        started_at=run.started_at,
        finished_at=run.finished_at,
        outcome=ReflectionRun.Outcome.SUCCESS,
        targeted=run.targeted,
        **asdict(run.counts),
    )
