"""The web pages as a browser without JavaScript sees them, and their polls as htmx sends them."""

import re
import uuid

import pytest
from celery import current_app
from django.test import Client

from sync.changes import recency, store
from sync.encryption import encrypt
from sync.models import Database, ReflectionRun, Schema, Table
from sync.reflection import runs
from tests.helpers import HeldDatabaseRow, make_user

pytestmark = pytest.mark.django_db

SCRIPT_NAME = "<img src=x onerror=alert(1)>"


def logged_in(staff: bool = False) -> Client:
    client = Client()
    client.force_login(make_user("operator" if staff else "reader", staff=staff))
    return client


@pytest.fixture
def reader() -> Client:
    return logged_in()


@pytest.fixture
def staff() -> Client:
    return logged_in(staff=True)


@pytest.fixture
def shop(registered: Database, user_db) -> Database:
    """A database with two schemas, tables, a view, and its recency key set."""
    user_db.execute(
        "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int primary key, note text);"
        " CREATE TABLE shop.order_lines (id int); CREATE VIEW shop.recent_orders AS"
        " SELECT 1 AS id; CREATE TABLE public.notes (id int)"
    )
    runs.reflect(registered.id)
    registered.refresh_from_db()
    assert registered.reflected_at is not None
    recency.mark_recent(registered.id, registered.reflected_at)
    return registered


def text(response) -> str:
    """Return the visible text of a response, tags dropped and spaces folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())).strip()


def rows_of(response) -> list[str]:
    """Return the names in the row headers of the listing's table body, in order."""
    body = response.content.decode().split("<tbody>", 1)[-1].split("</tbody>", 1)[0]
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r'<th scope="row">(.*?)</th>', body, re.S)
    ]


def poll(client: Client, url: str, version: str):
    separator = "&" if "?" in url else "?"
    return client.get(f"{url}{separator}v={version}", headers={"HX-Request": "true"})


def version_of(response) -> str:
    found = re.search(r'data-version="([0-9a-f]+)"', response.content.decode())
    assert found is not None, "the page carries no version"
    return found.group(1)


