"""manage.py demo: create, register and reflect the demo database; create the demo admin."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sync import demo, reflection, registry, watch
from sync.exceptions import SyncError, WatchRefused
from sync.models import ReflectionRun

DEMO_ADMIN = "admin"


class Command(BaseCommand):
    help = "Create the demo database, register and reflect it, and create the demo admin user."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            database, _ = registry.register(demo.DEMO_NAME, demo.create_demo_database())
            result = reflection.reflect(database.id, trigger=ReflectionRun.Trigger.COMMAND)
        except SyncError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"demo database {database.name} ({database.redacted_url}): "
            f"{result.counts.added} objects added"
        )
        try:
            watch.install(database)
            self.stdout.write("demo database watched: a change made in psql shows at once")
        except WatchRefused as error:
            self.stdout.write(str(error))
        password = settings.DEMO_ADMIN_PASSWORD
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(username=DEMO_ADMIN)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"demo admin login: {DEMO_ADMIN} / {password}")
