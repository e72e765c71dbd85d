"""manage.py import_database NAME URL: register a database and import it at once."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.exceptions import SyncError
from sync.models import ReflectionRun
from sync.reflection import registry, runs

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Register a PostgreSQL database and import its schemas, tables and views now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the name dbsync will know the database by")
        parser.add_argument("url", help="postgresql://user:password@host:port/database")

    def handle(self, *args: Any, name: str, url: str, **options: Any) -> None:
        show = self.bar if self.stdout.isatty() else self.line
        try:
            # Connects first: an unreachable URL registers nothing.
            database, _ = registry.register(name, url, check=True)
        except SyncError as error:
            raise CommandError(str(error)) from None
        try:
            # Not inside the registration's transaction: a failed reflection's record (on the
            # database and in its history) must outlive the failure it records.
            result = runs.reflect(database.id, trigger=ReflectionRun.Trigger.IMPORT, progress=show)
        except SyncError as error:
            raise CommandError(f"registered {name}, but the import failed: {error}") from None
        counts = result.counts
        if registry.superuser_warning(database):
            self.stderr.write(f"warning: {registry.superuser_warning(database)}")
        self.stdout.write(
            f"imported {result.database} in {result.duration_ms} ms: "
            f"{counts.added} schemas, tables and views"
        )

    def bar(self, done: int, total: int, label: str) -> None:
        filled = BAR_WIDTH * done // total
        end = "\n" if done == total else ""
        self.stdout.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {label:<28}", ending=end)
        self.stdout.flush()

    def line(self, done: int, total: int, label: str) -> None:
        self.stdout.write(f"import: {done}/{total} {label}")