def test_anonymous_visitor_is_sent_to_the_login_page(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_login_with_the_form_leads_to_the_databases_page(db):
    make_user("reader")
    client = Client()
    assert "Log in to dbsync" in text(client.get("/login/"))
    response = client.post("/login/", {"username": "reader", "password": "reader-pw"})
    assert response["Location"] == "/"
    assert "Databases" in text(client.get("/"))


def test_logout_ends_the_session(reader):
    assert reader.post("/logout/").status_code == 302
    assert reader.get("/").status_code == 302


def test_browsable_api_offers_a_login_link(reader):
    page = reader.get("/api/v1/databases/", headers={"Accept": "text/html"})
    assert "/api/auth/logout/" in page.content.decode()
    anonymous = Client().get("/api/auth/login/")
    assert anonymous.status_code == 200


def test_databases_page_shows_location_without_password_counts_and_freshness(shop, user_db, reader):
    Database.objects.filter(pk=shop.pk).update(
        encrypted_url=encrypt(shop.url.replace("postgres@", "postgres:s3cret@"))
    )
    page = reader.get("/")
    assert page.status_code == 200
    assert "s3cret" not in page.content.decode()
    row = text(page)
    assert "userdb" in row
    assert "postgres:***@" in row
    assert "synced" in row
    # Two schemas (public, shop), four relations, watch mode poll (no watch installed).
    assert re.search(
        r"userdb postgresql://postgres:\*\*\*@\S+ poll synced \d+ s ago 2 4 History", row
    )


def test_databases_page_paginates_and_searches_by_name(shop, staff):
    Database.objects.bulk_create(
        Database(name=f"db{i:03}", encrypted_url=encrypt(shop.url)) for i in range(120)
    )
    first, second = staff.get("/"), staff.get("/?page=2")
    assert len(rows_of(first)) == 100
    assert "121 databases" in text(first)
    assert "rows 1 to 100 of 121 (page 1 of 2)" in text(first)
    assert rows_of(second)[-1] == "userdb"
    assert rows_of(staff.get("/?q=DB11")) == [f"db11{i}" for i in range(10)]
    assert "No database matches “zzz”." in text(staff.get("/?q=zzz"))
    assert staff.get("/?page=0").status_code == 400


def test_a_reader_finds_only_granted_databases_by_search(shop, db):
    Database.objects.create(name="hidden-shop", encrypted_url=encrypt(shop.url))
    client = Client()
    client.force_login(make_user("outsider", granted=False))
    assert "No database matches “shop”." in text(client.get("/?q=shop"))
    assert rows_of(logged_in().get("/?q=shop")) == ["hidden-shop"]  # granted: found


def test_each_database_row_shows_its_own_state(shop, staff):
    busy = Database.objects.create(name="busy", encrypted_url=encrypt(shop.url))
    down = Database.objects.create(
        name="down", encrypted_url=encrypt(shop.url), last_error="could not connect"
    )
    store.client().set(store.lease_key(busy.id), f"running:{uuid.uuid4().hex}", ex=60)
    store.client().set(store.backoff_key(down.id), 60, ex=60)

    html = staff.get("/").content.decode()

    rows = re.findall(r'<tr id="database-(\d+)">.*?data-status="(\w+)"', html, re.DOTALL)
    assert dict(rows) == {str(shop.id): "fresh", str(busy.id): "running", str(down.id): "failed"}


def test_a_reader_sees_no_staff_actions(shop, reader):
    page = text(reader.get("/"))
    assert "Refresh" not in page
    assert "Import" not in page
    assert "Register a database" not in page


def test_staff_see_refresh_import_and_register(shop, staff):
    page = text(staff.get("/"))
    for action in ("Refresh", "Import", "Register a database"):
        assert action in page


def test_a_reader_cannot_post_staff_actions(shop, reader, published):
    assert reader.post(f"/databases/{shop.id}/refresh/").status_code == 403
    assert reader.post(f"/databases/{shop.id}/import/").status_code == 403
    assert reader.post("/databases/register/", {"name": "x", "url": "y"}).status_code == 403
    assert published == []


def test_refresh_queues_one_reflection_and_says_so(shop, staff, published):
    response = staff.post(f"/databases/{shop.id}/refresh/", follow=True)
    assert "userdb: reflection queued." in text(response)
    again = staff.post(f"/databases/{shop.id}/refresh/", follow=True)
    assert "userdb: not queued again: a reflection is already queued." in text(again)
    assert len(published) == 1
    assert 'data-status="queued"' in again.content.decode()


def test_register_refuses_an_unreachable_url_without_echoing_the_password(staff):
    response = staff.post(
        "/databases/register/", {"name": "away", "url": "postgresql://u:hunter2@127.0.0.1:1/x"}
    )
    assert response.status_code == 400
    assert "hunter2" not in response.content.decode()
    assert "127.0.0.1" in text(response)
    assert not Database.objects.filter(name="away").exists()


def test_register_adds_the_database_and_queues_its_import(user_db, staff, published):
    response = staff.post("/databases/register/", {"name": "fresh-one", "url": user_db.url})
    assert response.status_code == 302
    assert Database.objects.filter(name="fresh-one").exists()
    assert len(published) == 1
    assert "fresh-one: import queued." in text(staff.get("/"))


def test_registering_as_a_superuser_warns_on_the_page_as_the_api_records(user_db, staff):
    response = staff.post("/databases/register/", {"name": "mighty", "url": user_db.url})

    assert response.status_code == 302
    assert Database.objects.get(name="mighty").role_is_superuser
    page = staff.get("/")
    assert "mighty registered." in text(page)
    assert "Warning: the role of mighty's URL is a superuser" in text(page).replace("&#x27;", "'")
    assert 'class="message warning"' in page.content.decode()


def test_schemas_page_lists_schemas_with_table_counts(shop, reader):
    page = reader.get(f"/databases/{shop.id}/schemas/")
    assert rows_of(page) == ["public", "shop"]
    assert re.search(r"public 1 \d+ shop 3 \d+", text(page))


def test_schemas_page_search_and_no_match_state(shop, reader):
    page = reader.get(f"/databases/{shop.id}/schemas/?q=sho")
    assert rows_of(page) == ["shop"]
    none = reader.get(f"/databases/{shop.id}/schemas/?q=nothing-like-it")
    assert "No schema matches “nothing-like-it”." in text(none)


def test_opening_a_listing_page_passes_the_gate_and_never_waits(shop, reader, published):
    recency.expire(shop.id)
    page = reader.get(f"/databases/{shop.id}/tables/")
    # The rows as they are, the reflection queued: nobody consumes it in this test.
    assert rows_of(page) == ["notes", "order_lines", "orders", "recent_orders"]
    assert 'data-status="queued"' in page.content.decode()
    assert len(published) == 1
    reader.get(f"/databases/{shop.id}/schemas/")
    assert len(published) == 1


def test_tables_page_filters_by_kind_schema_and_search_with_counts_per_kind(shop, reader):
    base = f"/databases/{shop.id}/tables/"
    shop_schema = Schema.objects.get(database=shop, name="shop")
    assert rows_of(reader.get(f"{base}?kind=view")) == ["recent_orders"]
    assert rows_of(reader.get(f"{base}?schema={shop_schema.id}&q=ORDER")) == [
        "order_lines", "orders", "recent_orders",
    ]  # fmt: skip
    counts = text(reader.get(f"{base}?schema={shop_schema.id}"))
    assert "Table 2 Partitioned Table 0 View 1 Materialized View 0 Foreign Table 0" in counts


def test_tables_page_rows_are_keyed_by_oid(shop, user_db, reader):
    page = reader.get(f"/databases/{shop.id}/tables/").content.decode()
    assert f'id="oid-{user_db.oid_of("shop.orders")}"' in page


def test_dropped_tables_show_only_behind_the_toggle(shop, user_db, reader):
    user_db.execute("DROP TABLE public.notes")
    runs.reflect(shop.id)
    base = f"/databases/{shop.id}/tables/"
    assert "notes" not in rows_of(reader.get(base))
    with_dropped = reader.get(f"{base}?dropped=on")
    assert "notes" in rows_of(with_dropped)
    assert 'class="dropped"' in with_dropped.content.decode()


def test_tables_page_paginates(shop, user_db, reader):
    user_db.execute(
        "DO $$ BEGIN FOR i IN 1..120 LOOP"
        " EXECUTE format('CREATE TABLE public.t%s (id int)', lpad(i::text, 3, '0'));"
        " END LOOP; END $$"
    )
    runs.reflect(shop.id)
    first = reader.get(f"/databases/{shop.id}/tables/")
    second = reader.get(f"/databases/{shop.id}/tables/?page=2")
    assert len(rows_of(first)) == 100
    assert "rows 1 to 100 of 124 (page 1 of 2)" in text(first)
    assert "rows 101 to 124 of 124 (page 2 of 2)" in text(second)
    assert rows_of(first) + rows_of(second) == sorted(rows_of(first) + rows_of(second))


def test_empty_states_say_why(registered, reader, shop):
    never = Database.objects.create(name="never", encrypted_url=encrypt(registered.url))
    page = text(reader.get(f"/databases/{never.id}/tables/"))
    assert "Not imported yet: the first reflection of never is queued." in page
    nothing = text(reader.get(f"/databases/{shop.id}/tables/?q=zzz&kind=view"))
    assert "No match: no relation of kind view whose name contains “zzz”." in nothing


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("/databases/999999/schemas/", id="unknown-database"),
        pytest.param("/databases/999999/tables/", id="unknown-database-tables"),
        pytest.param("/databases/999999/history/", id="unknown-database-history"),
        pytest.param("/tables/999999/", id="unknown-table"),
        pytest.param("/databases/99999999999999999999999/schemas/", id="id-out-of-range"),
    ],
)
def test_unknown_ids_get_the_not_found_page(db, reader, url):
    response = reader.get(url)
    assert response.status_code == 404
    assert "Not found" in text(response)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("?page=0", "page must be a whole number from 1", id="page-zero"),
        pytest.param("?page=x", "page must be a whole number from 1", id="page-text"),
        pytest.param("?kind=index", "kind must be one of", id="unknown-kind"),
        pytest.param("?schema=abc", "schema must be a whole number from 1", id="schema-text"),
        pytest.param("?q=%00", "q must not contain a NUL character", id="nul-in-search"),
        pytest.param("?page=1&page=2", "page given 2 times", id="repeated-page"),
    ],
)
def test_malformed_filters_get_a_400_that_says_why(shop, reader, query, message):
    response = reader.get(f"/databases/{shop.id}/tables/{query}")
    assert response.status_code == 400
    assert message in text(response)


