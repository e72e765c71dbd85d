"""Columns and records through the API, read on the fly under the table's current name."""

import pytest

from sync.changes import leases
from sync.encryption import encrypt
from sync.models import Database, Table
from sync.reflection import names, runs
from tests.helpers import quote

pytestmark = pytest.mark.django_db(transaction=True)

ODD = 'Ünïcode "quoted" name.with dots'


@pytest.fixture
def odd_table(registered, user_db) -> Table:
    quoted = quote(ODD)
    user_db.execute(
        f"CREATE SCHEMA {quoted};"
        f" CREATE TABLE {quoted}.{quoted} (id int PRIMARY KEY, label text NOT NULL DEFAULT 'x');"
        f" INSERT INTO {quoted}.{quoted} SELECT i, 'row ' || i FROM generate_series(1, 120) i"
    )
    runs.reflect(registered.id)
    return Table.objects.get(name=ODD)


def test_columns_of_an_odd_name(reader, odd_table):
    response = reader.get(f"/api/v1/tables/{odd_table.id}/columns/")

    assert response.status_code == 200
    assert response.json()["columns"] == [
        {"position": 1, "name": "id", "type": "integer", "nullable": False, "default": None,
         "primary_key": True},
        {"position": 2, "name": "label", "type": "text", "nullable": False,
         "default": "'x'::text", "primary_key": False},
    ]  # fmt: skip


def test_records_page_through_an_odd_name_in_key_order(reader, odd_table):
    response = reader.get(f"/api/v1/tables/{odd_table.id}/records/?limit=5&offset=10")

    body = response.json()
    assert response.status_code == 200
    assert body["columns"] == ["id", "label"]
    assert body["rows"] == [[i, f"row {i}"] for i in range(11, 16)]
    assert (body["count"], body["count_is_estimate"]) == (120, False)
    assert body["ordered_by"] == ["id"]


def test_records_default_to_fifty_rows(reader, odd_table):
    body = reader.get(f"/api/v1/tables/{odd_table.id}/records/").json()
    assert (body["limit"], len(body["rows"])) == (50, 50)


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "limit=ten", "offset=-1", "offset=x"],
    ids=["limit-zero", "limit-over-cap", "limit-not-a-number", "offset-negative", "offset-text"],
)
def test_bad_limit_or_offset_is_a_400(reader, odd_table, query):
    response = reader.get(f"/api/v1/tables/{odd_table.id}/records/?{query}")
    assert response.status_code == 400
    assert response.json()


def test_a_table_renamed_since_the_last_reflection_is_still_read_and_a_reflection_queued(
    reader, registered, user_db, odd_table, published
):
    names.remember(registered.id, {odd_table.oid: (ODD, ODD)})
    quoted = quote(ODD)
    user_db.execute(f"ALTER TABLE {quoted}.{quoted} RENAME TO renamed")

    response = reader.get(f"/api/v1/tables/{odd_table.id}/records/?limit=1")

    assert response.status_code == 200
    assert response.json()["rows"] == [[1, "row 1"]]
    assert names.lookup(registered.id, odd_table.oid) == (ODD, "renamed")
    assert len(published) == 1
    assert leases.holder(registered.id) is not None


def test_a_dropped_table_is_a_404_and_a_reflection_is_queued(
    reader, registered, user_db, odd_table, published
):
    quoted = quote(ODD)
    user_db.execute(f"DROP TABLE {quoted}.{quoted}")

    records = reader.get(f"/api/v1/tables/{odd_table.id}/records/")
    columns = reader.get(f"/api/v1/tables/{odd_table.id}/columns/")

    assert (records.status_code, columns.status_code) == (404, 404)
    assert "was dropped" in records.json()["detail"]
    assert len(published) == 1  # the second request found it queued


def test_an_unreachable_database_is_a_503_naming_it_without_the_password(reader, odd_table):
    Database.objects.filter(pk=odd_table.database_id).update(
        encrypted_url=encrypt("postgresql://reader:hunter2@127.0.0.1:1/shop")
    )
    response = reader.get(f"/api/v1/tables/{odd_table.id}/columns/")

    assert response.status_code == 503
    assert "127.0.0.1:1/shop" in response.json()["detail"]
    assert "hunter2" not in response.content.decode()


def test_records_of_a_view_and_a_materialized_view(reader, registered, user_db):
    user_db.execute(
        "CREATE TABLE base (n int PRIMARY KEY); INSERT INTO base VALUES (1), (2);"
        " CREATE VIEW doubled AS SELECT n * 2 AS twice FROM base;"
        " CREATE MATERIALIZED VIEW tripled AS SELECT n * 3 AS thrice FROM base ORDER BY n"
    )
    runs.reflect(registered.id)
    for name, expected in (("doubled", [[2], [4]]), ("tripled", [[3], [6]])):
        table = Table.objects.get(name=name)
        rows = reader.get(f"/api/v1/tables/{table.id}/records/").json()["rows"]
        assert sorted(rows) == expected


@pytest.fixture
def documents(registered, user_db) -> Table:
    user_db.execute(
        "CREATE TABLE docs (id int PRIMARY KEY, doc json, big bigint, body text);"
        """ INSERT INTO docs VALUES (1, '{"x": 1e400, "y": 1e-400, "z": 2.50}',"""
        " 9007199254740993, repeat('z', 3000))"
    )
    runs.reflect(registered.id)
    return Table.objects.get(name="docs")


def test_records_answer_json_numbers_with_the_digits_the_database_holds(reader, documents):
    response = reader.get(f"/api/v1/tables/{documents.id}/records/")

    assert response.status_code == 200
    assert b'[[1,{"x": 1e400, "y": 1e-400, "z": 2.50},9007199254740993,"zz' in response.content
    assert response.json()["cut"] == [{"row": 0, "column": "body", "octets": 3000}]


def test_records_as_text_give_numbers_and_json_as_their_exact_text(reader, documents):
    response = reader.get(f"/api/v1/tables/{documents.id}/records/?as_text=true")

    assert response.status_code == 200
    row = response.json()["rows"][0]
    assert row[:3] == ["1", '{"x": 1e400, "y": 1e-400, "z": 2.50}', "9007199254740993"]


def test_one_whole_value_is_read_through_the_api(reader, documents):
    response = reader.get(f"/api/v1/tables/{documents.id}/value/?column=body&offset=0")

    assert response.status_code == 200
    assert response.json() == {
        "column": "body", "offset": 0, "value": "z" * 3000, "octets": None, "cut": False
    }  # fmt: skip
    doc = reader.get(f"/api/v1/tables/{documents.id}/value/?column=doc&offset=0")
    assert b'"value":{"x": 1e400, "y": 1e-400, "z": 2.50},' in doc.content


@pytest.mark.parametrize(
    "query", ["column=nothing&offset=0", "column=body&offset=5"], ids=["no-column", "no-row"]
)
def test_a_value_that_is_not_there_is_a_404(reader, documents, query):
    response = reader.get(f"/api/v1/tables/{documents.id}/value/?{query}")

    assert response.status_code == 404
    assert response.json()["code"] == "value_not_found"
