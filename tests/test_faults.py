"""Faults with real processes: a broker outage under a worker, PostgreSQL restarts under the web.

Each test runs its own processes against its own Redis server, and checks the recovery as a
user sees it: the worker runs the next task, the next request is answered.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.db import connection
from rest_framework.authtoken.models import Token

from sync.breaker import REDIS_BREAKER
from sync.changes import gate, leases, store, task_names
from sync.models import Database, ReflectionRun, Table
from sync.reflection import runs
from tests.helpers import (
    HeldDatabaseRow,
    RabbitServer,
    admin_connection,
    free_port,
    make_user,
    one_row,
    process_environment,
    start_redis_server,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "faults"


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@dataclass
class OwnRedis:
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture
def own_redis_server() -> Iterator[OwnRedis]:
    """A Redis server of this test's own. Stopped, frozen or restarted at will."""
    port = free_port()
    server = OwnRedis(port, start_redis_server(port))
    wait_until(lambda: redis_answers(f"redis://127.0.0.1:{port}/0"), what="Redis to start")
    yield server
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGCONT)  # a test may have left it frozen
    stop_process(server.process)
    # A restarted server is not this Popen's: stop it through the server itself.
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, check=False
    )


@pytest.fixture
def own_redis(own_redis_server: OwnRedis) -> int:
    """The port of this test's own Redis server."""
    return own_redis_server.port


def worker_on(port: int) -> subprocess.Popen[bytes]:
    """Start a real worker process whose broker is the Redis server on `port`."""
    env = {**process_environment(), "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    command = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "solo",
               "-Q", QUEUE, "--without-mingle", "--without-gossip"]  # fmt: skip
    return subprocess.Popen(command, env=env, start_new_session=True)


def alive_for(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether the process is still running after `seconds` (it failed within one before)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        time.sleep(0.1)
    return True


# The tests below that restart a Redis broker, and the one that restarts RabbitMQ, run in the
# run of the suite whose broker they are about (`make test` runs this module with both).
redis_broker = pytest.mark.skipif(settings.SYNC_BROKER_KIND != "redis", reason="Redis broker")
rabbitmq_broker = pytest.mark.skipif(settings.SYNC_BROKER_KIND != "amqp", reason="RabbitMQ")


@redis_broker
def test_worker_rides_out_a_broker_outage_while_it_holds_a_delayed_message(own_redis):
    broker_url = f"redis://127.0.0.1:{own_redis}/8"  # the test settings' broker database
    client = Celery(
        broker=broker_url, backend=f"redis://127.0.0.1:{own_redis}/9", set_as_current=False
    )
    worker = worker_on(own_redis)
    try:
        # A retry's countdown: the worker takes the message and holds it unacknowledged.
        client.send_task("sync.tasks.purge_dropped", countdown=300, queue=QUEUE)
        held = redis.Redis.from_url(broker_url)
        wait_until(lambda: held.hlen("unacked") == 1, timeout=60, what="the worker to hold it")

        subprocess.run(["redis-cli", "-p", str(own_redis), "shutdown", "nosave"], check=True)
        outage_survived = alive_for(worker, 5)
        restarted = start_redis_server(own_redis)
        wait_until(lambda: redis_answers(broker_url), what="Redis to restart")
        result = client.send_task("sync.tasks.purge_dropped", queue=QUEUE).get(timeout=90)
        stop_process(restarted)
    finally:
        stop_process(worker)

    assert outage_survived
    assert isinstance(result, dict)  # the task after the outage ran


class Web:
    """A gunicorn process serving dbsync with the production settings, on the test database."""

    def __init__(self, redis_port: int) -> None:
        self.port = free_port()
        env = {
            **process_environment(),
            "DJANGO_SETTINGS_MODULE": "project.settings",  # connections kept between requests
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "project.wsgi", "--workers", "1",
             "--bind", f"127.0.0.1:{self.port}"],
            env=env, start_new_session=True, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # A token: the production settings do not verify the test suite's password hashes.
        token = Token.objects.create(user=make_user("watcher"))
        self.headers = {"Authorization": f"Token {token.key}"}

    def status_of(self, path: str) -> int:
        try:
            web = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            web.request("GET", path, headers=self.headers)
            return web.getresponse().status
        except OSError:
            return 0  # not listening yet


@pytest.fixture
def web(own_redis) -> Iterator[Web]:
    served = Web(own_redis)
    try:
        wait_until(lambda: served.status_of("/api/v1/databases/") == 200, 60, what="gunicorn")
        yield served
    finally:
        stop_process(served.process)


def terminate_connections(dbname: str, application_name: str | None = None) -> int:
    """End every other session on a database, as a server restart would; return how many."""
    connection.close()  # this process's own session would go too
    condition = "" if application_name is None else " AND application_name = %s"
    with admin_connection() as admin, admin.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = %s AND pid <> pg_backend_pid(){condition}",
            [dbname] + ([application_name] if application_name else []),
        )
        (ended,) = one_row(cursor)
    return int(ended)


