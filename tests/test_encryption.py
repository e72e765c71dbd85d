"""Database URLs at rest: encrypted, rotated under a new key, and a clear error without one."""

import os
import subprocess
import sys
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from sync import encryption
from sync.models import Database, Table
from sync.reflection import registry, runs

pytestmark = pytest.mark.django_db

PASSWORD = "s3cret-at-rest"
OLD_KEY, NEW_KEY, OTHER_KEY = (Fernet.generate_key().decode() for _ in range(3))


@pytest.fixture
def with_password(user_db) -> str:
    return user_db.url.replace("postgres@", f"postgres:{PASSWORD}@")


def stored_rows() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM sync_database")
        return repr(cursor.fetchall())


def test_the_stored_url_column_holds_no_password(with_password):
    registry.register("shop", with_password)

    stored = stored_rows()
    assert PASSWORD not in stored
    assert "postgres@" not in stored
    assert "127.0.0.1" not in stored
    assert Database.objects.get(name="shop").url == with_password


def test_rotation_re_encrypts_under_the_first_key(with_password, settings):
    settings.SYNC_SECRET_KEYS = [OLD_KEY]
    registry.register("shop", with_password)

    settings.SYNC_SECRET_KEYS = [NEW_KEY, OLD_KEY]
    out = StringIO()
    call_command("rotate_secrets", stdout=out)

    assert out.getvalue().strip() == "re-encrypted 1 database URLs under the first key"
    token = Database.objects.get(name="shop").encrypted_url
    assert Fernet(NEW_KEY.encode()).decrypt(token.encode()).decode() == with_password
    settings.SYNC_SECRET_KEYS = [NEW_KEY]  # the old key can go now
    assert Database.objects.get(name="shop").url == with_password


def test_a_url_no_key_decrypts_is_an_error_naming_the_database(
    registered, user_db, reader, settings
):
    user_db.execute("CREATE TABLE t (id int)")
    runs.reflect(registered.id)
    table = Table.objects.get(name="t")
    settings.SYNC_SECRET_KEYS = [OTHER_KEY]

    response = reader.get(f"/api/v1/tables/{table.id}/columns/")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "'userdb'" in detail
    assert "SYNC_SECRET_KEYS" in detail
    assert registered.encrypted_url not in response.content.decode()
    with pytest.raises(CommandError, match="the URL of database 'userdb' cannot be decrypted"):
        call_command("reflect", "userdb", stdout=StringIO())
    with pytest.raises(CommandError, match="'userdb'"):
        call_command("rotate_secrets", stdout=StringIO())


def test_registering_again_replaces_a_url_no_key_decrypts(registered, user_db, settings):
    settings.SYNC_SECRET_KEYS = [OTHER_KEY]
    database, created = registry.register("userdb", user_db.url)
    assert (database.pk, created, database.url) == (registered.pk, False, user_db.url)


def test_decryption_is_cached_per_process(registered):
    token = registered.encrypted_url
    encryption.decrypt(token, "first")
    hits = encryption._decrypt.cache_info().hits
    assert encryption.decrypt(token, "again") == registered.url
    assert encryption._decrypt.cache_info().hits > hits


def test_registering_the_same_url_again_keeps_its_ciphertext(registered, user_db):
    registry.register("userdb", user_db.url)
    assert Database.objects.get(pk=registered.pk).encrypted_url == registered.encrypted_url


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_urls_stored_in_clear(user_db):
    call_command("migrate", "sync", "0001", verbosity=0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO sync_database (name, url, server_identifier, catalog_fingerprint,"
                " created_at, last_error) VALUES ('old', %s, '', '', now(), %s)",
                [user_db.url + f"?password={PASSWORD}", f"failed: ?password={PASSWORD}"],
            )
    finally:
        call_command("migrate", "sync", verbosity=0)

    assert PASSWORD not in stored_rows()
    old = Database.objects.get(name="old")
    assert PASSWORD in old.url
    assert old.last_error == "failed: ?password=***"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "SYNC_SECRET_KEYS", "DEBUG"}
    }
    environment |= {"DJANGO_SETTINGS_MODULE": "project.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60
    )


ENTRY_POINTS = {
    "web": "import project.wsgi",
    "worker": "from worker import app; app.WorkController(pool_cls='solo')",
    "manage.py": "import sys; from django.core.management import execute_from_command_line;"
    " execute_from_command_line(['manage.py', 'check'])",
}


@pytest.mark.parametrize("code", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_the_service_refuses_to_start_without_keys_when_debug_is_off(code):
    refused = run_python(code)
    assert refused.returncode != 0
    assert "SECRET_KEY" in refused.stderr
    assert "SYNC_SECRET_KEYS" in refused.stderr

    started = run_python(code, SECRET_KEY="k" * 50, SYNC_SECRET_KEYS=NEW_KEY)
    assert (started.returncode, started.stderr[-300:]) == (0, started.stderr[-300:])


def test_a_malformed_key_is_refused_with_the_setting_named():
    refused = run_python("import django; django.setup()", SYNC_SECRET_KEYS=f"{NEW_KEY},nope")
    assert refused.returncode != 0
    assert "SYNC_SECRET_KEYS: key 2 is not a Fernet key" in refused.stderr


def test_one_unreadable_url_does_not_fail_the_list(registered, reader, settings):
    settings.SYNC_SECRET_KEYS = [OTHER_KEY]
    response = reader.get("/api/v1/databases/")
    assert response.status_code == 200
    assert "unreadable" in response.json()["results"][0]["location"]
