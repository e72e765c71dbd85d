"""Who may read what: a reader granted one database sees exactly that one; staff see all."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from sync.models import Database, DatabaseGrant, Schema, Table
from sync.reflection import registry, runs
from sync.web import access
from tests.helpers import client_for, create_scratch, make_user

pytestmark = pytest.mark.django_db

MISSING = 999_999_999


@pytest.fixture
def two_databases(user_db, scratch_factory) -> tuple[Database, Database]:
    """A granted database and a hidden one, each with a schema and a table of one row."""
    other = create_scratch()
    scratch_factory.append(other)
    databases = []
    for name, scratch in (("granted", user_db), ("hidden", other)):
        scratch.execute(f"CREATE SCHEMA s_{name}; CREATE TABLE s_{name}.t AS SELECT 1 AS n")
        database, _ = registry.register(name, scratch.url)
        runs.reflect(database.id)
        databases.append(database)
    return databases[0], databases[1]


def analyst(granted: Database, records: bool) -> APIClient:
    group = Group.objects.create(name="analysts")
    DatabaseGrant.objects.create(database=granted, group=group, records=records)
    user = make_user("alice", granted=False)
    user.groups.add(group)
    return client_for(user)


def objects_of(database: Database) -> tuple[Schema, Table]:
    return Schema.objects.get(database=database, name__startswith="s_"), Table.objects.get(
        database=database
    )


def paths(database_id: int, schema_id: int, table_id: int) -> dict[str, str]:
    return {
        "database": f"/api/v1/databases/{database_id}/",
        "schema list": f"/api/v1/schemas/?database={database_id}",
        "schema": f"/api/v1/schemas/{schema_id}/",
        "table list": f"/api/v1/tables/?database={database_id}",
        "table list by schema": f"/api/v1/tables/?schema={schema_id}",
        "table": f"/api/v1/tables/{table_id}/",
        "columns": f"/api/v1/tables/{table_id}/columns/",
        "records": f"/api/v1/tables/{table_id}/records/",
    }


def test_a_reader_lists_only_the_database_granted(two_databases):
    granted, _hidden = two_databases
    client = analyst(granted, records=False)

    listed = client.get("/api/v1/databases/").json()["results"]
    assert [row["name"] for row in listed] == ["granted"]


def test_a_database_not_granted_answers_exactly_as_one_that_does_not_exist(two_databases):
    granted, hidden = two_databases
    client = analyst(granted, records=True)
    schema, table = objects_of(hidden)

    hidden_paths = paths(hidden.id, schema.id, table.id)
    missing_paths = paths(MISSING, MISSING, MISSING)
    for what, path in hidden_paths.items():
        response, missing = client.get(path), client.get(missing_paths[what])
        assert (what, response.status_code) == (what, 404)
        assert (what, response.content) == (what, missing.content)


def test_a_reader_without_the_records_grant_lists_but_reads_no_records(two_databases):
    granted, _ = two_databases
    client = analyst(granted, records=False)
    schema, table = objects_of(granted)

    for what, path in paths(granted.id, schema.id, table.id).items():
        if what != "records":
            assert (what, client.get(path).status_code) == (what, 200)
    refused = client.get(f"/api/v1/tables/{table.id}/records/")
    assert refused.status_code == 403
    assert "records grant" in refused.json()["detail"]


def test_the_records_grant_lets_a_reader_read_rows(two_databases):
    granted, _ = two_databases
    client = analyst(granted, records=True)
    _, table = objects_of(granted)

    response = client.get(f"/api/v1/tables/{table.id}/records/")
    assert response.status_code == 200
    assert response.json()["rows"] == [[1]]


def test_staff_see_every_database(two_databases, staff):
    listed = staff.get("/api/v1/databases/").json()["results"]
    assert sorted(row["name"] for row in listed) == ["granted", "hidden"]
    _, table = objects_of(two_databases[1])
    assert staff.get(f"/api/v1/tables/{table.id}/records/").status_code == 200


def test_a_user_in_no_granted_group_sees_nothing(two_databases):
    client = client_for(make_user("nobody", granted=False))
    assert client.get("/api/v1/databases/").json()["results"] == []
    user = make_user("inactive", granted=False)
    user.is_active = False
    assert list(access.readable_databases(user)) == []


def test_grants_are_managed_inline_in_the_database_admin(two_databases, client):
    granted, _ = two_databases
    group = Group.objects.create(name="analysts")
    operator = make_user("operator", staff=True)
    operator.is_superuser = True
    operator.save()
    client.force_login(operator)

    response = client.post(
        f"/admin/sync/database/{granted.pk}/change/",
        {
            "name": "granted",
            "new_url": "",
            "grants-TOTAL_FORMS": "1",
            "grants-INITIAL_FORMS": "0",
            "grants-0-group": str(group.pk),
            "grants-0-records": "on",
        },
    )
    assert response.status_code == 302
    assert list(DatabaseGrant.objects.filter(group=group).values_list("records", flat=True)) == [
        True
    ]