def test_requests_after_the_service_database_restarted_are_answered(web):
    assert web.status_of("/api/v1/databases/") == 200  # the web process keeps its connection

    ended = terminate_connections(connection.settings_dict["NAME"])

    assert ended >= 1
    assert [web.status_of("/api/v1/databases/") for _ in range(3)] == [200, 200, 200]


def test_reads_after_a_registered_database_restarted_are_answered(web, registered, user_db):
    user_db.execute("CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (1)")
    runs.reflect(registered.id)
    table = Table.objects.get(name="kept")
    records = f"/api/v1/tables/{table.id}/records/"
    assert web.status_of(records) == 200  # the web process keeps a pooled connection to it

    ended = terminate_connections(user_db.name, application_name="dbsync")

    assert ended >= 1
    assert [web.status_of(records) for _ in range(3)] == [200, 200, 200]
    assert runs.reflect(registered.id).counts.unchanged >= 1
    assert Database.objects.get(pk=registered.id).last_error == ""


def test_a_lock_that_a_hung_redis_took_after_the_gate_gave_up_is_released(
    own_redis_server, registered, settings, published, monkeypatch
):
    settings.SYNC_STATE_REDIS_URL = f"redis://127.0.0.1:{own_redis_server.port}/0"
    monkeypatch.setattr(REDIS_BREAKER, "cooldown", 0)  # every call asks Redis
    # A kept connection, and the script loaded, as in every web process that listed before.
    store.client().script_load(gate.REQUEST)
    os.killpg(own_redis_server.process.pid, signal.SIGSTOP)
    gave_up = gate.ensure_fresh(registered)  # the take waits, then gives up
    os.killpg(own_redis_server.process.pid, signal.SIGCONT)  # and the server runs it now
    wait_until(lambda: leases.holder(registered.id) is not None, what="the late take")

    after = gate.ensure_fresh(registered)
    holder = leases.holder(registered.id)

    assert gave_up.status == gate.Status.UNAVAILABLE
    assert (after.status, after.queued_now) == (gate.Status.QUEUED, True)
    assert published == [after.task_id]
    assert holder is not None
    assert holder[1] == after.task_id  # queued, or already running (a worker may be that fast)


def connections_received(port: int) -> int:
    """Return the connections the Redis server on port accepted since its stats were reset,
    this one included."""
    stats: dict[str, Any] = redis.Redis(port=port).info("stats")  # type: ignore[assignment]
    return int(stats["total_connections_received"])


