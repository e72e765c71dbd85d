"""The tables list: partitions folded under their parent, facts read now, sorting, natural order."""

import pytest

from sync.models import Database, Table
from sync.reflection import runs
from tests.helpers import admin_connection, make_partitions, one_row

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def partitioned(registered: Database, user_db) -> Database:
    make_partitions(user_db)
    runs.reflect(registered.id)
    return registered


def listed(reader, database: Database, query: str = "") -> list[dict]:
    response = reader.get(f"/api/v1/tables/?database={database.id}&limit=1000{query}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_partitions_are_folded_under_their_parent_with_their_counts(partitioned, reader):
    rows = {row["name"]: row for row in listed(reader, partitioned)}

    assert set(rows) == {"events", "sales", "plain"}
    assert (rows["events"]["partitions"], rows["events"]["partitions_in_all"]) == (50, 50)
    assert (rows["sales"]["partitions"], rows["sales"]["partitions_in_all"]) == (3, 9)
    assert (rows["plain"]["partitions"], rows["plain"]["partitions_in_all"]) == (0, 0)


def test_parent_lists_its_partitions(partitioned, reader):
    sales = Table.objects.get(database=partitioned, name="sales")

    rows = listed(reader, partitioned, f"&parent={sales.id}")

    assert [row["name"] for row in rows] == ["sales_0", "sales_1", "sales_2"]
    assert all(row["parent"] == sales.id and row["partitions"] == 2 for row in rows)


def test_flat_lists_every_partition_in_place(partitioned, reader):
    rows = listed(reader, partitioned, "&flat=true")

    assert len(rows) == 3 + 50 + 3 + 6


def test_a_search_finds_a_partition_and_names_its_parent(partitioned, reader):
    rows = listed(reader, partitioned, "&search=sales_1_")

    assert [(row["name"], row["parent_name"]) for row in rows] == [
        ("sales_1_0", "sales_1"),
        ("sales_1_1", "sales_1"),
    ]


def test_attach_and_detach_move_a_partition(partitioned, reader, user_db):
    user_db.execute("ALTER TABLE events DETACH PARTITION events_7")
    runs.reflect(partitioned.id)
    assert "events_7" in {row["name"] for row in listed(reader, partitioned)}

    user_db.execute("ALTER TABLE events ATTACH PARTITION events_7 FOR VALUES FROM (70) TO (80)")
    runs.reflect(partitioned.id)
    names = {row["name"] for row in listed(reader, partitioned)}
    assert "events_7" not in names
    events = Table.objects.get(database=partitioned, name="events")
    assert Table.objects.get(database=partitioned, name="events_7").parent_id == events.id


def test_a_parent_of_another_database_is_a_404(partitioned, reader, scratch_factory):
    other, _ = Database.objects.get_or_create(name="other", defaults={"encrypted_url": ""})
    sales = Table.objects.get(database=partitioned, name="sales")

    response = reader.get(f"/api/v1/tables/?database={other.id}&parent={sales.id}")

    assert response.status_code == 404


def test_names_sort_in_natural_order_any_case(registered, user_db, reader):
    user_db.execute(
        'CREATE TABLE "Orders" (id int); CREATE TABLE authors (id int);'
        ' CREATE TABLE t10 (id int); CREATE TABLE t2 (id int); CREATE TABLE "T3" (id int)'
    )
    runs.reflect(registered.id)

    assert [row["name"] for row in listed(reader, registered)] == [
        "authors", "Orders", "t2", "T3", "t10",
    ]  # fmt: skip
    descending = [row["name"] for row in listed(reader, registered, "&ordering=-name")]
    assert descending == ["t10", "T3", "t2", "Orders", "authors"]


def test_facts_match_the_database_and_sort_by_rows_and_size(registered, user_db, reader):
    user_db.execute(
        "CREATE TABLE small (id int, note text); INSERT INTO small SELECT 1, 'x';"
        " CREATE TABLE big (id int); INSERT INTO big SELECT generate_series(1, 5000);"
        " COMMENT ON TABLE big IS 'the big one'; CREATE VIEW v AS SELECT 1 AS one;"
        " ANALYZE small; ANALYZE big"
    )
    runs.reflect(registered.id)

    rows = {row["name"]: row for row in listed(reader, registered, "&facts=true")}

    with admin_connection(user_db.name) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint, pg_total_relation_size(oid) FROM pg_class"
            " WHERE oid = 'big'::regclass"
        )
        expected_rows, expected_size = one_row(cursor)
    assert rows["big"]["facts"] == {
        "oid": rows["big"]["oid"], "rows": expected_rows, "size": expected_size, "columns": 1,
        "comment": "the big one",
    }  # fmt: skip
    assert rows["small"]["facts"]["columns"] == 2
    assert rows["v"]["facts"]["rows"] is None
    assert rows["v"]["facts"]["size"] is None
    by_rows = [row["name"] for row in listed(reader, registered, "&ordering=-rows")]
    assert by_rows == ["big", "small", "v"]
    by_size = [row["name"] for row in listed(reader, registered, "&ordering=size")]
    assert by_size == ["small", "big", "v"]


def test_facts_of_a_partitioned_table_sum_its_leaves(partitioned, reader, user_db):
    user_db.execute("INSERT INTO events SELECT n, n FROM generate_series(0, 499) n; ANALYZE events")

    rows = {row["name"]: row for row in listed(reader, partitioned, "&facts=true")}

    assert rows["events"]["facts"]["rows"] == 500
    assert rows["events"]["facts"]["size"] > 0


def test_facts_are_blank_with_a_reason_when_the_database_does_not_answer(registered, reader):
    runs.reflect(registered.id)
    Table.objects.create(
        database=registered, schema=registered.schemas.first(), oid=1, name="t", kind="table"
    )
    registered.url = "postgresql://nobody@127.0.0.1:1/none"
    registered.save()

    response = reader.get(f"/api/v1/tables/?database={registered.id}&facts=true&ordering=rows")

    assert response.status_code == 200
    assert [row["facts"] for row in response.json()["results"]] == [None]
    assert "not sorted by rows" in response["X-Facts-Error"]
    # Now known to fail: the next list does not wait for it again.
    again = reader.get(f"/api/v1/tables/?database={registered.id}&facts=true")
    assert "did not answer lately" in again["X-Facts-Error"]


@pytest.mark.parametrize("ordering", ["rows;", "-", "--name", "oid"], ids=str)
def test_an_unknown_ordering_is_a_400(registered, reader, ordering):
    response = reader.get(f"/api/v1/tables/?database={registered.id}&ordering={ordering}")

    assert response.status_code == 400
    assert "ordering" in response.json()["detail"]


def test_ordering_by_schema_and_kind_then_natural_name(registered, user_db, reader):
    user_db.execute(
        "CREATE SCHEMA b; CREATE SCHEMA a; CREATE TABLE b.t1 (id int); CREATE VIEW a.v2 AS"
        " SELECT 1; CREATE TABLE a.t10 (id int); CREATE TABLE a.t9 (id int)"
    )
    runs.reflect(registered.id)

    by_schema = [
        (r["schema_name"], r["name"]) for r in listed(reader, registered, "&ordering=schema")
    ]
    by_kind = [(r["kind"], r["name"]) for r in listed(reader, registered, "&ordering=-kind")]

    assert by_schema == [("a", "t9"), ("a", "t10"), ("a", "v2"), ("b", "t1")]
    assert by_kind == [("view", "v2"), ("table", "t1"), ("table", "t9"), ("table", "t10")]