@pytest.mark.parametrize("page", ["/", "/databases/{id}/schemas/", "/databases/{id}/history/"])
def test_a_nul_in_any_page_search_gets_a_400_as_in_the_api(shop, reader, page):
    response = reader.get(page.format(id=shop.id) + "?q=%00&page=%00")
    assert response.status_code == 400
    assert "must not contain a NUL character" in text(response)


def test_a_schema_of_another_database_is_not_found(shop, reader, registered):
    other = Database.objects.create(name="other", encrypted_url=encrypt(registered.url))
    schema = Schema.objects.filter(database=shop)[0]
    assert reader.get(f"/databases/{other.id}/tables/?schema={schema.id}").status_code == 404


def test_a_script_named_table_renders_as_text(shop, user_db, reader):
    user_db.execute(f'CREATE TABLE public."{SCRIPT_NAME}" ("{SCRIPT_NAME}" text)')
    user_db.execute(f"INSERT INTO public.\"{SCRIPT_NAME}\" VALUES ('{SCRIPT_NAME}')")
    runs.reflect(shop.id)
    table = Table.objects.get(name=SCRIPT_NAME)
    for url in (f"/databases/{shop.id}/tables/", f"/tables/{table.id}/"):
        html = reader.get(url).content.decode()
        assert "<img" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_table_page_shows_columns_and_records_with_null_apart_from_empty(shop, user_db, reader):
    user_db.execute(
        "INSERT INTO shop.orders VALUES (1, NULL), (2, ''), (3, repeat('long ', 40) || 'end')"
    )
    table = Table.objects.get(name="orders")
    page = reader.get(f"/tables/{table.id}/")
    html, visible = page.content.decode(), text(page)
    assert page.status_code == 200
    assert "1 id integer no primary key" in visible
    assert "2 note text yes" in visible
    assert "3 rows, showing 1 to 3, ordered by id" in visible
    assert '<td class="null"><span class="null">NULL</span></td>' in html
    assert '<td class="empty-string">' in html
    # A long value is cut, the whole of it one click away.
    assert "<details><summary>" + "long " * 16 + "…</summary>" in html
    assert "long " * 40 + "end</div>" in html


