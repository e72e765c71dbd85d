"""Record successful reflections in the history: a run of unchanged ones is one row, counted."""

from dataclasses import asdict
from datetime import datetime

from django.db import connection

from sync.models import ReflectionRun
from sync.reflection.diff import Counts

RUNS = ReflectionRun._meta.db_table

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


def record_success(
    database_id: int,
    trigger: str,
    started_at: datetime,
    finished_at: datetime,
    counts: Counts,
    targeted: bool,
) -> None:
    """Add the run to the history, or count it on the latest row when both changed nothing."""
    changed = counts.added or counts.renamed or counts.moved or counts.dropped or counts.recreated
    if not changed:
        with connection.cursor() as cursor:
            cursor.execute(
                REPEAT_SQL,
                {
                    "started": started_at,
                    "finished": finished_at,
                    "unchanged": counts.unchanged,
                    "database": database_id,
                    "success": ReflectionRun.Outcome.SUCCESS,
                    "trigger": trigger,
                    "targeted": targeted,
                },
            )
            if cursor.rowcount == 1:
                return
    ReflectionRun.objects.create(
        database_id=database_id,
        trigger=trigger,
        started_at=started_at,
        finished_at=finished_at,
        outcome=ReflectionRun.Outcome.SUCCESS,
        targeted=targeted,
        **asdict(counts),
    )
