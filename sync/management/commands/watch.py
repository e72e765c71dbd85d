"""manage.py watch NAME [--uninstall] [--url URL]: install or remove a database's DDL watch."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.changes import watch
from sync.exceptions import SyncError
from sync.models import WatchSignal
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
        parser.add_argument(
            "--signal",
            choices=WatchSignal.values,
            help="how the watch tells the listener: notify (NOTIFY at commit) or counter (the "
            "listener polls the counter every SYNC_LISTEN_POLL_MS; two-phase commit works). "
            "Default: counter where the server allows prepared transactions, else notify.",
        )

    def handle(
        self, *args: Any, name: str, uninstall: bool, url: str | None, signal: str | None, **_: Any
    ) -> None:
        try:
            database = registry.by_name(name)
            if uninstall:
                watch.uninstall(database, url)
                self.stdout.write(f"removed the watch of {name}: its catalog is polled from now on")
                return
            chosen = watch.install(database, url, signal)
        except SyncError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"watching {name}: its event triggers are installed (signal: {chosen}); with "
            "`manage.py listen` running, each change shows within a second"
        )
