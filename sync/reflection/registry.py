"""Register databases by name and URL: the one path for commands, the API, the admin, settings."""

import logging
import re
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connection, transaction

from sync.exceptions import (
    CatalogUnavailable,
    InvalidDatabaseURL,
    SecretUnreadable,
    UnknownDatabase,
)
from sync.models import Database
from sync.remote import catalog, connections

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
SERVICE_DATABASE = (
    "that is dbsync's own service database: registering it would show its stored secrets "
    "and accounts to readers"
)
SUPERUSER_WARNING = (
    "the role of {name}'s URL is a superuser; dbsync needs only a role that may read the "
    "catalog, and SELECT on the tables whose records are read (see the README)"
)


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidDatabaseURL(
            f"invalid database name {name!r}: use 1 to 63 letters, digits, '_', '.' or '-'"
        )
    return name


def vet(url: str, check: bool = False) -> catalog.ServerProbe | None:
    """Validate a URL for registration; with check, connect once and say who answers.

    Refuses the service's own database: by address before any connection, and with check by
    the identity of the server and database that answer.
    """
    connections.validate_url(url)
    if _same_address_as_service(url):
        raise InvalidDatabaseURL(SERVICE_DATABASE)
    if not check:
        return None
    found = catalog.probe(url)
    if found.same_database(service_probe()):
        raise InvalidDatabaseURL(SERVICE_DATABASE)
    return found


def register(name: str, url: str, check: bool = False) -> tuple[Database, bool]:
    """Register a database, or update the URL of one already registered under that name.

    With check, dbsync connects once first, and records whether the role is a superuser.
    """
    validate_name(name)
    found = vet(url, check)
    with transaction.atomic():
        database = Database.objects.select_for_update().filter(name=name).first()
        created = database is None
        if database is None:
            database = Database(name=name)
        if created or _changed(database, url):  # unchanged: no new ciphertext on every tick
            database.url = url
            database.role_is_superuser = None
        if found is not None:
            database.role_is_superuser = found.superuser
        database.save()
    if database.role_is_superuser:
        logger.warning(SUPERUSER_WARNING.format(name=name))
    return database, created


def _changed(database: Database, url: str) -> bool:
    try:
        return database.url != url
    except SecretUnreadable:
        return True  # stored under a key no longer listed: the new URL replaces it


def register_configured() -> list[Database]:
    """Register the databases named in SYNC_DATABASES.

    A new or changed URL is checked by connecting (the service's own database is refused by
    identity too); one that does not answer yet is registered unchecked, and its reflections
    say why they fail. An unchanged one is not connected to again on every beat tick.
    """
    registered = []
    for name, url in settings.SYNC_DATABASES.items():
        known = Database.objects.filter(name=name).first()
        check = known is None or _changed(known, url)
        try:
            registered.append(register(name, url, check=check)[0])
        except CatalogUnavailable as error:
            logger.warning("SYNC_DATABASES: %s registered unchecked: %s", name, error)
            registered.append(register(name, url)[0])
    return registered


def by_name(name: str) -> Database:
    try:
        return Database.objects.get(name=name)
    except Database.DoesNotExist:
        raise UnknownDatabase(f"no database is registered as {name!r}") from None


def superuser_warning(database: Database) -> str:
    return SUPERUSER_WARNING.format(name=database.name) if database.role_is_superuser else ""


def service_probe() -> catalog.ServerProbe:
    """Say who answers the service database's connection, as catalog.probe does for a URL."""
    with connection.cursor() as cursor:
        cursor.execute(catalog.SERVER_IDENTITY_SQL)
        return catalog.ServerProbe(*cursor.fetchone())


def _same_address_as_service(url: str) -> bool:
    """Return whether the URL names the service database's host, port and database name."""
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        return False
    service = settings.DATABASES["default"]
    hosts = {(parts.hostname or "").lower(), (service["HOST"] or "").lower()}
    same_host = len(hosts) == 1 or hosts <= LOCAL_HOSTS
    same_port = port == int(service["PORT"] or 5432)
    return same_host and same_port and unquote(parts.path.strip("/")) == service["NAME"]
