"""Set a benchmark apart before Django starts: its own service database and Redis server.

Import and call first, before anything imports Django's settings:

    from bench.isolate import isolate

    isolate("dbsync_bench_x")

A Redis server of the benchmark's own (on a free port, stopped at exit) holds its broker,
results, cache and state, so that no benchmark touches a running dbsync's Redis databases or
another benchmark's; the service database is named for it; fixed bench secrets stand in for
the keys `make run` would generate.
"""

import atexit
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_SECRETS = {
    "SECRET_KEY": "dbsync-bench-secret-key",
    "SYNC_SECRET_KEYS": "YmVuY2gta2V5LW9mLWRic3luYy0wMDAwMDAwMDAwMDA=",
}


def isolate(service_database: str, **settings: str) -> None:
    """Point the settings at a database and a Redis server of the benchmark's own; set up Django.

    `settings` are environment variables to set as well (the environment's own win).
    """
    refuse_the_service(os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", ""))
    if "REDIS_URL" not in os.environ:
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{start_redis()}/0"
    defaults = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{service_database}",
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "LOG_LEVEL": "WARNING",
        **BENCH_SECRETS,
        **settings,
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()


def refuse_the_service(database_url: str, redis_url: str) -> None:
    """Exit if the environment points a benchmark at a running dbsync's own database or Redis."""
    if urlsplit(database_url).path.strip("/") == "dbsync":
        raise SystemExit("DATABASE_URL points at the service database dbsync; refusing")
    redis = urlsplit(redis_url)
    if redis_url and (redis.port or 6379) == 6379 and redis.path.strip("/") in {"", "0"}:
        raise SystemExit("REDIS_URL points at the service's Redis databases; refusing")


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis() -> int:
    """Start a Redis server that keeps nothing on disk, on a free port; stop it at exit."""
    port = free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    atexit.register(server.kill)
    return port
