"""Fixtures: scratch PostgreSQL databases to reflect, registered with dbsync."""

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import pytest
import redis
from celery import current_app
from celery.signals import after_task_publish
from celery.worker import state as worker_state
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.db import connection
from django.db.models.signals import post_save
from psycopg2 import sql
from rest_framework.test import APIClient

from sync import demo, queues, reflection, registry, state
from sync.breaker import REDIS_BREAKER
from sync.models import Database, DatabaseGrant

T = TypeVar("T")


# Identifiers that break code which does not quote them, or quotes them wrongly.
ODD_NAMES = {
    "double-quote": 'say "hi"',
    "single-quote": "it's",
    "space": "with space",
    "dot": "a.b",
    "mixed-case": "MixedCase",
    "non-ascii": "données_ñandú_日本",
    "percent": "100% sure",
    "bind-markers": ":name %(x)s ?",
    "reserved-word": "select",
    "63-bytes": "x" * 63,
    "63-bytes-multibyte": "é" * 31 + "x",
}


def quote(name: str) -> str:
    """Return the name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def run_together(count: int, work: Callable[[], T]) -> list[T]:
    """Run work in `count` threads released at the same instant; return their results."""
    start = threading.Barrier(count)
    results: list[T] = []

    def run() -> None:
        start.wait()
        try:
            results.append(work())
        finally:
            connection.close()  # each thread has its own connection to the service database

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def server_url(dbname: str) -> str:
    """Return a URL to a database on the server that holds the service database."""
    url = demo.server_url(dbname).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def admin_connection(dbname: str = "postgres") -> "psycopg2.extensions.connection":
    connection = psycopg2.connect(server_url(dbname))
    connection.autocommit = True
    return connection


def one_row(cursor: "psycopg2.extensions.cursor") -> tuple[Any, ...]:
    """Return the row a statement answered; psycopg2 types fetchone() as maybe None."""
    row = cursor.fetchone()
    assert row is not None, "the statement answered no row"
    return row


@dataclass
class ScratchDatabase:
    """A real database created for one test; run DDL on it with execute()."""

    name: str

    @property
    def url(self) -> str:
        return server_url(self.name)

    def execute(self, statement: str) -> None:
        with admin_connection(self.name) as connection, connection.cursor() as cursor:
            cursor.execute(statement)
        connection.close()

    def oid_of(self, qualified: str) -> int:
        with admin_connection(self.name) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT %s::regclass::oid", [qualified])
            (oid,) = one_row(cursor)
        connection.close()
        return int(oid)


def create_scratch(template: str = "template0") -> ScratchDatabase:
    name = f"dbsync_scratch_{uuid.uuid4().hex[:12]}"
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    connection.close()
    return ScratchDatabase(name)


def drop_scratch(scratch: ScratchDatabase) -> None:
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch.name))
        )
    connection.close()


@pytest.fixture
def scratch_factory() -> Iterator[list[ScratchDatabase]]:
    """Create scratch databases on demand; all are dropped after the test."""
    created: list[ScratchDatabase] = []
    yield created
    for scratch in created:
        drop_scratch(scratch)


@pytest.fixture
def user_db(scratch_factory: list[ScratchDatabase]) -> ScratchDatabase:
    scratch = create_scratch()
    scratch_factory.append(scratch)
    return scratch


@pytest.fixture
def fresh(registered: Database, user_db: ScratchDatabase) -> Database:
    """A registered database with one table, reflected once, its recency key set."""
    user_db.execute("CREATE TABLE existing (id int)")
    reflection.reflect(registered.id)
    registered.refresh_from_db()
    assert registered.reflected_at is not None
    state.mark_recent(registered.id, registered.reflected_at)
    return registered


@pytest.fixture
def registered(db: None, user_db: ScratchDatabase) -> Database:
    database, _ = registry.register("userdb", user_db.url)
    return database


@pytest.fixture(scope="session", autouse=True)
def metrics_directory() -> Iterator[None]:
    """Remove the metrics directory of this test run (see project.test_settings) at its end,
    and the empty ones that processes started with an environment of their own created."""
    started = time.time()
    yield
    directory = Path(settings.PROMETHEUS_MULTIPROC_DIR)
    if directory.name.startswith("dbsync-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)
    for other in directory.parent.glob("dbsync-metrics-*"):
        if other.stat().st_mtime >= started and not any(other.iterdir()):
            other.rmdir()


@pytest.fixture(autouse=True)
def clear_cache() -> None:
    """Start every test with no recency keys, leases, back-offs, dirty marks or cached names."""
    cache.clear()
    state.clear_all()
    REDIS_BREAKER.reset()  # and with Redis trusted again


def hold_lease(database_id: int, token: str, lease_state: str = "queued") -> None:
    """Make the database's lease held by another run, as a task published elsewhere would."""
    state.client().set(state.lease_key(database_id), f"{lease_state}:{token}", ex=60)


