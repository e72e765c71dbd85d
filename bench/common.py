"""What every benchmark needs: progress lines, connections to the server, the machine's facts.

Import after django.setup(): the server is the one that holds the service database.
"""

import os
import platform
import sys
import time
from typing import Any

import django
import psycopg2
import sqlalchemy
from psycopg2.extensions import connection as PgConnection

from sync import demo


def log(message: str) -> None:
    """Print a progress line on standard error; standard output is for the JSON alone."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
        "psycopg2": psycopg2.__version__.split()[0],
        "postgresql": server_version,
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }
