"""Register databases by name and URL, from commands, the API, the admin and settings."""

import re

from django.conf import settings
from django.db import transaction
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from sync.catalog import unavailable, validate_url
from sync.exceptions import InvalidDatabaseURL, UnknownDatabase
from sync.models import Database

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidDatabaseURL(
            f"invalid database name {name!r}: use 1 to 63 letters, digits, '_', '.' or '-'"
        )
    return name


def check_connection(url: str) -> None:
    """Connect once to the URL; raise CatalogUnavailable with a safe message if that fails."""
    probe = create_engine(
        make_url(validate_url(url)).set(drivername="postgresql+psycopg2"),
        poolclass=NullPool,
        connect_args={"connect_timeout": settings.SYNC_CONNECT_TIMEOUT},
    )
    try:
        with probe.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as error:
        raise unavailable(url, error) from None
    finally:
        probe.dispose()


def register(name: str, url: str, check: bool = False) -> tuple[Database, bool]:
    """Register a database, or update the URL of one already registered under that name."""
    validate_name(name)
    validate_url(url)
    if check:
        check_connection(url)
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
