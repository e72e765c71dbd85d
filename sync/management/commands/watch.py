"""manage.py watch NAME [--uninstall] [--url URL]: install or remove a database's DDL watch."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.changes import watch
from sync.exceptions import SyncError
from sync.reflection import registry


class Command(BaseCommand):
    help = (
        "Install the DDL watch (event triggers) in a registered database, so that the "
        "listener shows each change within a second; --uninstall removes it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the registered name of the database")
        parser.add_argument("--uninstall", action="store_true", help="remove the watch")
        parser.add_argument(
            "--url",
            help="connect with this URL instead of the registered one (event triggers need a "
            "superuser; the registered role may read the catalog only). Not stored.",
        )

    def handle(self, *args: Any, name: str, uninstall: bool, url: str | None, **_: Any) -> None:
        try:
            database = registry.by_name(name)
            if uninstall:
                watch.uninstall(database, url)
            else:
                watch.install(database, url)
        except SyncError as error:
            raise CommandError(str(error)) from None
        if uninstall:
            self.stdout.write(f"removed the watch of {name}: its catalog is polled from now on")
        else:
            self.stdout.write(
                f"watching {name}: its event triggers are installed; with `manage.py listen` "
                "running, each change shows within a second"
            )
