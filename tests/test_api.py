"""The REST API as a client sees it: listing, filters, registration, errors and permissions."""

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sync.changes import recency
from sync.exceptions import InvalidDatabaseURL
from sync.models import Database, Schema, Table
from sync.reflection import registry, runs
from tests.helpers import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def reflected(registered, user_db) -> Database:
    user_db.execute(
        "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int);"
        " CREATE TABLE shop.order_lines (id int);"
        " CREATE VIEW shop.recent_orders AS SELECT 1 AS id; CREATE TABLE public.notes (id int)"
    )
    runs.reflect(registered.id)
    registered.refresh_from_db()
    return registered


def names(response) -> list[str]:
    return sorted(row["name"] for row in response.json()["results"])


def test_anonymous_is_refused_with_401():
    response = APIClient().get("/api/v1/databases/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_token_authentication_reads(db):
    user = make_user("scripted")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.get("/api/v1/databases/").status_code == 200


def test_session_authentication_reads(db):
    make_user("browser")
    client = APIClient()
    assert client.login(username="browser", password="browser-pw")
    assert client.get("/api/v1/databases/").status_code == 200


def test_table_list_filters(reader, reflected):
    shop = Schema.objects.get(name="shop")

    assert names(reader.get(f"/api/v1/tables/?database={reflected.id}")) == [
        "notes", "order_lines", "orders", "recent_orders",
    ]  # fmt: skip
    assert names(reader.get(f"/api/v1/tables/?schema={shop.id}")) == [
        "order_lines", "orders", "recent_orders",
    ]  # fmt: skip
    assert names(reader.get(f"/api/v1/tables/?database={reflected.id}&kind=view")) == [
        "recent_orders"
    ]
    assert names(reader.get(f"/api/v1/tables/?database={reflected.id}&search=ORDER")) == [
        "order_lines", "orders", "recent_orders",
    ]  # fmt: skip


def test_schema_list_and_freshness_headers(reader, reflected):
    recency.mark_recent(reflected.id, reflected.reflected_at)
    response = reader.get(f"/api/v1/schemas/?database={reflected.id}")

    assert response.status_code == 200
    assert names(response) == ["public", "shop"]
    assert response["X-Reflected-At"] == reflected.reflected_at.isoformat()
    assert response["X-Reflection-Status"] == "fresh"
    recency.expire(reflected.id)
    assert reader.get(f"/api/v1/schemas/?database={reflected.id}")["X-Reflection-Status"] == (
        "queued"
    )


def test_dropped_objects_are_hidden_unless_asked_for(reader, reflected):
    Table.objects.filter(name="notes").update(dropped_at=timezone.now())

    listed = names(reader.get(f"/api/v1/tables/?database={reflected.id}"))
    with_dropped = names(
        reader.get(f"/api/v1/tables/?database={reflected.id}&include_dropped=true")
    )

    assert "notes" not in listed
    assert "notes" in with_dropped


def test_pagination(reader, reflected):
    response = reader.get(f"/api/v1/tables/?database={reflected.id}&limit=2&offset=1")
    body = response.json()
    assert body["count"] == 4
    assert len(body["results"]) == 2
    assert body["next"] is not None


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/api/v1/schemas/", 400, "database"),
        ("/api/v1/schemas/?database=abc", 400, "whole number"),
        ("/api/v1/schemas/?database=-1", 400, "whole number"),
        ("/api/v1/schemas/?database=999999", 404, "No Database matches"),
        ("/api/v1/tables/?schema=999999", 404, "No Schema matches"),
        ("/api/v1/tables/?database={id}&kind=index", 400, "must be one of"),
        ("/api/v1/tables/?database={id}&include_dropped=maybe", 400, "true or false"),
        ("/api/v1/tables/?database={id}&limit=0", 400, "from 1 to 1000"),
        ("/api/v1/tables/?database={id}&limit=ten", 400, "whole number"),
        ("/api/v1/tables/?database={id}&offset=-5", 400, "whole number"),
        ("/api/v1/tables/999999/", 404, "No Table matches"),
        ("/api/v1/tables/abc/", 400, "whole number"),
        ("/api/v1/databases/999999/", 404, "No Database matches"),
    ],
    ids=[
        "schemas-without-database", "database-not-a-number", "database-negative",
        "unknown-database", "unknown-schema", "unknown-kind", "bad-boolean", "limit-zero",
        "limit-not-a-number", "negative-offset", "unknown-table", "table-id-not-a-number",
        "unknown-database-detail",
    ],
)  # fmt: skip
def test_bad_input_gets_a_4xx_with_a_message(reader, registered, url, status, message):
    response = reader.get(url.format(id=registered.id))
    assert response.status_code == status
    assert message in response.content.decode()


def test_staff_registers_a_database_and_never_sees_its_password(staff, user_db):
    url = user_db.url.replace("postgres@", "postgres:s3cret-pw@")

    response = staff.post("/api/v1/databases/", {"name": "shop", "url": url}, format="json")

    assert response.status_code == 201, response.content
    assert "s3cret-pw" not in response.content.decode()
    assert response.json()["location"].startswith("postgresql://postgres:***@")
    detail = staff.get(f"/api/v1/databases/{response.json()['id']}/")
    assert "s3cret-pw" not in detail.content.decode()
    assert detail.json()["status"] == "stale"  # registered, never reflected, nothing queued


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root:s3cret-pw@db/shop", "not a PostgreSQL URL"),
        ("postgresql://u:s3cret-pw@127.0.0.1:1/shop", "Connection refused"),
    ],
    ids=["not-postgresql", "unreachable"],
)
def test_registering_a_bad_database_is_a_400_without_the_password(staff, url, message):
    response = staff.post("/api/v1/databases/", {"name": "shop", "url": url}, format="json")

    assert response.status_code == 400
    assert message in response.content.decode()
    assert "s3cret-pw" not in response.content.decode()
    assert not Database.objects.exists()


def test_registering_a_taken_name_is_a_400(staff, registered, user_db):
    response = staff.post(
        "/api/v1/databases/", {"name": registered.name, "url": user_db.url}, format="json"
    )
    assert response.status_code == 400
    assert "already exists" in response.content.decode()


def test_non_staff_cannot_register_or_trigger(reader, registered, user_db):
    register = reader.post("/api/v1/databases/", {"name": "x", "url": user_db.url}, format="json")
    trigger = reader.post(f"/api/v1/databases/{registered.id}/reflect/")

    assert (register.status_code, trigger.status_code) == (403, 403)
    assert "staff" in trigger.json()["detail"]


def test_openapi_schema_and_docs_are_served(reader):
    assert reader.get("/api/schema/").status_code == 200
    assert reader.get("/api/docs/").status_code == 200


def test_registry_refuses_bad_names(db):
    with pytest.raises(InvalidDatabaseURL, match="invalid database name"):
        registry.register("no spaces please", "postgresql://u@h/d")
