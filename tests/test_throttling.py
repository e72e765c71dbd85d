"""Failed logins: refused after the limit, before any password is hashed, the right one too."""

import base64
import re

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from sync.web import throttling
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
    assert 0 < int(refused["Retry-After"]) <= settings.SYNC_LOGIN_FAILURE_WINDOW


def test_retry_after_says_the_seconds_left_of_the_window_and_the_message_says_it_once(settings):
    settings.SYNC_LOGIN_FAILURE_WINDOW = 300
    make_user("victim")
    for _ in range(settings.SYNC_LOGIN_FAILURE_LIMIT):
        basic("victim", "wrong").get("/api/v1/databases/")
    settings.SYNC_LOGIN_FAILURE_WINDOW = 3600  # a later setting: the window started stays

    refused = basic("victim", "victim-pw").get("/api/v1/databases/")

    wait = int(refused["Retry-After"])
    assert 290 <= wait <= 300
    detail = refused.json()["detail"]
    assert detail.count("second") == 1, detail
    assert f"{wait} second" in detail


LOGIN_FORMS = {"pages": "/login/", "admin": "/admin/login/"}


@pytest.mark.parametrize("path", LOGIN_FORMS.values(), ids=LOGIN_FORMS.keys())
def test_a_locked_login_form_says_it_is_locked_and_for_how_long(settings, path):
    make_user("operator", staff=True)
    client = Client(REMOTE_ADDR="10.0.0.9")
    for _ in range(settings.SYNC_LOGIN_FAILURE_LIMIT):
        client.post(path, {"username": "operator", "password": "wrong"})

    response = client.post(path, {"username": "operator", "password": "operator-pw"})

    page = response.content.decode()
    assert response.status_code == 200  # the form again, not a redirect
    assert "logins are locked for" in page
    assert re.search(r"locked for \d+ more seconds", page)
    assert "Please enter a correct username" not in page


def test_an_operator_unlocks_a_user_name_locked_by_someone_else(settings):
    make_user("admin", staff=True)
    for number in range(settings.SYNC_LOGIN_FAILURE_LIMIT):
        basic("admin", "guess", address=f"10.3.0.{number}").get("/api/v1/databases/")
    assert basic("admin", "admin-pw").get("/api/v1/databases/").status_code == 429

    throttling.unlock("admin")

    assert basic("admin", "admin-pw").get("/api/v1/databases/").status_code == 200


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
