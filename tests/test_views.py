"""The list path: rows read as values, the same JSON the serializers give, in fewer steps."""

import pytest

from sync.models import Schema, Table
from sync.reflection import runs
from sync.web.api.serializers import SchemaSerializer, TableSerializer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listed(registered, user_db):
    user_db.execute(
        "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int); CREATE VIEW shop.v AS SELECT 1;"
        " CREATE TABLE gone (id int)"
    )
    runs.reflect(registered.id)
    user_db.execute("DROP TABLE gone")
    runs.reflect(registered.id)  # one dropped row, with its dropped_at to render
    return registered


@pytest.mark.parametrize("query", ["", "&include_dropped=true", "&limit=1&offset=1"])
def test_the_table_list_gives_the_rows_the_serializer_gives(listed, reader, query):
    response = reader.get(f"/api/v1/tables/?database={listed.id}{query}")

    tables = Table.objects.filter(database=listed).select_related("schema")
    if "include_dropped" not in query:
        tables = tables.live()
    # None of them is partitioned: the list adds counts of 0.
    expected = [
        {**row, "partitions": 0, "partitions_in_all": 0}
        for row in TableSerializer(tables, many=True).data
    ]
    if "limit" in query:
        expected = expected[1:2]
    body = response.json()
    assert body["results"] == expected
    assert body["count"] == tables.count()


def test_the_schema_list_gives_the_rows_the_serializer_gives(listed, reader):
    response = reader.get(f"/api/v1/schemas/?database={listed.id}&include_dropped=true")

    expected = SchemaSerializer(Schema.objects.filter(database=listed), many=True).data
    assert response.json()["results"] == expected


def test_a_page_past_the_end_is_empty_and_still_counts_every_row(listed, reader):
    body = reader.get(f"/api/v1/tables/?database={listed.id}&limit=2&offset=50").json()

    assert (body["results"], body["count"]) == (
        [],
        Table.objects.live().filter(database=listed).count(),
    )
    assert body["previous"] is not None
