"""The push channel, as the Procfile's push role serves it: streams, access, Redis, restarts."""

import http.client
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client

from sync.reflection import runs
from tests.helpers import (
    free_port,
    make_user,
    process_environment,
    procfile_command,
    push_answers,
    start_procfile_role,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def start_push(port: int):
    env = {**process_environment(), "SYNC_PUSH_HEARTBEAT": "1"}
    return start_procfile_role("push", env, replace={"${SYNC_PUSH_PORT:-8001}": str(port)})


@pytest.fixture
def push_port() -> Iterator[int]:
    port = free_port()
    process = start_push(port)
    try:
        wait_until(lambda: push_answers(port), timeout=30, what="the push role to listen")
        yield port
    finally:
        stop_process(process)


def session_of(username: str, granted: bool = True) -> str:
    client = Client()
    client.force_login(make_user(username, granted=granted))
    return client.cookies["sessionid"].value


class Stream:
    """One Server-Sent Events stream, read event by event."""

    def __init__(self, port: int, path: str, session: str = "", origin: str = "") -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Cookie": f"sessionid={session}"} if session else {}
        if origin:
            headers["Origin"] = origin
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()

    def next_event(self, seconds: float = 10) -> str:
        """Return the name of the next event, comments skipped; "" if none comes in time."""
        return self.next_data(seconds)[0]

    def next_data(self, seconds: float = 10) -> tuple[str, str]:
        """Return the next event's name and data; ("", "") if none comes within `seconds`."""
        name, data = "", ""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            line = self.response.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and name:
                return name, data
        return "", ""

    def close(self) -> None:
        self.connection.close()


def test_a_page_hears_each_reflection_of_its_database(push_port, registered):
    stream = Stream(push_port, f"/push/databases/{registered.id}/", session_of("reader"))
    try:
        assert stream.response.status == 200
        assert (stream.response.getheader("Content-Type") or "").startswith("text/event-stream")
        assert stream.next_event() == "ready"
        time.sleep(0.3)  # the subscription is made as the stream starts

        runs.reflect(registered.id)

        assert stream.next_data() == ("changed", str(registered.id))
    finally:
        stream.close()


def test_a_reader_hears_nothing_of_a_database_not_granted(push_port, registered, user_db):
    outsider = session_of("outsider", granted=False)

    refused = Stream(push_port, f"/push/databases/{registered.id}/", outsider)
    unknown = Stream(push_port, "/push/databases/999999/", outsider)
    anonymous = Stream(push_port, f"/push/databases/{registered.id}/")
    every = Stream(push_port, "/push/", outsider)
    try:
        assert refused.response.status == unknown.response.status == 404
        assert anonymous.response.status == 403
        assert every.next_event() == "ready"
        time.sleep(0.3)
        runs.reflect(registered.id)
        # Only the heartbeat's comments come (one a second): no event in three seconds.
        assert every.next_event(seconds=3) == ""
    finally:
        for stream in (refused, unknown, anonymous, every):
            stream.close()


def test_the_databases_page_hears_its_readable_databases(push_port, registered):
    stream = Stream(push_port, "/push/", session_of("reader"))
    try:
        assert stream.next_event() == "ready"
        time.sleep(0.3)
        runs.reflect(registered.id)
        assert stream.next_data() == ("changed", str(registered.id))
    finally:
        stream.close()


def test_cors_allows_the_pages_origin_on_the_same_host_only(push_port, registered):
    session = session_of("reader")
    same = Stream(push_port, "/push/", session, origin="http://127.0.0.1:8000")
    other = Stream(push_port, "/push/", session, origin="http://evil.example")
    try:
        assert same.response.getheader("Access-Control-Allow-Origin") == "http://127.0.0.1:8000"
        assert same.response.getheader("Access-Control-Allow-Credentials") == "true"
        assert other.response.getheader("Access-Control-Allow-Origin") is None
    finally:
        same.close()
        other.close()


def test_under_the_web_role_the_stream_answers_503_and_pages_poll(registered):
    client = Client()
    client.force_login(make_user("reader"))

    # In a thread of its own, as gunicorn's: Playwright's tests may leave an event loop in this one.
    with ThreadPoolExecutor(1) as thread:
        response = thread.submit(client.get, f"/push/databases/{registered.id}/").result()

    assert response.status_code == 503


def test_a_stream_comes_back_after_a_restart_of_the_push_role(registered):
    port = free_port()
    process = start_push(port)
    try:
        wait_until(lambda: push_answers(port), timeout=30, what="the push role to listen")
        session = session_of("reader")
        Stream(port, "/push/", session).close()
        stop_process(process)
        wait_until(lambda: not push_answers(port), timeout=30, what="the push role to stop")
        process = start_push(port)
        wait_until(lambda: push_answers(port), timeout=30, what="the push role to listen again")
        stream = Stream(port, f"/push/databases/{registered.id}/", session)
        assert stream.next_event() == "ready"
        time.sleep(0.3)
        runs.reflect(registered.id)
        assert stream.next_data() == ("changed", str(registered.id))
        stream.close()
    finally:
        stop_process(process)


def test_the_procfile_runs_the_push_role_on_its_port_setting():
    command = procfile_command("push")

    assert command.startswith("uvicorn project.asgi:application")
    assert "--port ${SYNC_PUSH_PORT:-8001}" in command