@pytest.fixture(autouse=True)
def settle_tasks(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test on committed data, let the tasks it queued go before its data is flushed.

    The test worker lives for the whole session: a reflection it runs while the tables are
    truncated would deadlock with the truncation.
    """
    marker = request.node.get_closest_marker("django_db")
    if not (marker and marker.kwargs.get("transaction")):
        yield
        return
    request.getfixturevalue("transactional_db")  # set up first, so torn down after this
    yield
    current_app.control.purge()
    wait_until(lambda: not worker_state.active_requests, timeout=60, what="running tasks")


@pytest.fixture(scope="session")
def celery_config() -> dict[str, Any]:
    """Run the test worker against the real Redis broker (the test databases of it)."""
    return {
        "broker_url": settings.CELERY_BROKER_URL,
        "result_backend": settings.CELERY_RESULT_BACKEND,
        "broker_transport_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "worker_prefetch_multiplier": 1,
        "task_routes": settings.CELERY_TASK_ROUTES,
        "task_default_queue": settings.CELERY_TASK_DEFAULT_QUEUE,
    }


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, Any]:
    """The test worker consumes both queues, as a deployment's two kinds of worker do."""
    return {"queues": queues.QUEUES}


@pytest.fixture(scope="session")
def celery_includes() -> list[str]:
    return ["sync.tasks"]


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    return "solo"


@pytest.fixture
def worker(celery_session_worker: Any) -> Any:
    """A real Celery worker consuming the real broker, in a thread of the test process."""
    celery_session_worker.app.control.purge()
    return celery_session_worker


def wait_until(predicate: Callable[[], object], timeout: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.05)


# In tests, members of this group may read every database (see readers_read_everything);
# make_user puts a non-staff user in it unless told not to.
READERS = "readers"


def grant_to_readers(instance: Database, created: bool, **_: Any) -> None:
    if created:
        group = Group.objects.get_or_create(name=READERS)[0]
        DatabaseGrant.objects.get_or_create(
            database=instance, group=group, defaults={"records": True}
        )


@pytest.fixture(autouse=True)
def readers_read_everything() -> Iterator[None]:
    """Grant every database registered during a test to the readers group, records too."""
    post_save.connect(grant_to_readers, sender=Database, weak=False, dispatch_uid=READERS)
    yield
    post_save.disconnect(sender=Database, dispatch_uid=READERS)


def make_user(username: str, staff: bool = False, granted: bool = True) -> User:
    """Create a user; a non-staff one reads every database unless granted is False."""
    user = User.objects.create_user(username, password=f"{username}-pw", is_staff=staff)
    if granted and not staff:
        user.groups.add(Group.objects.get_or_create(name=READERS)[0])
    return user


def client_for(user: User | None) -> APIClient:
    """Return an API client that logs in with HTTP Basic, as a script would."""
    client = APIClient()
    if user is not None:
        token = base64.b64encode(f"{user.username}:{user.username}-pw".encode()).decode()
        client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


@pytest.fixture
def reader(db: None) -> APIClient:
    return client_for(make_user("reader"))


@pytest.fixture
def staff(db: None) -> APIClient:
    return client_for(make_user("operator", staff=True))


@dataclass(frozen=True)
class Routed:
    task: str
    task_id: str
    queue: str
    kwargs: dict[str, Any]
    countdown: float | None  # seconds from publication to the message's ETA


@pytest.fixture
def routed() -> Iterator[list[Routed]]:
    """Collect where each task the gate publishes goes, to a broker database no worker reads."""
    found: list[Routed] = []
    aside = settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/12"
    current_app.conf["broker_write_url"] = aside

    def record(
        sender: str | None = None,
        body: Any = None,
        routing_key: str = "",
        headers: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if not (sender and sender.startswith("sync.tasks.") and headers):
            return
        eta = headers.get("eta")
        countdown = None
        if eta:
            countdown = (datetime.fromisoformat(eta) - datetime.now(UTC)).total_seconds()
        kwargs = body[1] if isinstance(body, tuple | list) else {}
        found.append(Routed(sender, headers["id"], routing_key, kwargs, countdown))

    after_task_publish.connect(record, weak=False)
    yield found
    after_task_publish.disconnect(record)
    current_app.conf["broker_write_url"] = None
    broker = redis.Redis.from_url(aside)
    broker.flushdb()
    broker.close()


@pytest.fixture
def published() -> Iterator[list[str]]:
    """Collect the ids of the messages of dbsync's tasks that the broker accepted."""
    ids: list[str] = []

    def count(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
        if sender and sender.startswith("sync.tasks.") and headers:
            ids.append(headers["id"])

    after_task_publish.connect(count, weak=False)
    yield ids
    after_task_publish.disconnect(count)


def process_environment() -> dict[str, str]:
    """Return the environment for a dbsync process that works on the test database."""
    params = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.test_settings",
        "DATABASE_URL": f"postgresql://{params['USER']}@{params['HOST']}:{params['PORT']}/"
        f"{params['NAME']}",
    }


def start_worker_process(queue: str, name: str = "") -> subprocess.Popen[bytes]:
    """Start a real `celery worker` process on the test database, consuming the queue(s)
    (comma-separated), under a node name of its own if given."""
    command = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "solo",
               "-Q", queue, "--events", "--without-mingle", "--without-gossip",
               "--loglevel", "WARNING"]  # fmt: skip
    if name:
        command += ["--hostname", f"{name}@%h"]
    return subprocess.Popen(command, env=process_environment(), start_new_session=True)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_redis_server(port: int) -> subprocess.Popen[bytes]:
    """Start a Redis server of a test's own on 127.0.0.1:port, keeping nothing on disk."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed here")
    return subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Blocker:
    """Hold a lock of the service database from a connection of its own: who needs it waits."""

    def __init__(self, statement: str, parameters: tuple[Any, ...] = ()) -> None:
        self.connection = psycopg2.connect(**connection.get_connection_params())
        with self.connection.cursor() as cursor:
            cursor.execute(statement, parameters)

    def blocked(self) -> list[int]:
        """Return the server processes that wait for this blocker's lock.

        Asked on a connection of its own, outside any transaction: within one, the server
        shows the activity of other processes as it was at its first look.
        """
        observer = psycopg2.connect(**connection.get_connection_params())
        observer.autocommit = True
        try:
            with observer.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    [self.connection.get_backend_pid()],
                )
                return [pid for (pid,) in cursor.fetchall()]
        finally:
            observer.close()

    def release(self) -> None:
        self.connection.rollback()
        self.connection.close()


class HeldDatabaseRow(Blocker):
    """Hold the row lock of a database, so that reflections of it wait before they read."""

    def __init__(self, database: Database) -> None:
        super().__init__("SELECT 1 FROM sync_database WHERE id = %s FOR UPDATE", (database.id,))


class LockedTableInserts(Blocker):
    """Make every write of table rows wait: a reflection stops after its catalog read."""

    def __init__(self) -> None:
        super().__init__("LOCK TABLE sync_table IN EXCLUSIVE MODE")


def backend_gone(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        (count,) = cursor.fetchone()
    return count == 0


def procfile_command(role: str) -> str:
    """Return the shell command the Procfile runs for a role, as honcho would run it."""
    procfile = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Procfile")
    with open(procfile) as lines:
        for line in lines:
            name, sep, command = line.partition(":")
            if sep and name.strip() == role:
                return command.strip()
    raise AssertionError(f"the Procfile has no {role!r} role")


def start_procfile_role(
    role: str, env: dict[str, str], replace: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a Procfile role through the shell, with the virtualenv's commands first on PATH.

    `replace` changes parts of the command (a port, say) before it runs.
    """
    bin_dir = os.path.dirname(sys.executable)
    env = {**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}"}
    command = procfile_command(role)
    for old, new in (replace or {}).items():
        assert old in command, f"the Procfile's {role} command has no {old!r}"
        command = command.replace(old, new)
    return subprocess.Popen(
        ["/bin/sh", "-c", command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
