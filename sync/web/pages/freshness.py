"""The pages' one door to a database's reflection state: the gate, its status, the actions.

Every call the pages make into the gate goes through here, so that a change of the gate's
interface changes this module only.
"""

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from sync.changes import gate, listening
from sync.changes.progress import TaskProgress, task_progress
from sync.exceptions import UnknownTask
from sync.models import Database, ReflectionRun


@dataclass(frozen=True)
class Badge:
    """Where a database stands, as its freshness badge shows it."""

    status: str  # fresh, stale, queued, running, failed, unavailable
    reflected_at: datetime | None
    error: str
    task_id: str | None = None
    progress: TaskProgress | None = None

    @property
    def version(self) -> str:
        """The part of a page's version token that this badge decides."""
        done = self.progress.done if self.progress else None
        return f"{self.status}:{self.reflected_at}:{self.error}:{done}"


def opened(database: Database) -> Badge:
    """Pass the database through the list gate, as the API list does: may queue a reflection."""
    return badge(database, gate.ensure_fresh(database))


def looked_at(database: Database) -> Badge:
    """Report where the database stands without queuing anything."""
    return badge(database, gate.status_of(database))


def looked_at_each(databases: Sequence[Database]) -> list[Badge]:
    """Report where each database stands without queuing anything (one read for all)."""
    return [badge(d, now) for d, now in zip(databases, gate.statuses_of(databases), strict=True)]


def badge(database: Database, now: gate.Freshness) -> Badge:
    progress = None
    if now.task_id and now.status == gate.Status.RUNNING:
        with contextlib.suppress(UnknownTask):  # one queued before its id was recorded
            progress = task_progress(now.task_id)  # an import reports done/total
    # A failure shows the error; an old error under a later success does not.
    error = database.last_error if now.status == gate.Status.FAILED else ""
    return Badge(str(now.status), database.reflected_at, error, now.task_id, progress)


def refresh(database: Database) -> gate.Freshness:
    """Queue a reflection now, unless one is queued or running (staff action)."""
    return gate.request_reflection(database, ReflectionRun.Trigger.PAGE)


def import_now(database: Database) -> gate.Freshness:
    """Queue the import of the database now, unless a reflection of it is under way."""
    return gate.request_import(database)


def watch_mode(database: Database) -> str:
    """How changes of the database reach dbsync: listen, poll or off."""
    return listening.watch_mode(database)


def version(*parts: object) -> str:
    """Return a short token that changes whenever one of the parts does."""
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def ago(moment: datetime | None) -> str:
    """Say how long ago a moment was, as pages.js says it when it refreshes the text."""
    if moment is None:
        return "never"
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    return f"{span(seconds)} ago"


def span(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