def test_table_page_marks_an_estimated_count(shop, user_db, reader):
    user_db.execute(
        "INSERT INTO public.notes SELECT generate_series(1, 20000); ANALYZE public.notes"
    )
    page = text(reader.get(f"/tables/{Table.objects.get(name='notes').id}/"))
    assert re.search(r"about \d+ rows \(an estimate\), showing 1 to 50", page)
    assert "next →" in page


def test_table_page_of_a_table_dropped_since_says_so(shop, user_db, reader):
    user_db.execute("DROP TABLE public.notes")
    response = reader.get(f"/tables/{Table.objects.get(name='notes').id}/")
    assert response.status_code == 404
    assert "table public.notes no longer exists in userdb: it was dropped" in text(response)


def test_history_page_lists_each_run_with_trigger_outcome_and_counts(shop, reader):
    page = reader.get(f"/databases/{shop.id}/history/")
    run = ReflectionRun.objects.get(database=shop)
    assert rows_of(page) == [run.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")]  # with its time zone
    assert re.search(r"\d{2}:\d{2}:\d{2} UTC Command \d+ ms Success 6 0 0 0 0 0", text(page))


def test_an_unchanged_poll_answers_204_and_a_change_the_new_fragment(shop, user_db, reader):
    url = f"/databases/{shop.id}/tables/?q=o"
    page = reader.get(url)
    version = version_of(page)
    assert "<html" in page.content.decode()

    unchanged = poll(reader, url, version)
    assert unchanged.status_code == 204
    assert unchanged.content == b""

    user_db.execute("CREATE TABLE public.orders_arrived (id int)")
    runs.reflect(shop.id)
    changed = poll(reader, url, version)
    assert changed.status_code == 200
    assert "<html" not in changed.content.decode()  # the fragment only
    assert "orders_arrived" in rows_of(changed)
    assert version_of(changed) != version
    assert poll(reader, url, version_of(changed)).status_code == 204


def test_the_fragment_polls_only_while_the_tab_is_visible_and_not_pushed(shop, reader):
    html = reader.get(f"/databases/{shop.id}/schemas/").content.decode()
    assert (
        'hx-trigger="every 2s [document.visibilityState === &#x27;visible&#x27;'
        ' &amp;&amp; !window.dbsyncPushed], dbsync:changed from:body"'
    ) in html
    assert "/static/django_htmx/htmx-2" in html  # served by the project, no CDN


def test_databases_poll_sees_a_queued_reflection(shop, staff):
    version = version_of(staff.get("/"))
    assert poll(staff, "/", version).status_code == 204
    held = HeldDatabaseRow(shop)  # a session worker that takes the task cannot finish it yet
    try:
        staff.post(f"/databases/{shop.id}/refresh/")
        changed = poll(staff, "/", version)
    finally:
        held.release()
    assert changed.status_code == 200
    assert re.search('data-status="(queued|running)"', changed.content.decode())


def test_an_import_under_way_shows_its_progress(shop, staff):
    token = uuid.uuid4().hex
    store.client().set(store.lease_key(shop.id), f"running:{token}", ex=60)
    current_app.backend.store_result(
        token, {"done": 1, "total": 3, "current": "userdb"}, "PROGRESS"
    )
    page = staff.get("/")
    html = page.content.decode()
    assert 'data-status="running"' in html
    assert '<progress value="1" max="3" aria-label="import progress">33 %</progress>' in html
    assert "1 / 3" in text(page)


def test_a_failed_database_shows_its_error_in_the_badge(shop, reader):
    Database.objects.filter(pk=shop.pk).update(last_error="could not connect to userdb")
    recency.expire(shop.id)
    store.client().set(store.backoff_key(shop.id), 60, ex=60)
    row = text(reader.get("/"))
    assert "failed could not connect to userdb" in row


def test_a_poll_after_the_session_ended_sends_the_page_to_the_login_form(shop, reader):
    url = f"/databases/{shop.id}/tables/"
    version = version_of(reader.get(url))
    reader.logout()
    response = poll(reader, url, version)
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/login/?next={url}"
    assert response.content == b""


def test_the_records_page_shows_json_as_held_and_links_a_cut_value_to_its_whole(
    registered, user_db, reader
):
    user_db.execute(
        "CREATE TABLE docs (id int PRIMARY KEY, doc json, body text);"
        """ INSERT INTO docs VALUES (1, '{"x": 1e400, "z": 2.50}', repeat('q', 5000))"""
    )
    runs.reflect(registered.id)
    table = Table.objects.get(name="docs")

    response = reader.get(f"/tables/{table.id}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "{&quot;x&quot;: 1e400, &quot;z&quot;: 2.50}" in page
    assert "Infinity" not in page
    assert "q" * 5001 not in page
    link = f'href="/api/v1/tables/{table.id}/value/?column=body&amp;offset=0"'
    assert link in page
    assert "the whole value, 5000 bytes" in page


SEARCHED_PAGES = {
    "databases": "/",
    "schemas": "/databases/{id}/schemas/",
    "tables": "/databases/{id}/tables/",
}


@pytest.mark.parametrize("path", SEARCHED_PAGES.values(), ids=SEARCHED_PAGES.keys())
@pytest.mark.parametrize(
    ("query", "message"),
    [("q=%00", "must not contain a NUL"), ("q=" + "x" * 201, "at most 200 characters")],
    ids=["nul", "too-long"],
)
def test_a_search_the_api_would_refuse_is_a_400_on_the_pages_too(
    shop, reader, path, query, message
):
    response = reader.get(path.format(id=shop.id) + "?" + query)

    assert response.status_code == 400
    assert message in text(response)


def test_every_page_names_the_favicon_and_favicon_ico_leads_to_it(shop, reader):
    html = reader.get(f"/databases/{shop.id}/tables/").content.decode()
    assert 'rel="icon" href="/static/sync/favicon.svg"' in html

    found = reader.get("/favicon.ico", follow=True)

    assert found.status_code == 200
    assert found.redirect_chain[-1][0] == "/static/sync/favicon.svg"
