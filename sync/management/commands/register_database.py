"""manage.py register_database NAME URL: register a database, or update its URL."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.exceptions import SyncError
from sync.reflection import registry


class Command(BaseCommand):
    help = "Register a PostgreSQL database under a name, or update the URL of a registered one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the name dbsync knows the database by")
        parser.add_argument("url", help="postgresql://user:password@host:port/database")
        parser.add_argument("--check", action="store_true", help="connect once before registering")

    def handle(self, *args: Any, name: str, url: str, check: bool, **options: Any) -> None:
        try:
            database, created = registry.register(name, url, check=check)
        except SyncError as error:
            raise CommandError(str(error)) from None
        verb = "registered" if created else "updated"
        self.stdout.write(f"{verb} {database.name} ({database.redacted_url})")
        if registry.superuser_warning(database):
            self.stderr.write(f"warning: {registry.superuser_warning(database)}")
