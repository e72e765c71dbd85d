"""manage.py rotate_secrets: re-encrypt every stored secret under the first key."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from sync import encryption
from sync.exceptions import SyncError
from sync.models import Database


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored database URL under the first key of SYNC_SECRET_KEYS. Put a "
        "new key first, keep the old ones after it, run this, then drop the old keys."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            # One transaction: a URL no key opens leaves every row as it was.
            with transaction.atomic():
                databases = list(Database.objects.select_for_update().order_by("name"))
                for database in databases:
                    what = f"the URL of database {database.name!r}"
                    database.encrypted_url = encryption.reencrypt(database.encrypted_url, what)
                Database.objects.bulk_update(databases, ["encrypted_url"])
        except SyncError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"re-encrypted {len(databases)} database URLs under the first key")
