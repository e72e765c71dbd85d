"""Register databases by name and URL, from commands, the API, the admin and settings."""

import re

from django.conf import settings
from django.db import transaction

from sync import catalog
from sync.exceptions import InvalidDatabaseURL, UnknownDatabase
from sync.models import Database

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidDatabaseURL(
            f"invalid database name {name!r}: use 1 to 63 letters, digits, '_', '.' or '-'"
        )
    return name


def register(name: str, url: str, check: bool = False) -> tuple[Database, bool]:
    """Register a database, or update the URL of one already registered under that name."""
    validate_name(name)
    catalog.validate_url(url)
    if check:
        catalog.check_connection(url)
    with transaction.atomic():
        return Database.objects.update_or_create(name=name, defaults={"url": url})


def register_configured() -> list[Database]:
    """Register the databases named in SYNC_DATABASES."""
    return [register(name, url)[0] for name, url in settings.SYNC_DATABASES.items()]


def by_name(name: str) -> Database:
    try:
        return Database.objects.get(name=name)
    except Database.DoesNotExist:
        raise UnknownDatabase(f"no database is registered as {name!r}") from None
