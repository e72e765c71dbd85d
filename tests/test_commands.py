"""The register_database and reflect management commands, as an operator runs them."""

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sync.encryption import encrypt
from sync.models import ChangeEvent, Database, EventBatch, Table

pytestmark = pytest.mark.django_db


def test_register_database_then_reflect_json(user_db):
    user_db.execute("CREATE TABLE t (id int); CREATE VIEW v AS SELECT 1 AS one")
    out = StringIO()
    call_command("register_database", "shop", user_db.url, stdout=out)
    assert out.getvalue().startswith("registered shop")

    out = StringIO()
    call_command("reflect", "shop", "--json", stdout=out)

    report = json.loads(out.getvalue())
    assert list(report) == [
        "database", "added", "renamed", "moved", "dropped", "recreated", "unchanged",
        "duration_ms",
    ]  # fmt: skip
    assert (report["database"], report["added"]) == ("shop", 3)
    assert Table.objects.live().count() == 2


def test_register_database_twice_updates_the_url(user_db):
    call_command("register_database", "shop", "postgresql://a@127.0.0.1/one", stdout=StringIO())
    out = StringIO()
    call_command("register_database", "shop", user_db.url, stdout=out)
    assert out.getvalue().startswith("updated shop")
    assert Database.objects.get(name="shop").url == user_db.url


@pytest.mark.parametrize(
    "url",
    [
        "mysql://admin:hunter2@db.example/shop",
        "hunter2",
        "postgresql://admin:hunter2@db.example",
        "postgresql://admin:hunter2@127.0.0.1:abc/db",
        "postgresql://admin:hunter2@[::1/db",
    ],
    ids=["wrong-scheme", "not-a-url", "no-database", "port-not-a-number", "unclosed-ipv6"],
)
def test_malformed_url_exits_non_zero_with_one_line_and_no_password(url):
    result = subprocess.run(
        [sys.executable, "manage.py", "register_database", "shop", url],
        capture_output=True,
        text=True,
        env={"DJANGO_SETTINGS_MODULE": "project.test_settings", "PATH": ""},
        check=False,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hunter2" not in result.stderr + result.stdout


def test_reflect_unreachable_database_fails_with_one_line():
    Database.objects.create(
        name="gone", encrypted_url=encrypt("postgresql://u:hunter2@127.0.0.1:1/gone")
    )
    with pytest.raises(CommandError) as raised:
        call_command("reflect", "gone", stdout=StringIO())
    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "hunter2" not in message
    assert "\n" not in message


def test_reflect_unknown_name_fails():
    with pytest.raises(CommandError, match="no database is registered as 'nope'"):
        call_command("reflect", "nope", stdout=StringIO())


def test_the_reflect_command_records_its_events_itself(user_db):
    call_command("register_database", "shop", user_db.url, stdout=StringIO())
    call_command("reflect", "shop", stdout=StringIO())  # the first import: no events
    user_db.execute("CREATE TABLE added (id int)")
    call_command("reflect", "shop", stdout=StringIO())
    events = ChangeEvent.objects.values_list("kind", "name_after")
    assert list(events) == [("created", "added")]
    assert not EventBatch.objects.exists()  # no webhooks' worker needed
