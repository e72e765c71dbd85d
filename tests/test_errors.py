"""Bad input as a new user sends it: a 4xx in one JSON shape with a stable code, never a 5xx."""

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework import exceptions
from rest_framework.test import APIClient

from project import gunicorn_worker
from sync.encryption import encrypt
from sync.exceptions import SyncError
from sync.models import Database, Schema, Table
from sync.reflection import runs

pytestmark = pytest.mark.django_db


def error_of(response, status: int) -> dict:
    """Return the error body after checking its status and its shape."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) <= {"code", "detail", "fields"}
    assert body["code"].isidentifier()
    assert body["detail"]
    return body


@pytest.fixture
def two_databases(registered, user_db, scratch_factory) -> tuple[Database, Database]:
    user_db.execute("CREATE SCHEMA shop")
    runs.reflect(registered.id)
    other = Database.objects.create(name="other", encrypted_url=encrypt(user_db.url))
    return registered, other


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("search=%00", "search", "NUL"),
        ("search=" + "x" * 201, "search", "at most 200"),
        ("kind=%00", "kind", "NUL"),
        ("database={id}&database={id}", "database", "given 2 times"),
        ("limit=100000", "limit", "from 1 to 1000"),
        ("limit=0", "limit", "from 1 to 1000"),
        ("offset=1&offset=2", "offset", "given 2 times"),
        ("database=0", "database", "from 1 to"),
        ("database=1234567890123456789", "database", "whole number"),
        ("limit=", "limit", "whole number"),
        ("kind=", "kind", "must be one of"),
        ("include_dropped=TRUE", "include_dropped", "true or false"),
    ],
    ids=[
        "nul-in-search", "search-too-long", "nul-in-kind", "repeated-database", "limit-over-cap",
        "limit-zero", "repeated-offset", "database-zero", "database-beyond-bigint", "empty-limit",
        "empty-kind", "boolean-in-capitals",
    ],
)  # fmt: skip
def test_bad_list_parameter_is_a_400_naming_it(reader, registered, query, field, message):
    base = "" if "database=" in query else f"database={registered.id}&"
    response = reader.get(f"/api/v1/tables/?{base}{query.format(id=registered.id)}")

    body = error_of(response, 400)
    assert body["code"] == "invalid"
    assert message in " ".join(body["fields"][field])
    assert field in body["detail"]


def test_list_limit_at_the_cap_is_served(reader, registered):
    response = reader.get(f"/api/v1/tables/?database={registered.id}&limit=1000")
    assert response.status_code == 200


def test_schema_of_another_database_is_a_400(reader, two_databases):
    mine, other = two_databases
    shop = Schema.objects.get(database=mine, name="shop")

    contradicting = reader.get(f"/api/v1/tables/?schema={shop.id}&database={other.id}")
    agreeing = reader.get(f"/api/v1/tables/?schema={shop.id}&database={mine.id}")

    body = error_of(contradicting, 400)
    assert f"schema {shop.id} is not a schema of database {other.id}" in body["detail"]
    assert agreeing.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "databases/abc/", "databases/0/", "databases/-1/", "databases/1.5/", "schemas/abc/",
        "tables/abc/", "tables/abc/columns/", "tables/%00/records/",
    ],
    ids=[
        "database-text", "database-zero", "database-negative", "database-decimal",
        "schema-text", "table-text", "columns-text", "records-nul",
    ],
)  # fmt: skip
def test_malformed_id_in_the_path_is_a_400(reader, path):
    body = error_of(reader.get(f"/api/v1/{path}"), 400)
    assert body["code"] == "invalid"
    assert "whole number" in body["fields"]["id"][0]


def test_malformed_id_of_a_staff_action_is_a_400(staff):
    error_of(staff.post("/api/v1/databases/abc/reflect/"), 400)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("databases/999999/", 404, "not_found"),
        ("no-such-endpoint/", 404, "not_found"),
        ("tables/?database=999999", 404, "not_found"),
    ],
    ids=["unknown-id", "unknown-endpoint", "unknown-database-filter"],
)
def test_unknown_things_are_a_404_in_the_same_shape(reader, path, status, code):
    assert error_of(reader.get(f"/api/v1/{path}"), status)["code"] == code


def test_anonymous_and_non_staff_get_their_own_codes(reader):
    anonymous = error_of(APIClient().get("/api/v1/databases/"), 401)
    forbidden = error_of(reader.post("/api/v1/databases/", {}, format="json"), 403)

    assert (anonymous["code"], forbidden["code"]) == ("not_authenticated", "permission_denied")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:s3cret-pw@127.0.0.1:abc/db",
        "postgresql://postgres:s3cret-pw@[::1/db",
        "postgresql://u:s3cret-pw@127.0.0.1:99999/db",
        "postgresql://u:s3cret-pw@127.0.0.1/d%00b",
        "",
    ],
    ids=["port-not-a-number", "unclosed-ipv6", "port-out-of-range", "nul", "empty"],
)
def test_registering_a_malformed_url_is_a_400_without_the_password(staff, url):
    response = staff.post("/api/v1/databases/", {"name": "shop", "url": url}, format="json")

    body = error_of(response, 400)
    assert body["code"] == "invalid"
    assert "url" in body["fields"]
    assert "s3cret-pw" not in response.content.decode()
    assert not Database.objects.exists()


@pytest.mark.parametrize(
    "name", ["with space", "", "x" * 64, "nul\x00"], ids=["space", "empty", "too-long", "nul"]
)
def test_registering_a_bad_name_is_a_400_on_the_name(staff, user_db, name):
    response = staff.post("/api/v1/databases/", {"name": name, "url": user_db.url}, format="json")
    assert "name" in error_of(response, 400)["fields"]


def test_malformed_body_is_a_400(staff):
    response = staff.generic(
        "POST", "/api/v1/databases/", "{not json", content_type="application/json"
    )
    assert error_of(response, 400)["code"] == "parse_error"


def test_unpopulated_materialized_view_is_a_409_saying_to_refresh_it(reader, registered, user_db):
    user_db.execute("CREATE MATERIALIZED VIEW later AS SELECT 1 AS one WITH NO DATA")
    runs.reflect(registered.id)
    table = Table.objects.get(name="later")

    body = error_of(reader.get(f"/api/v1/tables/{table.id}/records/"), 409)

    assert body["code"] == "not_populated"
    assert "REFRESH MATERIALIZED VIEW" in body["detail"]
    assert reader.get(f"/api/v1/tables/{table.id}/columns/").status_code == 200


def test_reflect_json_failure_prints_json(db):
    Database.objects.create(
        name="gone", encrypted_url=encrypt("postgresql://u:hunter2@127.0.0.1:1/gone")
    )
    out = StringIO()

    with pytest.raises(CommandError):
        call_command("reflect", "gone", "--json", stdout=out)

    report = json.loads(out.getvalue())
    assert (report["database"], report["error"]) == ("gone", "database_unavailable")
    assert "127.0.0.1:1" in report["detail"]
    assert "hunter2" not in out.getvalue()


def test_json_values_are_documents_a_client_parses_with_the_digits_the_database_holds(
    reader, registered, user_db
):
    user_db.execute(
        "CREATE TABLE docs (id int PRIMARY KEY, doc json, bin jsonb);"
        """ INSERT INTO docs VALUES (1, '{"price": 2.50}', '{"price": 2.50}')"""
    )
    runs.reflect(registered.id)
    table = Table.objects.get(name="docs")

    response = reader.get(f"/api/v1/tables/{table.id}/records/")

    assert response.json()["rows"] == [[1, {"price": 2.5}, {"price": 2.5}]]
    assert b'[[1,{"price": 2.50},{"price": 2.50}]]' in response.content


def subclasses(base: type[SyncError]) -> list[type[SyncError]]:
    found: list[type[SyncError]] = []
    for each in base.__subclasses__():
        found += [each, *subclasses(each)]
    return found


def readme_error_codes() -> set[str]:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Errors", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"`([a-z_]+)`", section))


def test_the_readme_lists_every_error_code_the_api_answers():
    sync_codes = {error.code for error in subclasses(SyncError)}
    framework_codes = {
        str(error.default_code)
        for error in (
            exceptions.ValidationError, exceptions.ParseError, exceptions.NotAuthenticated,
            exceptions.AuthenticationFailed, exceptions.PermissionDenied, exceptions.NotFound,
            exceptions.MethodNotAllowed, exceptions.NotAcceptable,
            exceptions.UnsupportedMediaType, exceptions.Throttled,
        )
    }  # fmt: skip
    server_codes = {"server_error", *gunicorn_worker.CODES.values()}

    missing = (sync_codes | framework_codes | server_codes) - readme_error_codes()

    assert not missing, f"README's Errors section lacks {sorted(missing)}"
