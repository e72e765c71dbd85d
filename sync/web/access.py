"""Who may read what: staff see every database; others the ones granted to their groups.

A database not granted is indistinguishable from one that does not exist: callers filter
their querysets through readable_databases and answer 404 for what it leaves out.
"""

from typing import Any, TypeVar

from django.db.models import QuerySet

from sync.exceptions import AccessDenied
from sync.models import Database, DatabaseGrant

# A queryset of schemas or tables, of its own class: only_readable keeps its live().
ObjectsT = TypeVar("ObjectsT", bound=QuerySet[Any])


def readable_databases(user: Any) -> QuerySet[Database]:
    """Return the databases whose names and objects the user may list (staff: all)."""
    if not (user and user.is_authenticated and user.is_active):
        return Database.objects.none()
    if user.is_staff:
        return Database.objects.all()
    granted = DatabaseGrant.objects.filter(group__user=user).values("database_id")
    return Database.objects.filter(pk__in=granted)


def may_read_records(user: Any, database: Database) -> bool:
    """Return whether the user may read the rows of the database's tables and views."""
    if not (user and user.is_authenticated and user.is_active):
        return False
    if user.is_staff:
        return True
    grants = DatabaseGrant.objects.filter(database=database, group__user=user, records=True)
    return grants.exists()


def records_denied(database: Database) -> str:
    """Say why a reader who may list the database's tables is not shown their records."""
    return (
        f"you may list the tables of {database.name} but not read their records: "
        "ask an administrator for the records grant"
    )


def check_records(user: Any, database: Database) -> None:
    """Raise AccessDenied (403) unless the user may read the database's records."""
    if not may_read_records(user, database):
        raise AccessDenied(records_denied(database))


def only_readable(user: Any, objects: ObjectsT) -> ObjectsT:
    """Return the schemas or tables of `objects` that belong to databases the user may list."""
    if user and user.is_authenticated and user.is_active and user.is_staff:
        return objects  # no subquery for staff, who see everything
    return objects.filter(database__in=readable_databases(user))