def test_records_reads_while_redis_is_frozen_ask_it_once_then_go_without(
    own_redis_server, web, registered, user_db
):
    user_db.execute("CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (1)")
    runs.reflect(registered.id)
    table = Table.objects.get(name="kept")
    records = f"/api/v1/tables/{table.id}/records/"
    assert web.status_of(records) == 200  # its name is cached now
    redis.Redis(port=own_redis_server.port).config_resetstat()

    os.killpg(own_redis_server.process.pid, signal.SIGSTOP)
    try:
        statuses = [web.status_of(records) for _ in range(5)]
    finally:
        os.killpg(own_redis_server.process.pid, signal.SIGCONT)

    assert statuses == [200] * 5
    # The connections the reads opened while it was frozen, accepted now: none. The first
    # read's lookup waited on the connection it had; the breaker kept the others from asking.
    assert connections_received(own_redis_server.port) - 1 == 0


def test_healthz_while_redis_is_frozen_answers_at_once_naming_what_is_down(own_redis_server, web):
    answers: list[tuple[int, dict[str, str]]] = []

    def ask() -> None:
        health = http.client.HTTPConnection("127.0.0.1", web.port, timeout=60)
        health.request("GET", "/healthz")
        response = health.getresponse()
        answers.append((response.status, json.loads(response.read())["parts"]))

    os.killpg(own_redis_server.process.pid, signal.SIGSTOP)
    try:
        asking = threading.Thread(target=ask)
        asking.start()
        # A bound far above its figure (under a second) and below the broker's socket timeout.
        wait_until(lambda: not asking.is_alive(), timeout=4, what="healthz, Redis still frozen")
    finally:
        os.killpg(own_redis_server.process.pid, signal.SIGCONT)
        asking.join(timeout=60)

    status, parts = answers[0]
    assert status == 503
    assert parts["database"] == "ok"
    assert parts["cache"].startswith("down")
    assert parts["broker"].startswith("down")


@pytest.fixture
def own_rabbitmq(tmp_path) -> Iterator[RabbitServer]:
    """A RabbitMQ node of this test's own, with the test settings' virtual host."""
    server = RabbitServer(tmp_path, urlsplit(settings.CELERY_BROKER_URL).path.lstrip("/"))
    yield server
    server.stop()


@rabbitmq_broker
def test_a_rabbitmq_restart_loses_no_task_and_runs_none_twice_to_another_result(
    own_rabbitmq, fresh, user_db
):
    broker_url = f"{own_rabbitmq.url}{urlsplit(settings.CELERY_BROKER_URL).path}"
    client = Celery(broker=broker_url, backend=settings.CELERY_RESULT_BACKEND, set_as_current=False)
    env = {**process_environment(), "DBSYNC_TEST_AMQP": own_rabbitmq.url}
    command = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "solo",
               "-Q", QUEUE, "--without-mingle", "--without-gossip"]  # fmt: skip
    worker = subprocess.Popen(command, env=env, start_new_session=True)
    user_db.execute("CREATE TABLE made_meanwhile (id int)")
    held = HeldDatabaseRow(fresh)  # the reflection waits, running, until it is released
    try:
        reflect = {"force": True, "trigger": ReflectionRun.Trigger.API}
        client.send_task(task_names.REFLECT, (fresh.id,), reflect, queue=QUEUE)
        wait_until(lambda: held.blocked(), timeout=60, what="the reflection to run")
        queued = [client.send_task(task_names.PURGE, queue=QUEUE) for _ in range(5)]

        own_rabbitmq.restart()
        held.release()
        results = [result.get(timeout=120) for result in queued]
    finally:
        stop_process(worker)

    assert len(results) == 5  # none lost
    assert all(result == results[0] for result in results)
    made = Table.objects.filter(database=fresh, name="made_meanwhile")
    assert made.count() == 1
    assert made.get().dropped_at is None
    runs_since = ReflectionRun.objects.filter(database=fresh, trigger=ReflectionRun.Trigger.API)
    # The running one, perhaps twice (its message comes back, unacknowledged): the same end.
    assert {run.outcome for run in runs_since} == {ReflectionRun.Outcome.SUCCESS}
    assert sum(run.added for run in runs_since) == 1
