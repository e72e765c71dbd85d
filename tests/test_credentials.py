"""No password appears anywhere: every form a URL can carry it in, against every surface."""

import logging
from io import StringIO
from typing import Any

import pytest
import redis
from celery.signals import task_retry
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client

from sync import tasks
from sync.models import Database, ReflectionRun
from sync.remote.credentials import ambiguity, redact, redact_url
from tests.helpers import client_for, make_user, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Each form points at a port where nothing listens; each password is spelled out in every
# form it may take (as written, percent-decoded) so that none may slip through.
URL_FORMS = {
    "userinfo": ("postgresql://u:Pw1-hunter@127.0.0.1:1/db", ["Pw1-hunter"]),
    "userinfo-percent-encoded": (
        "postgresql://u:Pw2%2Fhun%40ter@127.0.0.1:1/db",
        ["Pw2%2Fhun%40ter", "Pw2/hun@ter", "hun@ter"],
    ),
    "password-parameter": ("postgresql://u@127.0.0.1:1/db?password=Pw3-hunter", ["Pw3-hunter"]),
    "sslpassword-parameter": (
        "postgresql://u@127.0.0.1:1/db?sslmode=prefer&sslpassword=Pw4-hunter",
        ["Pw4-hunter"],
    ),
    "parameter-name-percent-encoded": (
        "postgresql://u@127.0.0.1:1/db?pass%77ord=Pw5-hunter",
        ["Pw5-hunter"],
    ),
    "parameter-value-percent-encoded": (
        "postgresql://u@127.0.0.1:1/db?password=Pw6%40hunter",
        ["Pw6%40hunter", "Pw6@hunter"],
    ),
}
REFUSED_FORMS = {
    "keyword-value": (
        "host=127.0.0.1 port=1 dbname=db user=u password=Pw7-hunter",
        ["Pw7-hunter"],
        "not a database URL",
    ),
    "unencoded-at": ("postgresql://u:Pw8@hunter@127.0.0.1:1/db", ["Pw8", "hunter"], "%40"),
    "unencoded-slash": ("postgresql://u:Pw9/hunter@127.0.0.1:1/db", ["Pw9", "hunter"], "%2F"),
    "unencoded-question-mark": (
        "postgresql://u:Pw10?hunter@127.0.0.1:1/db",
        ["Pw10", "hunter"],
        "%3F",
    ),
}


def assert_hidden(surface: str, text: str, secrets: list[str]) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert (surface, leaked) == (surface, [])


def redis_value(client: Any, key: bytes) -> Any:
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "hash":
        return client.hgetall(key)
    if kind in {"set", "zset"}:
        return client.smembers(key) if kind == "set" else client.zrange(key, 0, -1)
    return b""


def redis_contents() -> str:
    """Return every key and value of the test's Redis databases (broker, results, cache, state)."""
    found = []
    cache_url = str(settings.CACHES["default"]["LOCATION"])
    for url in (settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND, cache_url,
                settings.SYNC_STATE_REDIS_URL):  # fmt: skip
        client = redis.Redis.from_url(url)
        found += [f"{key!r} {redis_value(client, key)!r}" for key in client.scan_iter()]
    return "\n".join(found)


@pytest.fixture
def retries() -> Any:
    """Collect the exceptions of task retries as the worker reports them (and Flower shows)."""
    seen: list[str] = []

    def record(request: Any = None, reason: Any = None, **_: Any) -> None:
        seen.append(f"{reason!r} {reason}")

    task_retry.connect(record, weak=False)
    yield seen
    task_retry.disconnect(record)


