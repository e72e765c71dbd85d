"""The API against its own OpenAPI schema: schemathesis sends valid and invalid requests.

Every operation, in positive and negative mode, with the checks for server errors, documented
status codes, content types and response bodies. SCHEMATHESIS_MAX_EXAMPLES bounds the cases per
operation and mode (the suite's default keeps it fast; the README has the longer run).
"""

import base64
import os

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from project.wsgi import application
from sync.models import Database
from sync.reflection import runs
from tests.helpers import ScratchDatabase, make_user

# Committed data: the WSGI app closes the service database connection after every request.
pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# Loaded at collection, from the app itself: schema generation reads no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    database="none",  # no example database kept between runs: each starts from the schema
)


@pytest.fixture(autouse=True)
def reflected_database(registered: Database, user_db: ScratchDatabase) -> Database:
    """A reflected database behind the API, so that some ids exist."""
    user_db.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
    runs.reflect(registered.id)
    return registered


@pytest.fixture
def staff_basic_auth(db: None) -> dict[str, str]:
    user = make_user("fuzzing-operator", staff=True)
    token = base64.b64encode(f"{user.username}:{user.username}-pw".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@schema.parametrize()
# The database and the user are set up once per operation: every case reads, or is refused.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_every_answer_is_the_one_the_schema_documents(
    case: schemathesis.Case, staff_basic_auth: dict[str, str]
) -> None:
    case.call_and_validate(headers=staff_basic_auth, checks=CHECKS)


def test_a_body_without_a_media_type_is_a_documented_415(staff_basic_auth):
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=staff_basic_auth["Authorization"])

    response = client.post("/api/v1/databases/", b"name=x", content_type="")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    documented = client.get("/api/schema/?format=json").json()
    assert "415" in documented["paths"]["/api/v1/databases/"]["post"]["responses"]
