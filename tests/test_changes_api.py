"""The change feed's API: per database, schema and table, filtered, cursor paginated, granted."""

import json

import pytest
from rest_framework.utils.encoders import JSONEncoder

from sync.models import ChangeEvent, Database, Schema, Table
from sync.reflection import registry
from sync.web.api.serializers import ChangeEventSerializer
from tests.helpers import ScratchDatabase, client_for, create_scratch, make_user, reflect_recorded

pytestmark = pytest.mark.django_db


@pytest.fixture
def changed(registered: Database, user_db: ScratchDatabase) -> Database:
    """A database imported, then changed: a schema and two tables created, one renamed."""
    user_db.execute("CREATE TABLE a (id int)")
    reflect_recorded(registered.id)
    user_db.execute(
        "CREATE SCHEMA app; CREATE TABLE app.b (id int); CREATE TABLE app.c (id int);"
        "ALTER TABLE a RENAME TO a2"
    )
    reflect_recorded(registered.id)
    return registered


def names(response) -> list[tuple[str, str]]:
    return [(event["kind"], event["name_after"]) for event in response.json()["results"]]


def test_the_database_feed_lists_its_events_newest_first(changed, reader):
    response = reader.get(f"/api/v1/databases/{changed.id}/changes/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert len(rows) == 4
    assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), reverse=True)
    assert {(row["kind"], row["name_after"]) for row in rows} == {
        ("created", "app"), ("created", "b"), ("created", "c"), ("renamed", "a2"),
    }  # fmt: skip
    assert all(not row["actor_known"] and row["time_seen"] for row in rows)


def test_the_feed_pages_by_cursor_without_repeats(changed, reader):
    first = reader.get(f"/api/v1/databases/{changed.id}/changes/?limit=3").json()
    assert len(first["results"]) == 3
    second = reader.get(first["next"]).json()
    assert len(second["results"]) == 1
    assert second["next"] is None
    seen = [row["id"] for row in first["results"] + second["results"]]
    assert len(set(seen)) == 4


def test_the_feed_of_a_schema_and_of_a_table(changed, reader):
    app = Schema.objects.get(database=changed, name="app")
    a2 = Table.objects.get(database=changed, name="a2")
    in_app = names(reader.get(f"/api/v1/schemas/{app.id}/changes/"))
    assert sorted(in_app) == [("created", "app"), ("created", "b"), ("created", "c")]
    assert names(reader.get(f"/api/v1/tables/{a2.id}/changes/")) == [("renamed", "a2")]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("kind=renamed", [("renamed", "a2")], id="kind"),
        pytest.param("role=alice", [], id="role"),
        pytest.param("since=2999-01-01T00:00:00Z", [], id="since"),
        pytest.param("until=2000-01-01T00:00:00Z", [], id="until"),
    ],
)
def test_the_feed_filters(changed, reader, query, expected):
    assert names(reader.get(f"/api/v1/databases/{changed.id}/changes/?{query}")) == expected


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("kind=exploded", id="kind"),
        pytest.param("since=yesterday", id="since"),
        pytest.param("limit=0", id="limit"),
        pytest.param("table=x", id="table"),
        pytest.param("role=" + "r" * 65, id="role-too-long"),
    ],
)
def test_bad_filters_answer_400_with_the_reason(changed, reader, query):
    response = reader.get(f"/api/v1/databases/{changed.id}/changes/?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_a_reader_gets_the_same_404_for_a_database_not_granted_and_one_that_does_not_exist(
    changed, db
):
    outsider = client_for(make_user("outsider", granted=False))
    table = Table.objects.get(database=changed, name="a2")
    for url in (
        f"/api/v1/databases/{changed.id}/changes/",
        f"/api/v1/tables/{table.id}/changes/",
        f"/api/v1/schemas/{table.schema_id}/changes/",
    ):
        denied = outsider.get(url)
        assert denied.status_code == 404, url
    missing = outsider.get("/api/v1/databases/999999/changes/")
    assert denied.json()["code"] == missing.json()["code"] == "not_found"


def test_a_reader_sees_only_the_events_of_granted_databases(changed, scratch_factory):
    other_db = create_scratch()
    scratch_factory.append(other_db)
    other, _ = registry.register("other", other_db.url)
    ChangeEvent.objects.filter(database=changed).update(database=other)
    other.grants.all().delete()
    reader = client_for(make_user("narrow"))
    assert reader.get(f"/api/v1/databases/{other.id}/changes/").status_code == 404
    assert reader.get(f"/api/v1/databases/{changed.id}/changes/").json()["results"] == []


def test_client_address_and_pid_are_for_staff_only(changed, reader, staff):
    ChangeEvent.objects.update(client_addr="192.0.2.7", backend_pid=4242, role="alice")
    url = f"/api/v1/databases/{changed.id}/changes/"
    seen_by_reader = reader.get(url).json()["results"][0]
    assert "client_addr" not in seen_by_reader
    assert "backend_pid" not in seen_by_reader
    assert seen_by_reader["role"] == "alice"
    seen_by_staff = staff.get(url).json()["results"][0]
    assert seen_by_staff["client_addr"] == "192.0.2.7"
    assert seen_by_staff["backend_pid"] == 4242


@pytest.mark.parametrize("who", ["reader", "staff"])
def test_the_feeds_rows_are_those_the_serializer_writes(changed, reader, staff, who):
    client = reader if who == "reader" else staff
    ChangeEvent.objects.filter(name_after="b").update(xid=99, role="alice", client_addr="::1")
    rows = client.get(f"/api/v1/databases/{changed.id}/changes/").json()["results"]
    request = RequestStub(staff=who == "staff")
    events = ChangeEvent.objects.filter(database=changed).order_by("-id")
    expected = ChangeEventSerializer(events, many=True, context={"request": request}).data
    assert rows == json.loads(json.dumps(expected, cls=JSONEncoder))


class RequestStub:
    def __init__(self, staff: bool) -> None:
        self.user = type("User", (), {"is_staff": staff})()
