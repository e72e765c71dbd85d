"""manage.py demo, as `make run` runs it: a read-only demo role, an admin it never changes."""

import uuid
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from sync.models import Database
from sync.ops import demo
from tests.helpers import ScratchDatabase, admin_connection, drop_scratch

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_demo(monkeypatch):
    """The demo under names of this test's own: other runs on the server keep theirs."""
    suffix = uuid.uuid4().hex[:10]
    monkeypatch.setattr(demo, "DEMO_DATABASE", f"dbsync_demo_{suffix}")
    monkeypatch.setattr(demo, "DEMO_ROLE", f"dbsync_demo_reader_{suffix}")
    yield
    drop_scratch(ScratchDatabase(demo.DEMO_DATABASE))
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP ROLE IF EXISTS "{demo.DEMO_ROLE}"')
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
    assert database.url.split("//")[1].startswith(demo.DEMO_ROLE + ":")
    assert database.role_is_superuser is False
    assert database.redacted_url.startswith(f"postgresql://{demo.DEMO_ROLE}:***@")
