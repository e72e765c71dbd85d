"""The Changes page, a table's history and the listing's changed column (server-rendered)."""

import re

import pytest
from django.test import Client

from sync.models import ChangeEvent, Database, Table
from tests.helpers import make_user, reflect_recorded

pytestmark = pytest.mark.django_db


def logged_in(username: str = "reader", granted: bool = True) -> Client:
    client = Client()
    client.force_login(make_user(username, granted=granted))
    return client


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())).strip()


@pytest.fixture
def changed(registered: Database, user_db) -> Database:
    user_db.execute("CREATE SCHEMA shop; CREATE TABLE shop.orders (id int)")
    reflect_recorded(registered.id)
    user_db.execute("ALTER TABLE shop.orders RENAME TO purchases; CREATE TABLE shop.lines (id int)")
    reflect_recorded(registered.id)
    # As the watch's log would have it: one transaction by alice from psql.
    ChangeEvent.objects.update(role="alice", application="psql", xid=777, time_seen=False)
    return registered


def test_the_changes_page_groups_a_transactions_events_and_names_who(changed):
    response = logged_in().get(f"/databases/{changed.id}/changes/")
    assert response.status_code == 200
    shown = text(response)
    assert "by alice from psql · transaction 777 · 2 changes" in shown
    assert "Renamed table shop.orders → shop.purchases" in shown
    assert "Created table shop.lines" in shown
    assert response.content.decode().count('class="transaction"') == 1


def test_without_a_log_the_page_says_who_is_unknown_and_when_it_was_seen(registered, user_db):
    reflect_recorded(registered.id)
    user_db.execute("CREATE TABLE t (id int)")
    reflect_recorded(registered.id)
    shown = text(logged_in().get(f"/databases/{registered.id}/changes/"))
    assert "(when dbsync saw it) by someone unknown" in shown


def test_the_changes_page_filters_by_kind_and_role(changed):
    client = logged_in()
    only = text(client.get(f"/databases/{changed.id}/changes/?kind=renamed&role="))
    assert "shop.purchases" in only
    assert "shop.lines" not in only
    nobody = text(client.get(f"/databases/{changed.id}/changes/?role=bob"))
    assert "No change matches these filters" in nobody


def test_a_bad_filter_gets_a_400(changed):
    assert logged_in().get(f"/databases/{changed.id}/changes/?kind=exploded").status_code == 400


def test_a_database_not_granted_is_not_found(changed):
    assert (
        logged_in("outsider", granted=False).get(f"/databases/{changed.id}/changes/").status_code
        == 404
    )


def test_a_poll_with_the_current_version_gets_204_and_a_new_event_changes_it(changed, user_db):
    client = logged_in()
    url = f"/databases/{changed.id}/changes/"
    version = re.search(r'data-version="([0-9a-f]+)"', client.get(url).content.decode())
    assert version is not None
    poll = client.get(f"{url}?v={version.group(1)}", headers={"HX-Request": "true"})
    assert poll.status_code == 204
    user_db.execute("CREATE TABLE shop.later (id int)")
    reflect_recorded(changed.id)
    fresh = client.get(f"{url}?v={version.group(1)}", headers={"HX-Request": "true"})
    assert fresh.status_code == 200
    assert "shop.later" in text(fresh)


def test_a_table_page_shows_its_own_history(changed):
    table = Table.objects.get(database=changed, name="purchases")
    shown = text(logged_in().get(f"/tables/{table.id}/"))
    assert "History" in shown
    assert re.search(r"Renamed from orders by alice from psql \d+ s ago", shown)


def test_the_tables_listing_says_when_and_by_whom_each_table_changed(changed):
    shown = text(logged_in().get(f"/databases/{changed.id}/tables/"))
    # name, schema, kind, rows (blank before ANALYZE), size, columns, comment, oid, changed
    assert re.search(r"purchases shop Table 0 bytes 1 \d+ \d+ s ago by alice", shown)
