"""/healthz: 200 when the service database, Redis and the broker answer, 503 naming what is down."""

import subprocess
from collections.abc import Iterator

import pytest
from celery import current_app
from rest_framework.test import APIClient

from tests.helpers import free_port, start_redis_server, stop_process, wait_until

pytestmark = pytest.mark.django_db


def test_healthz_answers_200_when_everything_is_up():
    response = APIClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "parts": {"database": "ok", "cache": "ok", "broker": "ok"},
    }


@pytest.fixture
def own_redis(settings) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server of this test's own, used as cache, state store and broker."""
    port = free_port()
    process = start_redis_server(port)
    url = f"redis://127.0.0.1:{port}/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.SYNC_STATE_REDIS_URL = url
    current_app.conf["broker_write_url"] = url
    try:
        yield process
    finally:
        current_app.conf["broker_write_url"] = None
        stop_process(process)


def test_healthz_reports_a_stopped_redis(own_redis):
    client = APIClient()
    wait_until(lambda: client.get("/healthz").status_code == 200, what="Redis to start")

    own_redis.terminate()
    own_redis.wait(timeout=10)
    response = client.get("/healthz")

    assert response.status_code == 503
    parts = response.json()["parts"]
    assert parts["database"] == "ok"
    assert parts["cache"].startswith("down")
    assert parts["broker"].startswith("down")
