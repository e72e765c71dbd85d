"""Helpers the tests share: scratch databases, users and clients, processes, waits."""

import base64
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import pytest
import redis
from amqp.exceptions import ChannelError
from django.contrib.auth.models import Group, User
from django.db import connection
from kombu import Connection
from psycopg2 import sql
from rest_framework.test import APIClient

from bench.rabbit import RABBITMQ_SERVER, RabbitNode
from sync.changes import queues, store
from sync.models import Database, DatabaseGrant
from sync.ops import demo
from sync.reflection import feed, runs
from sync.reflection.runs import ReflectionResult

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


def hold_lease(database_id: int, token: str, lease_state: str = "queued") -> None:
    """Make the database's lease held by another run, as a task published elsewhere would."""
    store.client().set(store.lease_key(database_id), f"{lease_state}:{token}", ex=60)


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


@dataclass(frozen=True)
class Routed:
    task: str
    task_id: str
    queue: str
    kwargs: dict[str, Any]
    countdown: float | None  # seconds from publication to the message's ETA


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


class RabbitServer(RabbitNode):
    """A RabbitMQ node of a test's own (bench/rabbit.py); the test is skipped without one."""

    def __init__(self, directory: Path, vhost: str) -> None:
        if not Path(RABBITMQ_SERVER).exists():
            pytest.skip("RabbitMQ's server is not installed here")
        super().__init__(directory, vhost)


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


def dbsync_connections(scratch: ScratchDatabase) -> int:
    """Count the connections dbsync's own reads hold on the database (the listener's apart)."""
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [scratch.name, "dbsync"],
        )
        (count,) = one_row(cursor)
    connection.close()
    return int(count)


def backing_off(database_id: int) -> bool:
    """Whether the database is backed off after a failure."""
    return bool(store.client().exists(store.backoff_key(database_id)))


def purge_broker(url: str) -> None:
    """Drop every message of dbsync's queues on a broker (Redis or RabbitMQ)."""
    if url.startswith("redis"):
        lists = redis.Redis.from_url(url)
        lists.flushdb()
        lists.close()
        return
    with Connection(url) as rabbit:
        for queue in queues.QUEUES:
            channel: Any = rabbit.channel()  # py-amqp's
            try:
                channel.queue_purge(queue)
            except ChannelError:  # never declared: nothing to drop
                continue
            channel.close()


def clear_all() -> None:
    """Forget every database's reflection state."""
    store.client().flushdb()


class ListenerProcess:
    """`manage.py listen` in a process of its own, on the test database, its log in a file."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "manage.py", "listen"],
                env=process_environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def restart(self) -> None:
        self.process = self.start()

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def text(self) -> str:
        return self.log.read_text()


def make_partitions(user_db: ScratchDatabase) -> None:
    """One table of 50 partitions, one of 3 partitions of 2 sub-partitions each, one plain."""
    statements = ["CREATE TABLE events (id int, at int) PARTITION BY RANGE (at)"]
    statements += [
        f"CREATE TABLE events_{n} PARTITION OF events FOR VALUES FROM ({n * 10}) TO ({n * 10 + 10})"
        for n in range(50)
    ]
    statements.append("CREATE TABLE sales (id int, region int, day int) PARTITION BY LIST (region)")
    for region in range(3):
        statements.append(
            f"CREATE TABLE sales_{region} PARTITION OF sales FOR VALUES IN ({region})"
            " PARTITION BY RANGE (day)"
        )
        statements += [
            f"CREATE TABLE sales_{region}_{half} PARTITION OF sales_{region}"
            f" FOR VALUES FROM ({half * 10}) TO ({half * 10 + 10})"
            for half in range(2)
        ]
    statements.append("CREATE TABLE plain (id int)")
    user_db.execute("; ".join(statements))


def push_answers(port: int) -> bool:
    """Return whether the push role answers HTTP on the port (a bare connect can be fooled by a
    listener on its way out)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/push/")
        return connection.getresponse().status == 403
    except OSError:
        return False
    finally:
        connection.close()


def reflect_recorded(database_id: int, **options: Any) -> ReflectionResult:
    """Reflect, then record the run's events as the webhooks' worker does before it delivers
    them: what the change feed's pages and API then show."""
    result = runs.reflect(database_id, **options)
    feed.record(database_id)
    return result
