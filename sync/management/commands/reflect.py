"""manage.py reflect NAME [--json]: reflect a registered database now, synchronously."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.changes import deliveries
from sync.exceptions import SyncError
from sync.models import ReflectionRun
from sync.reflection import feed, registry, runs


class Command(BaseCommand):
    help = "Reflect a registered database's schemas, tables and views now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the registered name of the database")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print one JSON object"
        )
        parser.add_argument(
            "--accept-new-identity",
            action="store_true",
            help="the URL now points at another server or database on purpose: match the "
            "models to it by qualified name instead of refusing",
        )

    def handle(self, *args: Any, name: str, as_json: bool, **options: Any) -> None:
        try:
            database = registry.by_name(name)
            result = runs.reflect(
                database.id,
                trigger=ReflectionRun.Trigger.COMMAND,
                accept_new_identity=options["accept_new_identity"],
            )
        except SyncError as error:
            if as_json:  # a script reads standard output: the failure is JSON there too
                failure = {"database": name, "error": error.code, "detail": str(error)}
                self.stdout.write(json.dumps(failure))
            raise CommandError(str(error)) from None
        # Its events, recorded here rather than left for the webhooks' worker, which may not run.
        if result.events and feed.record(database.id).deliveries:
            deliveries.queue_delivery(database.id)  # else the beat job's next pass sends them
        if as_json:
            self.stdout.write(json.dumps(result.as_dict()))
        else:
            counts = ", ".join(
                f"{key} {value}"
                for key, value in result.as_dict().items()
                if key not in {"database", "duration_ms"}
            )
            self.stdout.write(f"reflected {result.database} in {result.duration_ms} ms: {counts}")
