"""manage.py demo, as `make run` runs it: a read-only demo role, an admin it never changes."""

import uuid
from collections.abc import Iterator
from io import StringIO

import psycopg2
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from sync.models import Database
from sync.ops import demo
from tests.helpers import ScratchDatabase, admin_connection, drop_scratch

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_demo(monkeypatch) -> Iterator[demo.DemoNames]:
    """The demo under names of this test's own: other runs on the server keep theirs."""
    names = demo.demo_names(f"dbsync_{uuid.uuid4().hex[:10]}")
    monkeypatch.setattr(demo, "demo_names", lambda service_database=None: names)
    yield names
    drop_scratch(ScratchDatabase(names.database))
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP ROLE IF EXISTS "{names.role}"')
    connection.close()


def run_demo() -> str:
    out = StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


def test_running_the_demo_twice_keeps_a_changed_admin_password(own_demo, settings):
    settings.FLOWER_BASIC_AUTH = "flower:flower-pw"
    first = run_demo()
    assert "demo admin login: admin / dbsync-demo" in first
    assert "Flower login: flower / flower-pw" in first
    admin = User.objects.get(username="admin")
    admin.set_password("changed-by-the-operator")
    admin.save()

    second = run_demo()

    assert "existing user, password unchanged" in second
    assert User.objects.get(username="admin").check_password("changed-by-the-operator")


def test_the_demo_database_is_read_with_a_read_only_role(own_demo):
    run_demo()

    database = Database.objects.get(name=demo.DEMO_NAME)
    assert database.url.split("//")[1].startswith(own_demo.role + ":")
    assert database.role_is_superuser is False
    assert database.redacted_url.startswith(f"postgresql://{own_demo.role}:***@")


def test_the_demo_names_are_derived_from_the_service_database():
    assert demo.demo_names("dbsync") == demo.DemoNames("dbsync_demo", "dbsync_demo_reader")
    other = demo.demo_names("dbsync_staging")
    assert other == demo.DemoNames("dbsync_staging_demo", "dbsync_staging_demo_reader")
    longest = demo.demo_names("é" * 40)  # 80 bytes: cut to fit PostgreSQL's 63
    assert len(longest.role.encode()) <= 63
    assert longest.database != demo.demo_names("dbsync").database


def test_running_the_demo_again_leaves_a_working_role_password_alone(own_demo):
    run_demo()
    first = Database.objects.get(name=demo.DEMO_NAME).url
    # Another process holding the demo's URL, as the other roles of a running dbsync do.
    holder = psycopg2.connect(first)

    run_demo()

    assert Database.objects.get(name=demo.DEMO_NAME).url == first
    psycopg2.connect(first).close()  # the password still logs in
    holder.close()


def test_running_the_demo_again_repairs_a_role_that_no_longer_logs_in(own_demo):
    run_demo()
    first = Database.objects.get(name=demo.DEMO_NAME).url
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER ROLE "{own_demo.role}" NOLOGIN')  # the test server trusts passwords
    connection.close()

    run_demo()

    repaired = Database.objects.get(name=demo.DEMO_NAME).url
    assert repaired != first
    psycopg2.connect(repaired).close()
