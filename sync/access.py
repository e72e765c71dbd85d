"""Who may read what: the databases a user sees, and whether they may read their records.

A stand-in until per-database grants exist: every logged-in user reads every database.
"""

from typing import Any

from django.db.models import QuerySet

from sync.models import Database


def readable_databases(user: Any) -> QuerySet[Database]:
    """Return the databases the user may see (staff: all)."""
    if not user.is_authenticated:
        return Database.objects.none()
    return Database.objects.all()


def may_read_records(user: Any, database: Database) -> bool:
    """Whether the user may read the rows of the database's tables."""
    return True
