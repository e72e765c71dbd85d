"""Pages in a real browser beside the push role: changes shown by push, or by polling without it."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from sync.changes import recency
from sync.models import Database, DatabaseGrant
from sync.reflection import registry, runs
from tests.browser.waiting import wait_in_page
from tests.helpers import (
    create_scratch,
    drop_scratch,
    free_port,
    make_user,
    process_environment,
    push_answers,
    start_procfile_role,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

expect.set_options(timeout=10_000)


def start_push_role(port: int) -> Any:
    process = start_procfile_role(
        "push", process_environment(), replace={"${SYNC_PUSH_PORT:-8001}": str(port)}
    )
    wait_until(lambda: push_answers(port), timeout=30, what="the push role to listen")
    return process


RUNNING: dict[int, Any] = {}  # port -> the push role's process serving it


@pytest.fixture
def push_role(settings) -> Iterator[int]:
    """Run the Procfile's push role on a free port, and point the pages at it."""
    port = free_port()
    settings.SYNC_PUSH_URL, settings.SYNC_PUSH_PORT = "", port
    RUNNING[port] = start_push_role(port)
    try:
        yield port
    finally:
        stop_process(RUNNING.pop(port))


@pytest.fixture
def shop(registered: Database, user_db) -> Database:
    user_db.execute("CREATE SCHEMA shop; CREATE TABLE shop.orders (id int)")
    reflect_now(registered)
    return registered


def log_in(page: Page, base: str, username: str, granted: bool = True) -> None:
    make_user(username, granted=granted)
    page.goto(f"{base}/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(f"{username}-pw")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Databases")).to_be_visible()


def listing_requests(page: Page) -> list[str]:
    """Record the listing's polls (they carry its version) as the page sends them."""
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if "v=" in request.url else None)
    return sent


def reflect_now(database: Database) -> None:
    """Reflect, as a worker would, and mark it recent: the page's polls queue nothing."""
    runs.reflect(database.id)
    recency.mark_recent(database.id, timezone.now())


def test_create_rename_and_drop_show_in_the_open_page_by_push(
    page: Page, live_server, push_role, shop, user_db
):
    sent = listing_requests(page)
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/tables/")
    page.wait_for_function("window.dbsyncPushed === true")
    page.evaluate("window.notReloaded = true")
    page.wait_for_timeout(3000)  # longer than a poll's period
    polls_while_idle = [url for url in sent if "tables" in url]

    user_db.execute("CREATE TABLE public.made_in_psql (id int)")
    reflect_now(shop)
    expect(page.get_by_role("link", name="made_in_psql", exact=True)).to_be_visible()
    user_db.execute("ALTER TABLE public.made_in_psql RENAME TO renamed_in_psql")
    reflect_now(shop)
    expect(page.get_by_role("link", name="renamed_in_psql", exact=True)).to_be_visible()
    user_db.execute("DROP TABLE public.renamed_in_psql")
    reflect_now(shop)
    expect(page.get_by_role("link", name="renamed_in_psql", exact=True)).to_have_count(0)

    assert polls_while_idle == []  # while pushed, an idle page sends nothing
    assert page.evaluate("window.notReloaded") is True


def test_a_readers_tab_hears_nothing_of_a_database_not_granted(
    page: Page, live_server, push_role, shop
):
    scratch = create_scratch()
    try:
        hidden, _ = registry.register("hidden", scratch.url)
        DatabaseGrant.objects.filter(database=hidden).delete()
        sent = listing_requests(page)
        log_in(page, live_server.url, "reader")
        page.wait_for_function("window.dbsyncPushed === true")
        page.wait_for_timeout(500)
        before = len(sent)

        reflect_now(hidden)
        page.wait_for_timeout(1500)
        assert len(sent) == before  # nothing heard: no poll sent

        reflect_now(shop)
        wait_in_page(page, lambda: len(sent) > before, "the poll a granted database's change sends")
    finally:
        drop_scratch(scratch)


def test_with_the_push_channel_blocked_the_page_polls(
    page: Page, live_server, push_role, shop, user_db, settings
):
    # The pages are sent to a port where nothing answers, as behind a proxy that drops the
    # stream; the push role runs, and hears the reflection, in vain.
    settings.SYNC_PUSH_PORT = free_port()
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/tables/")
    page.evaluate("window.notReloaded = true")

    user_db.execute("CREATE TABLE public.made_in_psql (id int)")
    reflect_now(shop)

    expect(page.get_by_role("link", name="made_in_psql", exact=True)).to_be_visible()
    assert page.evaluate("window.dbsyncPushed") is not True
    assert page.evaluate("window.notReloaded") is True


def test_eight_tabs_share_one_stream_and_every_one_is_pushed(
    page: Page, live_server, push_role, shop, user_db
):
    # A browser opens at most six connections to one host and port: a stream per tab would
    # leave the seventh and eighth without one.
    log_in(page, live_server.url, "reader")
    tabs = [page.context.new_page() for _ in range(8)]
    for tab in tabs:
        tab.goto(f"{live_server.url}/databases/{shop.id}/tables/")
    for tab in tabs:
        tab.wait_for_function("window.dbsyncPushed === true")

    user_db.execute("CREATE TABLE public.seen_by_all (id int)")
    reflect_now(shop)

    for tab in tabs:
        expect(tab.get_by_role("link", name="seen_by_all", exact=True)).to_be_visible()


def test_the_open_page_reconnects_after_a_restart_of_the_push_role(
    page: Page, live_server, push_role, shop, user_db
):
    log_in(page, live_server.url, "reader")
    page.goto(f"{live_server.url}/databases/{shop.id}/tables/")
    page.wait_for_function("window.dbsyncPushed === true")
    page.evaluate("window.notReloaded = true")

    stop_process(RUNNING[push_role])
    wait_until(lambda: not push_answers(push_role), timeout=30, what="the push role to stop")
    page.wait_for_function("window.dbsyncPushed !== true")  # lost: the page polls meanwhile
    RUNNING[push_role] = start_push_role(push_role)

    # The browser reconnects by itself, and push takes over again.
    page.wait_for_function("window.dbsyncPushed === true", timeout=30_000)
    user_db.execute("CREATE TABLE public.after_restart (id int)")
    reflect_now(shop)
    expect(page.get_by_role("link", name="after_restart", exact=True)).to_be_visible()
    assert page.evaluate("window.notReloaded") is True


def test_a_tab_acts_only_on_its_own_databases_events(page: Page, live_server, push_role, shop):
    scratch = create_scratch()
    try:
        other, _ = registry.register("other", scratch.url)  # granted to the reader too
        sent = listing_requests(page)
        log_in(page, live_server.url, "reader")
        page.goto(f"{live_server.url}/databases/{shop.id}/tables/")
        page.wait_for_function("window.dbsyncPushed === true")
        page.wait_for_timeout(500)
        before = len(sent)

        reflect_now(other)  # heard on the shared stream, not this tab's database
        page.wait_for_timeout(1500)
        assert len(sent) == before

        reflect_now(shop)
        wait_in_page(page, lambda: len(sent) > before, "the poll its own database's change sends")
    finally:
        drop_scratch(scratch)
