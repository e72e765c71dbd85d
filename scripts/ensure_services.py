"""Make sure PostgreSQL and Redis answer, installing and starting local ones if needed.

Run by `make run` and `make test`; with --browser (`make test`), also install Debian's
Chromium for the browser tests. Where the broker is RabbitMQ (SYNC_BROKER_URL amqp://..., or
the test settings with DBSYNC_TEST_BROKER=amqp), also RabbitMQ and its virtual hosts.
Idempotent: does nothing when all is already there. Exits non-zero with one line on standard
error when a service cannot be brought up.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from urllib.parse import unquote, urlsplit

from django.conf import settings

LOCAL_HOSTS = {"", "127.0.0.1", "localhost", "::1"}


class ServiceError(Exception):
    pass


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not answers(host, port):
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} at {host}:{port} did not start within {seconds:.0f} s")
        time.sleep(0.3)


def run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"`{' '.join(command)}` failed: {last[0]}")


def apt_install(package: str) -> None:
    if shutil.which("apt-get") is None:
        raise ServiceError(f"{package} is not installed and there is no apt-get to install it")
    print(f"installing {package} from the Debian packages ...", flush=True)
    run("apt-get", "update", "-qq")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ServiceError(f"apt-get install {package} failed: {result.stderr.strip()[-200:]}")


def trust_loopback(version: str) -> None:
    # A fresh Debian cluster asks for passwords on 127.0.0.1; the default DATABASE_URL has none.
    hba = Path(f"/etc/postgresql/{version}/main/pg_hba.conf")
    text = hba.read_text()
    if "# dbsync: trust loopback" not in text:
        rules = "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
        hba.write_text("# dbsync: trust loopback\n" + rules + text)


def ensure_postgres(db: Mapping[str, Any]) -> None:
    host, port = db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)
    if answers(host, port):
        return
    if host not in LOCAL_HOSTS:
        raise ServiceError(f"PostgreSQL at {host}:{port} does not answer (DATABASE_URL)")
    installed_now = shutil.which("pg_ctlcluster") is None
    if installed_now:
        apt_install("postgresql")
    versions = sorted(Path(p).name for p in glob.glob("/etc/postgresql/*"))
    if not versions:
        installed = sorted(Path(p).name for p in glob.glob("/usr/lib/postgresql/*"))
        if not installed:
            raise ServiceError("PostgreSQL is installed but no server version was found")
        run("pg_createcluster", installed[-1], "main", "--port", str(port))
        versions, installed_now = [installed[-1]], True
    if installed_now:
        # Only a cluster made here: an existing one keeps the authentication it was given.
        trust_loopback(versions[-1])
    print(f"starting PostgreSQL {versions[-1]} on port {port} ...", flush=True)
    run("pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start")
    wait_for(host, port, "PostgreSQL")


def ensure_service_database(db: Mapping[str, Any]) -> None:
    params = {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db.get("PASSWORD") or None,
        "connect_timeout": 5,
    }
    try:
        connection = psycopg2.connect(dbname="postgres", **params)
    except psycopg2.OperationalError as error:
        raise ServiceError(f"cannot log in to PostgreSQL: {str(error).strip()}") from None
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            print(f"created the service database {db['NAME']}", flush=True)
    connection.close()


def ensure_redis(url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if answers(host, port):
        return
    if host not in LOCAL_HOSTS:
        raise ServiceError(f"Redis at {host}:{port} does not answer (REDIS_URL)")
    if shutil.which("redis-server") is None:
        apt_install("redis-server")
    directory = "/var/lib/redis" if Path("/var/lib/redis").is_dir() else tempfile.gettempdir()
    print(f"starting Redis on port {port} ...", flush=True)
    run(
        "redis-server",
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
    )
    wait_for(host, port, "Redis")


def ensure_rabbitmq(urls: list[str]) -> None:
    """Make sure RabbitMQ answers at each AMQP URL, and that its virtual host exists."""
    for url in urls:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 5672
        if not answers(host, port):
            if host not in LOCAL_HOSTS:
                raise ServiceError(f"RabbitMQ at {host}:{port} does not answer (SYNC_BROKER_URL)")
            if shutil.which("rabbitmq-server") is None:
                apt_install("rabbitmq-server")
            print(f"starting RabbitMQ on port {port} ...", flush=True)
            run("rabbitmq-server", "-detached")
            wait_for(host, port, "RabbitMQ", seconds=90)
        vhost = unquote(parts.path[1:]) or "/"
        if vhost != "/" and host in LOCAL_HOSTS and shutil.which("rabbitmqctl"):
            ensure_vhost(vhost, unquote(parts.username or "guest"))


def ensure_vhost(vhost: str, user: str) -> None:
    """Create a local RabbitMQ virtual host, open to the user, unless it exists."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=False
    )
    if vhost in listed.stdout.split():
        return
    run("rabbitmqctl", "-q", "add_vhost", vhost)
    run("rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    print(f"created the RabbitMQ virtual host {vhost}", flush=True)


def amqp_urls() -> list[str]:
    """Return the RabbitMQ URLs the settings name: the broker's, and the tests' aside one."""
    urls = [settings.CELERY_BROKER_URL, getattr(settings, "ASIDE_BROKER_URL", "")]
    return [url for url in urls if urlsplit(url).scheme in settings.AMQP_SCHEMES]


CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> None:
    # Playwright cannot download its own browser here: the tests drive Debian's.
    if not Path(CHROMIUM).exists():
        apt_install("chromium")


def main() -> int:
    db = settings.DATABASES["default"]
    try:
        ensure_postgres(db)
        ensure_service_database(db)
        ensure_redis(settings.REDIS_URL)
        ensure_rabbitmq(amqp_urls())
        if "--browser" in sys.argv[1:]:
            ensure_chromium()
    except ServiceError as error:
        print(f"ensure_services: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
