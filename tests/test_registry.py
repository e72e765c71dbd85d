"""The one registration path: the service's own database refused, a superuser role reported."""

import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from sync.exceptions import InvalidDatabaseURL
from sync.models import Database
from sync.reflection import registry
from tests.helpers import server_url

pytestmark = pytest.mark.django_db


def service_name() -> str:
    return str(connection.settings_dict["NAME"])


def service_urls() -> dict[str, str]:
    """The service database, by its own address and by ones only its identity gives away."""
    name = service_name()
    encoded = name.replace("_", "%5F")
    return {
        "same-address": server_url(name),
        "localhost": server_url(name).replace("127.0.0.1", "localhost"),
        "percent-encoded-name": server_url(encoded),
        "dbname-parameter": server_url("postgres") + f"?dbname={name}",
    }


@pytest.mark.parametrize("form", ["same-address", "localhost", "percent-encoded-name",
                                  "dbname-parameter"])  # fmt: skip
def test_the_service_database_is_refused(form, staff):
    url = service_urls()[form]
    with pytest.raises(InvalidDatabaseURL, match="dbsync's own service database"):
        registry.register("self", url, check=True)
    response = staff.post("/api/v1/databases/", {"name": "self", "url": url})
    assert response.status_code == 400
    assert "own service database" in response.json()["fields"]["url"][0]
    assert not Database.objects.exists()


def test_the_service_database_is_refused_by_address_without_connecting():
    with pytest.raises(CommandError, match="own service database"):
        call_command("register_database", "self", service_urls()["localhost"], stdout=StringIO())


def test_a_superuser_role_is_reported(user_db, staff, caplog):
    # The scratch databases' URLs use the server's owner: a superuser.
    response = staff.post("/api/v1/databases/", {"name": "shop", "url": user_db.url})
    assert response.status_code == 201
    assert response.json()["role_is_superuser"] is True
    assert any(
        record.levelno == logging.WARNING and "is a superuser" in record.getMessage()
        for record in caplog.records
    )


def test_a_plain_role_is_not_reported(user_db):
    user_db.execute("DROP ROLE IF EXISTS dbsync_test_plain; CREATE ROLE dbsync_test_plain LOGIN;")
    try:
        url = user_db.url.replace("postgres@", "dbsync_test_plain@")
        database, _ = registry.register("shop", url, check=True)
        assert database.role_is_superuser is False
    finally:
        Database.objects.all().delete()
        user_db.execute(f'REVOKE ALL ON DATABASE "{user_db.name}" FROM dbsync_test_plain;'
                        " DROP ROLE dbsync_test_plain")  # fmt: skip


def test_the_commands_warn_of_a_superuser_role(user_db):
    errors = StringIO()
    call_command("register_database", "shop", user_db.url, "--check", stdout=StringIO(),
                 stderr=errors)  # fmt: skip
    assert "is a superuser" in errors.getvalue()
    errors = StringIO()
    call_command("import_database", "other", user_db.url, stdout=StringIO(), stderr=errors)
    assert "is a superuser" in errors.getvalue()


def test_sync_databases_are_checked_and_the_service_database_refused(user_db, settings):
    settings.SYNC_DATABASES = {"shop": user_db.url, "down": "postgresql://u:pw@127.0.0.1:1/x"}
    registered = registry.register_configured()

    assert sorted(database.name for database in registered) == ["down", "shop"]
    assert Database.objects.get(name="shop").role_is_superuser is True  # connected: checked
    assert Database.objects.get(name="down").role_is_superuser is None  # did not answer

    settings.SYNC_DATABASES = {"self": service_urls()["dbname-parameter"]}
    with pytest.raises(InvalidDatabaseURL, match="own service database"):
        registry.register_configured()
