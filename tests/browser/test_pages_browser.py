"""The pages in a real browser (Debian's Chromium, headless) against a live server and worker."""

import os
import re
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from playwright.sync_api import Dialog, Page, expect

from sync.changes import gate, recency, watch
from sync.encryption import encrypt
from sync.models import Database, ReflectionRun, Table
from tests.browser.waiting import wait_in_page
from tests.helpers import (
    HeldDatabaseRow,
    ScratchDatabase,
    admin_connection,
    make_user,
    reflect_recorded,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT_NAME = "<img src=x onerror=alert(1)>"
SLOW = 30_000  # milliseconds to wait for what a worker does on a shared machine
SCREENSHOTS = os.environ.get("DBSYNC_SCREENSHOTS", "")

# A page answers in milliseconds, but the machine is shared: give each expectation room.
expect.set_options(timeout=10_000)


@pytest.fixture
def shop(registered: Database, user_db) -> Database:
    user_db.execute(
        "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int primary key, note text);"
        " INSERT INTO shop.orders VALUES (1, 'first'), (2, NULL), (3, '');"
        " CREATE VIEW shop.recent_orders AS SELECT 1 AS id; CREATE TABLE public.notes (id int)"
    )
    reflect_recorded(registered.id)
    registered.refresh_from_db()
    assert registered.reflected_at is not None
    recency.mark_recent(registered.id, registered.reflected_at)
    return registered


def log_in(page: Page, base: str, username: str, staff: bool = False) -> None:
    make_user(username, staff=staff)
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(f"{username}-pw")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Databases")).to_be_visible()


def badge(page: Page, database: Database) -> Any:
    return page.locator(f"#database-{database.id} .badge")


def test_walk_databases_schemas_tables_records_and_back(page: Page, live_server, shop):
    log_in(page, live_server.url, "reader")
    page.get_by_role("link", name="userdb").click()
    expect(page.get_by_role("heading", name="Schemas of userdb")).to_be_visible()
    page.get_by_role("link", name="shop", exact=True).click()
    expect(page.get_by_role("heading", name="Tables of userdb, schema shop")).to_be_visible()
    expect(page.locator("#listing tbody th")).to_have_text(["orders", "recent_orders"])
    page.get_by_role("link", name="orders", exact=True).click()

    expect(page.get_by_role("heading", name="Table shop.orders")).to_be_visible()
    records = page.locator("table.records tbody tr")
    expect(records).to_have_count(3)
    expect(records.nth(1).locator("td.null")).to_have_text("NULL")
    expect(records.nth(2).locator("td.empty-string")).to_have_count(1)

    page.go_back()
    expect(page.get_by_role("heading", name="Tables of userdb, schema shop")).to_be_visible()
    page.go_back()
    expect(page.get_by_role("heading", name="Schemas of userdb")).to_be_visible()


def test_a_table_created_in_psql_appears_in_the_open_page(
    page: Page, live_server, shop, user_db, worker
):
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/tables/")
    page.evaluate("window.notReloaded = true")
    user_db.execute("CREATE TABLE public.made_in_psql (id int)")
    recency.expire(shop.id)  # as when SYNC_REFLECTION_INTERVAL has passed

    expect(page.get_by_role("link", name="made_in_psql")).to_be_visible(timeout=SLOW)
    assert page.evaluate("window.notReloaded") is True


def test_refresh_queues_a_reflection_and_the_badge_goes_queued_then_fresh(
    page: Page, live_server, shop, worker
):
    # Keep the one worker busy with another database, so the refresh waits in the queue.
    busy = Database.objects.create(name="busy", encrypted_url=encrypt(shop.url))
    held = HeldDatabaseRow(busy)
    try:
        running = gate.request_reflection(busy, ReflectionRun.Trigger.API)
        wait_until(
            lambda: gate.status_of(busy).status == gate.Status.RUNNING,
            what="the worker to be busy",
        )
        log_in(page, live_server.url, "operator", staff=True)
        page.get_by_role("button", name="Refresh userdb").click()
        expect(page.get_by_role("status")).to_contain_text("userdb: reflection queued.")
        expect(badge(page, shop)).to_have_text("queued")
    finally:
        held.release()
    expect(badge(page, shop)).to_have_text(re.compile(r"^synced \d+ s ago$"), timeout=SLOW)
    assert running.queued_now


def test_a_reader_sees_no_staff_actions(page: Page, live_server, shop):
    log_in(page, live_server.url, "reader")
    expect(page.get_by_role("link", name="userdb")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Refresh|Import|Register"))).to_have_count(0)


def test_an_unknown_id_gives_a_not_found_page(page: Page, live_server, db):
    log_in(page, live_server.url, "reader")
    response = page.goto(f"{live_server.url}/databases/987654/tables/")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_a_script_named_table_renders_as_text(page: Page, live_server, shop, user_db):
    user_db.execute(f'CREATE TABLE public."{SCRIPT_NAME}" (id int)')
    reflect_recorded(shop.id)
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/tables/")
    expect(page.get_by_role("link", name=SCRIPT_NAME)).to_be_visible()
    page.get_by_role("link", name=SCRIPT_NAME).click()
    expect(page.get_by_role("heading", name=f"Table public.{SCRIPT_NAME}")).to_be_visible()
    assert page.locator("main img").count() == 0
    assert dialogs == []


def test_a_hidden_tab_does_not_poll(page: Page, live_server, shop):
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "v=" in request.url else None)
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/schemas/")
    wait_in_page(page, lambda: polls, "a first poll")  # visible: polls every 2 s

    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true})"
    )
    page.wait_for_timeout(500)  # a poll already sent may still be answered
    before = len(polls)
    page.wait_for_timeout(5000)
    assert len(polls) == before

    page.evaluate("delete document.visibilityState")
    wait_in_page(page, lambda: len(polls) > before, "polls to resume")


