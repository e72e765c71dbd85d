"""Flower, as the Procfile starts it: closed to anonymous clients, open with its credentials."""

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from flower import urls as flower_urls
from tornado.web import RequestHandler

from tests.helpers import (
    free_port,
    process_environment,
    start_procfile_role,
    start_worker_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

CREDENTIALS = "flower-admin:flower-test-password"
EVIL = "http://evil.example"


def call(
    port: int, path: str, method: str = "GET", login: str | None = None, origin: str = ""
) -> tuple[int, Any]:
    """Return the status and headers of a request to Flower."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if method == "POST":
        request.add_header("Content-Type", "text/plain")  # no preflight from a browser
        request.data = b"{}"
    if origin:
        request.add_header("Origin", origin)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers
    except OSError:
        return 0, {}


def workers_listed(port: int) -> list[str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/workers?refresh=1")
    request.add_header("Authorization", "Basic " + base64.b64encode(CREDENTIALS.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return list(json.load(response))
    except OSError:
        return []


@pytest.fixture
def flower_port() -> Any:
    port = free_port()
    env = {**process_environment(), "FLOWER_PORT": str(port), "FLOWER_BASIC_AUTH": CREDENTIALS,
           "FLOWER_UNAUTHENTICATED_API": "true"}  # fmt: skip
    flower = start_procfile_role("flower", env)
    try:
        yield port
    finally:
        stop_process(flower)


def test_flower_lists_the_worker_to_its_credentials(flower_port):
    worker = start_worker_process(queue="flower-test")
    try:
        wait_until(lambda: workers_listed(flower_port), timeout=60, what="Flower to list a worker")
        assert any(name.startswith("celery@") for name in workers_listed(flower_port))
    finally:
        stop_process(worker)


def flower_calls() -> list[tuple[str, str]]:
    """Every method and path of Flower's API and pages, as its URL table declares them, with a
    worker name or task id where the pattern takes one. /metrics and /healthcheck are open by
    design (no secrets: counts and timings of task names)."""
    calls = []
    for handler in flower_urls.handlers:
        pattern, view = (
            (handler.regex.pattern, handler.target)
            if hasattr(handler, "regex")
            else (handler[0], handler[1])
        )
        path = pattern.rstrip("$").replace("(.+)", "{worker}").replace("(.*)", "0123")
        if path.startswith(("/api/", "/worker", "/task", "/broker")) or path == "/":
            calls += [
                (method, path)
                for method in ("GET", "POST")
                if getattr(view, method.lower()) is not getattr(RequestHandler, method.lower())
            ]
    return calls


def test_anonymous_flower_calls_answer_401_and_the_worker_keeps_running(flower_port):
    worker = start_worker_process(queue="flower-test")
    try:
        wait_until(lambda: workers_listed(flower_port), timeout=60, what="Flower to list a worker")
        names = workers_listed(flower_port)  # the test session's own worker may answer too
        calls = flower_calls()
        assert len(calls) > 25
        for method, path in calls:
            what = f"{method} {path}"
            target = path.format(worker=names[0])
            status, headers = call(flower_port, target, method)
            assert (what, status) == (what, 401)
            assert "Access-Control-Allow-Origin" not in headers
            wrong = call(flower_port, target, method, login="flower-admin:no")
            assert (what, wrong[0]) == (what, 401)
            # A page of another site open in a browser on the host: refused, and told nothing.
            status, headers = call(flower_port, target, method, origin=EVIL)
            assert (what, status) == (what, 403 if method == "POST" else 401)
            assert "Access-Control-Allow-Origin" not in headers
        assert worker.poll() is None
        assert set(workers_listed(flower_port)) >= set(names)
    finally:
        stop_process(worker)


def test_flower_refuses_to_start_without_credentials():
    env = {**process_environment(), "FLOWER_PORT": str(free_port())}
    env.pop("FLOWER_BASIC_AUTH", None)
    flower = start_procfile_role("flower", env)
    try:
        _, errors = flower.communicate(timeout=30)
    finally:
        stop_process(flower)
    assert flower.returncode != 0
    assert b"FLOWER_BASIC_AUTH" in errors
