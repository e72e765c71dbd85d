"""Failed logins: refused after the limit, before any password is hashed, the right one too."""

import base64

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from tests.helpers import make_user

pytestmark = pytest.mark.django_db


def basic(username: str, password: str, address: str = "10.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def test_after_the_limit_even_the_right_password_is_refused(settings):
    make_user("victim")
    for _ in range(settings.SYNC_LOGIN_FAILURE_LIMIT):
        assert basic("victim", "wrong").get("/api/v1/databases/").status_code == 401

    refused = basic("victim", "victim-pw").get("/api/v1/databases/")
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.json()["detail"]
    assert int(refused["Retry-After"]) == settings.SYNC_LOGIN_FAILURE_WINDOW


def test_below_the_limit_the_right_password_is_accepted(settings):
    make_user("typo")
    for _ in range(settings.SYNC_LOGIN_FAILURE_LIMIT - 1):
        basic("typo", "wrong").get("/api/v1/databases/")
    assert basic("typo", "typo-pw").get("/api/v1/databases/").status_code == 200


def test_failures_count_per_address_across_user_names(settings):
    make_user("other")
    for number in range(settings.SYNC_LOGIN_FAILURE_LIMIT):
        basic(f"guess{number}", "wrong").get("/api/v1/databases/")

    assert basic("other", "other-pw").get("/api/v1/databases/").status_code == 429
    elsewhere = basic("other", "other-pw", address="10.0.0.2")
    assert elsewhere.get("/api/v1/databases/").status_code == 200


def test_failures_count_per_user_name_across_addresses(settings):
    make_user("target")
    for number in range(settings.SYNC_LOGIN_FAILURE_LIMIT):
        basic("target", "wrong", address=f"10.1.0.{number}").get("/api/v1/databases/")
    assert (
        basic("target", "target-pw", address="10.2.0.1").get("/api/v1/databases/").status_code
        == 429
    )


def test_the_admin_login_is_throttled_too(settings):
    make_user("operator", staff=True)
    client = Client(REMOTE_ADDR="10.0.0.9")
    for _ in range(settings.SYNC_LOGIN_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "operator", "password": "wrong"})

    assert not client.login(username="operator", password="operator-pw")
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "operator", "password": "operator-pw"}
    )
    assert response.status_code == 200  # the form again, not a redirect into the admin


def test_weak_passwords_are_refused():
    with pytest.raises(ValidationError):
        validate_password("12345678")
    validate_password("a-long-unusual-passphrase-42")