@pytest.mark.skipif(not SCREENSHOTS, reason="set DBSYNC_SCREENSHOTS=docs to write screenshots")
def test_screenshots_of_each_page(page: Page, live_server, shop, user_db):
    user_db.execute(
        "CREATE TABLE public.customers (id serial primary key, name text not null,"
        " email text, joined date default current_date, notes text);"
        " INSERT INTO public.customers (name, email, notes) VALUES"
        " ('Ada', 'ada@example.org', NULL), ('Brian', '', 'prefers mail'),"
        " ('Chen', 'chen@example.org', repeat('a long note that goes on ', 8));"
        " CREATE MATERIALIZED VIEW public.customer_count AS SELECT count(*) FROM public.customers;"
        " COMMENT ON TABLE public.customers IS 'people who bought at least once';"
        " CREATE TABLE public.events (at date, what text) PARTITION BY RANGE (at)"
    )
    connection = admin_connection(user_db.name)
    with connection.cursor() as cursor:  # twelve monthly partitions, rows, statistics
        cursor.execute(
            "SELECT format('CREATE TABLE public.events_2026_%s PARTITION OF public.events"
            " FOR VALUES FROM (%L) TO (%L)', lpad(m::text, 2, '0'), make_date(2026, m, 1),"
            " make_date(2026, m, 1) + interval '1 month') FROM generate_series(1, 12) m"
        )
        for (statement,) in cursor.fetchall():
            cursor.execute(statement)
        cursor.execute(
            "INSERT INTO public.events SELECT date '2026-01-01' + n % 365, 'visit'"
            " FROM generate_series(1, 20000) n; ANALYZE"
        )
    connection.close()
    reflect_recorded(shop.id)
    watch.install(shop)
    reflect_recorded(shop.id)  # the log's position
    run_ddl(
        user_db,
        "django-migrate",
        "ALTER TABLE shop.orders RENAME TO purchases;"
        " ALTER TABLE public.customers ADD COLUMN phone text; DROP TABLE public.notes",
    )
    reflect_recorded(shop.id)
    table = Table.objects.get(name="customers")
    log_in(page, live_server.url, "admin", staff=True)
    pages = {
        "databases": "/",
        "schemas": f"/databases/{shop.id}/schemas/",
        "tables": f"/databases/{shop.id}/tables/",
        "table": f"/tables/{table.id}/",
        "history": f"/databases/{shop.id}/history/",
        "changes": f"/databases/{shop.id}/changes/",
    }
    for width, height, suffix in ((1280, 800, ""), (390, 844, "-narrow")):
        page.set_viewport_size({"width": width, "height": height})
        for name, path in pages.items():
            page.goto(f"{live_server.url}{path}")
            page.screenshot(path=Path(SCREENSHOTS) / f"page-{name}{suffix}.png", full_page=True)
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/login/")
    page.set_viewport_size({"width": 1280, "height": 600})
    page.screenshot(path=Path(SCREENSHOTS) / "page-login.png")


def test_typing_in_the_search_filters_the_open_page(page: Page, live_server, shop):
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/tables/")
    page.evaluate("window.notReloaded = true")
    page.get_by_label("Search").fill("recent")
    expect(page.locator("#listing tbody th")).to_have_text(["recent_orders"])
    expect(page).to_have_url(re.compile(r"\?q=recent&"))  # pushed: reload or share it
    assert page.evaluate("window.notReloaded") is True


def run_ddl(user_db: ScratchDatabase, application: str, statements: str) -> None:
    """Run DDL in one transaction as another client would, under an application_name."""
    connection = psycopg2.connect(user_db.url, application_name=application)
    with connection, connection.cursor() as cursor:
        cursor.execute(statements)
    connection.close()


def test_a_ddl_from_psql_appears_on_the_open_changes_page_with_who_ran_it(
    page: Page, live_server, shop, user_db, worker
):
    watch.install(shop)
    reflect_recorded(shop.id)  # the log's position
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/changes/")
    expect(page.locator("#listing .empty")).to_contain_text("No change recorded")
    run_ddl(
        user_db,
        "psql",
        "CREATE TABLE shop.refunds (id int); ALTER TABLE shop.orders RENAME TO purchases",
    )
    gate.notice_change(shop, ReflectionRun.Trigger.LISTENER)  # as the listener would
    group = page.locator("#listing .transaction")
    expect(group).to_have_count(1, timeout=SLOW)
    expect(group.locator(".who")).to_contain_text("by postgres from psql")
    expect(group.locator(".who")).to_contain_text("2 changes")
    expect(group.locator(".event")).to_have_count(2)
    page.get_by_label("Kind").select_option("renamed")
    expect(page.locator("#listing .event")).to_have_text(
        [re.compile("shop.orders → shop.purchases")]
    )
    expect(page).to_have_url(re.compile(r"kind=renamed"))
    page.locator("#listing .event a").click()
    expect(page.locator(".table-history li")).to_contain_text("Renamed from orders by postgres")


def test_the_tables_listing_shows_who_changed_each_table(page: Page, live_server, shop, user_db):
    watch.install(shop)
    reflect_recorded(shop.id)
    run_ddl(user_db, "deploy", "ALTER TABLE public.notes ADD COLUMN body text")
    reflect_recorded(shop.id)
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/tables/")
    row = page.locator("#listing tbody tr", has=page.get_by_role("rowheader", name="notes"))
    expect(row.locator("td.changed")).to_contain_text("by postgres")
