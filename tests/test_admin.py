"""The admin as an operator uses it: register, watch, and queue imports and reflections."""

import re

import pytest
from django.test import Client

from sync.changes import leases, store
from sync.encryption import encrypt
from sync.models import Database
from sync.reflection import runs
from tests.helpers import HeldDatabaseRow, make_user

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/sync/database/"
# The grants inline's management form, with no grant in it.
NO_GRANTS = {"grants-TOTAL_FORMS": "0", "grants-INITIAL_FORMS": "0"}


@pytest.fixture
def operator() -> Client:
    client = Client()
    user = make_user("operator", staff=True)
    user.is_superuser = True
    user.save()
    assert client.login(username="operator", password="operator-pw")
    return client


def run_action(client: Client, action: str, database: Database) -> list[str]:
    response = client.post(
        CHANGELIST, {"action": action, "_selected_action": [database.pk]}, follow=True
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize("action", ["import_now", "reflect_now"])
def test_an_action_queues_one_task_and_says_so(operator, registered, published, action):
    held = HeldDatabaseRow(registered)  # a worker that takes the task cannot finish it yet
    try:
        first = run_action(operator, action, registered)
        second = run_action(operator, action, registered)
    finally:
        held.release()

    assert len(published) == 1
    assert leases.holder(registered.id) is not None
    assert "queued (task" in first[0]
    assert "not queued again" in second[0]


def test_a_non_staff_user_is_refused(registered):
    make_user("reader")
    client = Client()
    client.login(username="reader", password="reader-pw")

    response = client.post(
        CHANGELIST, {"action": "reflect_now", "_selected_action": [registered.pk]}
    )

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert leases.holder(registered.id) is None


def test_registering_checks_the_connection_and_hides_the_password(operator, user_db):
    bad = operator.post(
        "/admin/sync/database/add/",
        {"name": "shop", "new_url": "postgresql://u:hunter2@127.0.0.1:1/shop", **NO_GRANTS},
    )
    assert bad.status_code == 200
    assert "Connection refused" in bad.content.decode()
    assert "hunter2" not in bad.content.decode()
    assert not Database.objects.exists()

    url = user_db.url.replace("postgres@", "postgres:s3cret@")
    good = operator.post("/admin/sync/database/add/", {"name": "shop", "new_url": url, **NO_GRANTS})
    assert good.status_code == 302
    database = Database.objects.get(name="shop")
    assert database.url == url

    page = operator.get(f"/admin/sync/database/{database.pk}/change/").content.decode()
    assert "s3cret" not in page
    assert "postgres:***@" in page


def test_a_blank_url_on_change_keeps_the_current_one(operator, registered):
    url = registered.url
    response = operator.post(
        f"/admin/sync/database/{registered.pk}/change/",
        {"name": "renamed", "new_url": "", **NO_GRANTS},
    )
    assert response.status_code == 302
    registered.refresh_from_db()
    assert (registered.name, registered.url) == ("renamed", url)


def test_the_changelist_shows_each_database_s_own_counts_and_state(operator, registered, user_db):
    user_db.execute(
        "CREATE SCHEMA a; CREATE SCHEMA b; CREATE TABLE a.t1 (id int); CREATE TABLE a.t2 (id int);"
        " CREATE TABLE b.t3 (id int); CREATE TABLE b.gone (id int)"
    )
    runs.reflect(registered.id)
    user_db.execute("DROP TABLE b.gone")
    runs.reflect(registered.id)
    busy = Database.objects.create(name="busy", encrypted_url=encrypt(registered.url))
    store.client().set(store.lease_key(busy.id), "running:the-task", ex=60)

    rows = {
        row[0]: row[1:]
        for row in re.findall(
            r'<th class="field-name"><a [^>]*>([^<]+)</a></th>.*?'
            r'<td class="field-status">([^<]*)</td>.*?'
            r'<td class="field-schema_count">(\d+)</td><td class="field-table_count">(\d+)</td>',
            operator.get(CHANGELIST).content.decode(),
            re.DOTALL,
        )
    }

    # public, a and b; three live tables.
    assert rows == {"userdb": ("stale", "3", "3"), "busy": ("running (task the-task)", "0", "0")}
    change_page = operator.get(f"{CHANGELIST}{registered.pk}/change/").content.decode()
    assert ">2 runs</a>" in change_page


def test_reflected_objects_are_listed_read_only(operator, registered):
    for page in ("/admin/sync/schema/", "/admin/sync/table/", "/admin/sync/reflectionrun/"):
        assert operator.get(page).status_code == 200
    assert operator.get("/admin/sync/table/add/").status_code == 403


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:hunter2@127.0.0.1:abc/db", "not a database URL"),
        ("postgresql://postgres:hunter2@[::1/db", "not a database URL"),
    ],
    ids=["port-not-a-number", "unclosed-ipv6"],
)
def test_a_malformed_url_is_a_form_error_not_a_500(operator, url, message):
    response = operator.post(
        "/admin/sync/database/add/", {"name": "shop", "new_url": url, **NO_GRANTS}
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert "hunter2" not in response.content.decode()
    assert not Database.objects.exists()


def test_the_watch_actions_install_and_remove_the_triggers(operator, registered):
    installed = run_action(operator, "install_watch", registered)
    registered.refresh_from_db()
    assert installed == [f"{registered.name}: watch installed."]
    assert registered.watch_installed_at is not None
    page = operator.get(CHANGELIST).content.decode()
    assert "poll" in page  # installed, and no listener connected in this test

    removed = run_action(operator, "uninstall_watch", registered)
    registered.refresh_from_db()
    assert removed == [f"{registered.name}: watch removed."]
    assert registered.watch_installed_at is None
