"""What every benchmark needs: progress lines, connections to the server, the machine's facts.

Import after django.setup(): the server is the one that holds the service database.
"""

import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import django
import psycopg2
import sqlalchemy
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection

from bench.isolate import free_port as free_port  # the benchmarks take it from here
from sync.ops import demo

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    """Print a progress line on standard error; standard output is for the JSON alone."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(function: Callable[[], Any]) -> float:
    """Return the milliseconds one call takes."""
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


def spread(values: list[float]) -> dict[str, float]:
    """Return the median and the 99th percentile of timings in milliseconds."""
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98]
    return {"median_ms": round(statistics.median(values), 3), "p99_ms": round(p99, 3)}


def server_url(dbname: str) -> str:
    """Return a URL, password included, to a database on the service database's server."""
    url = demo.server_url(dbname).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def connect(dbname: str, autocommit: bool = True, name: str = "dbsync-bench") -> PgConnection:
    pg = psycopg2.connect(server_url(dbname), application_name=name)
    pg.autocommit = autocommit
    return pg


def machine() -> dict[str, Any]:
    """Return what the figures depend on: the machine, the versions, how busy it was."""
    pg = connect("postgres")
    try:
        with pg.cursor() as cursor:
            cursor.execute("SHOW server_version")
            (server_version,) = cursor.fetchone() or ("?",)
    finally:
        pg.close()
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlalchemy": sqlalchemy.__version__,
        # types-psycopg2 leaves out the module's __version__, which psycopg2 has.
        "psycopg2": psycopg2.__version__.split()[0],  # type: ignore[attr-defined]
        "postgresql": server_version,
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }


@contextmanager
def service(name: str, argv: list[str], logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a subprocess in its own process group, logging to a file; always stop the group."""
    path = logs / f"{name}.log"
    with path.open("wb") as output:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        stop(process, name)


def stop(process: subprocess.Popen[bytes], name: str, term_wait: float = 15.0) -> None:
    """Stop a process group started by this script: TERM, then KILL after term_wait seconds."""
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {process.pid}) did not stop on {sig.name}")


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def ensure_database(dbname: str, marker: str | None = None) -> None:
    """Create a database if missing; one with a marker must carry it, or it is not ours."""
    admin = connect("postgres")
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                [dbname],
            )
            found = cursor.fetchone()
            if found is None:
                log(f"creating database {dbname}")
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                if marker is not None:
                    comment = sql.SQL("COMMENT ON DATABASE {} IS {}")
                    cursor.execute(comment.format(sql.Identifier(dbname), sql.Literal(marker)))
            elif marker is not None and found[0] != marker:
                raise SystemExit(f"{dbname} exists without the marker {marker!r}; not touching it")
    finally:
        admin.close()
