"""manage.py demo: create, register and reflect the demo database; create the demo admin."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sync.changes import watch
from sync.exceptions import SyncError
from sync.models import Database, ReflectionRun
from sync.ops import demo
from sync.reflection import registry, runs

DEMO_ADMIN = "admin"


class Command(BaseCommand):
    help = "Create the demo database, register and reflect it, and create the demo admin user."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            url = demo.create_demo_database(self.registered_url())
            database, _ = registry.register(demo.DEMO_NAME, url, check=True)
            result = runs.reflect(database.id, trigger=ReflectionRun.Trigger.COMMAND)
        except SyncError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"demo database {database.name} ({database.redacted_url}): "
            f"{result.counts.added} objects added"
        )
        self.stdout.write(self.watch(database))
        self.stdout.write(self.demo_admin())
        if settings.FLOWER_BASIC_AUTH:
            user, _, password = settings.FLOWER_BASIC_AUTH.partition(":")
            self.stdout.write(f"Flower login: {user} / {password}")

    def registered_url(self) -> str | None:
        """Return the URL the demo is registered with, if it is and its key is at hand."""
        registered = Database.objects.filter(name=demo.DEMO_NAME).first()
        try:
            return registered.url if registered is not None else None
        except SyncError:
            return None  # unreadable: a new password is set and stored

    def watch(self, database: Database) -> str:
        """Install the DDL watch as the server's own user: the demo's role only reads."""
        owner = demo.server_url(demo.demo_names().database).set(drivername="postgresql")
        try:
            watch.install(database, owner.render_as_string(hide_password=False))
        except SyncError as error:
            return str(error)
        return "demo database watched: a table created in psql shows at once"

    def demo_admin(self) -> str:
        """Create the demo admin when no user has its name; never change an existing one."""
        user_model = get_user_model()
        if user_model.objects.filter(username=DEMO_ADMIN).exists():
            return f"demo admin login: {DEMO_ADMIN} (existing user, password unchanged)"
        password = settings.DEMO_ADMIN_PASSWORD
        user_model.objects.create_superuser(DEMO_ADMIN, password=password)
        return f"demo admin login: {DEMO_ADMIN} / {password}"