@pytest.mark.parametrize(("url", "secrets"), URL_FORMS.values(), ids=URL_FORMS.keys())
def test_no_surface_shows_the_password(url, secrets, worker, caplog, retries):
    caplog.set_level(logging.DEBUG)
    staff = make_user("operator", staff=True)
    staff.is_superuser = True
    staff.save()
    reader = client_for(make_user("reader"))
    surfaces: dict[str, str] = {}

    refused = client_for(staff).post("/api/v1/databases/", {"name": "api", "url": url})
    assert refused.status_code == 400
    surfaces["API registration refused"] = refused.content.decode()

    out = StringIO()
    call_command("register_database", "shop", url, stdout=out)
    surfaces["register_database output"] = out.getvalue()
    database = Database.objects.get(name="shop")
    with pytest.raises(CommandError) as failed:
        call_command("reflect", "shop", stdout=StringIO())
    surfaces["reflect command error"] = str(failed.value)

    tasks.reflect_db_objects.delay(database.id)
    wait_until(lambda: retries, timeout=30, what="the task to fail and retry")
    surfaces["task retry exception"] = "\n".join(retries)

    database.refresh_from_db()
    assert "Connection refused" in database.last_error
    surfaces["last_error"] = database.last_error
    surfaces["reflection history"] = "\n".join(
        ReflectionRun.objects.filter(database=database).values_list("error", flat=True)
    )
    surfaces["API list"] = reader.get("/api/v1/databases/").content.decode()
    surfaces["API detail"] = reader.get(f"/api/v1/databases/{database.id}/").content.decode()
    admin = Client()
    admin.force_login(staff)
    surfaces["admin list"] = admin.get("/admin/sync/database/").content.decode()
    surfaces["admin change page"] = admin.get(
        f"/admin/sync/database/{database.id}/change/"
    ).content.decode()
    surfaces["admin history"] = admin.get("/admin/sync/reflectionrun/").content.decode()
    surfaces["logs"] = caplog.text
    surfaces["Redis"] = redis_contents()

    assert "***" in reader.get(f"/api/v1/databases/{database.id}/").json()["location"]
    for surface, text in surfaces.items():
        assert_hidden(surface, text, secrets)


@pytest.mark.parametrize(
    ("url", "secrets", "advice"), REFUSED_FORMS.values(), ids=REFUSED_FORMS.keys()
)
def test_an_unclear_url_is_refused_before_any_connection(url, secrets, advice, staff, caplog):
    response = staff.post("/api/v1/databases/", {"name": "shop", "url": url})

    assert response.status_code == 400
    message = response.json()["fields"]["url"][0]
    assert advice in message
    assert "Connection refused" not in message  # refused before connecting
    with pytest.raises(CommandError) as failed:
        call_command("register_database", "shop", url, stdout=StringIO())
    assert not Database.objects.exists()
    for surface, text in {
        "API": message,
        "command": str(failed.value),
        "logs": caplog.text,
    }.items():
        assert_hidden(surface, text, secrets)


REDACTED = {
    "userinfo": ("postgresql://u:pw@h:5/db", "postgresql://u:***@h:5/db"),
    "no-password": ("postgresql://u@h1,h2/db", "postgresql://u@h1,h2/db"),
    "parameters": (
        "postgresql://h/db?sslmode=require&password=a&sslpassword=b",
        "postgresql://h/db?sslmode=require&password=***&sslpassword=***",
    ),
    "encoded-parameter-name": (
        "postgresql://h/db?pass%77ord=a",
        "postgresql://h/db?pass%77ord=***",
    ),
    "ambiguous-userinfo": ("postgresql://u:p@ss@h/db", "postgresql://***@h/db"),
    "keyword-value": ("host=h password=pw dbname=d", "host=h password=*** dbname=d"),
    "keyword-value-quoted": (r"host=h password='p w\'x' dbname=d", "host=h password=*** dbname=d"),
}


@pytest.mark.parametrize(("url", "shown"), REDACTED.values(), ids=REDACTED.keys())
def test_redact_url_hides_every_form(url, shown):
    assert redact_url(url) == shown


def test_redact_hides_the_tail_libpq_shows_as_a_host_name():
    message = 'could not translate host name "tail-of-pass@db.internal" to address'
    assert redact(message, "postgresql://u:front@tail-of-pass@db.internal/x") == (
        'could not translate host name "***@db.internal" to address'
    )


def test_a_clear_url_is_not_ambiguous():
    assert ambiguity("postgresql://u:p%40ss@h/db?password=a@b") == ""
