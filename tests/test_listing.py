"""The tables page: partitions folded with their counts, facts, sortable headers, the table page."""

import re

import pytest
from django.test import Client

from sync.models import Database, DatabaseGrant, Table
from sync.reflection import runs
from tests.helpers import make_partitions, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser_client() -> Client:
    client = Client()
    client.force_login(make_user("reader"))
    return client


@pytest.fixture
def partitioned(registered: Database, user_db) -> Database:
    make_partitions(user_db)
    user_db.execute("COMMENT ON TABLE plain IS 'a <b>plain</b> one'")
    runs.reflect(registered.id)
    return registered


def names(response) -> list[str]:
    """Return the listed relations' names (the link text of each row header), in order."""
    body = response.content.decode().split("<tbody>", 1)[-1].split("</tbody>", 1)[0]
    return re.findall(r'<th scope="row">(?:<a href="[^"]*">)?([^<]+)', body)


def test_the_page_folds_partitions_and_counts_them(partitioned, browser_client):
    response = browser_client.get(f"/databases/{partitioned.id}/tables/")

    page = response.content.decode()
    assert names(response) == ["events", "plain", "sales"]
    assert "50 partitions</a>" in page
    assert "3 partitions, 9 in all</a>" in page
    assert "59 partitions folded under their parents" in page
    assert "a &lt;b&gt;plain&lt;/b&gt; one" in page  # the comment, escaped


def test_the_flag_lists_partitions_in_place(partitioned, browser_client):
    response = browser_client.get(f"/databases/{partitioned.id}/tables/?flat=on")

    assert len(names(response)) == 62
    assert "partition of <a" in response.content.decode()


def test_a_parents_page_lists_its_partitions(partitioned, browser_client):
    sales = Table.objects.get(database=partitioned, name="sales")

    listed = browser_client.get(f"/databases/{partitioned.id}/tables/?parent={sales.id}")
    table_page = browser_client.get(f"/tables/{sales.id}/").content.decode()

    assert names(listed) == ["sales_0", "sales_1", "sales_2"]
    assert "Partitions of sales" in listed.content.decode()
    assert re.findall(r'<li id="oid-\d+"><a href="[^"]+">(\w+)</a>', table_page) == [
        "sales_0", "sales_1", "sales_2",
    ]  # fmt: skip
    partition = Table.objects.get(database=partitioned, name="sales_0_1")
    assert "partition of <a" in browser_client.get(f"/tables/{partition.id}/").content.decode()


def test_a_search_shows_the_partition_with_its_parent(partitioned, browser_client):
    response = browser_client.get(f"/databases/{partitioned.id}/tables/?q=events_4")

    assert names(response)[:2] == ["events_4", "events_40"]
    assert "partition of <a" in response.content.decode()


def test_headers_sort_and_a_second_click_reverses(partitioned, browser_client, user_db):
    user_db.execute("INSERT INTO plain SELECT generate_series(1, 2000); ANALYZE plain")
    url = f"/databases/{partitioned.id}/tables/"

    by_rows = browser_client.get(url + "?ordering=-rows")
    by_name = browser_client.get(url + "?ordering=-name")

    assert names(by_rows)[0] == "plain"
    assert 'aria-sort="descending"' in by_rows.content.decode()
    assert names(by_name) == ["sales", "plain", "events"]
    assert "?ordering=name" in by_name.content.decode()  # clicking Name again: ascending


def test_facts_are_blank_with_the_reason_when_the_database_does_not_answer(
    partitioned, browser_client
):
    partitioned.url = "postgresql://nobody@127.0.0.1:1/none"
    partitioned.save()

    response = browser_client.get(f"/databases/{partitioned.id}/tables/")

    assert response.status_code == 200
    assert names(response) == ["events", "plain", "sales"]
    assert "Rows, size, columns and comments are blank: facts not read" in response.content.decode()


def test_a_reader_without_the_records_grant_is_told_why(partitioned):
    DatabaseGrant.objects.filter(database=partitioned).update(records=False)
    client = Client()
    client.force_login(make_user("lister"))
    plain = Table.objects.get(database=partitioned, name="plain")

    page = client.get(f"/tables/{plain.id}/").content.decode()

    assert "Records not shown: you may list the tables of userdb but not read their records" in page
