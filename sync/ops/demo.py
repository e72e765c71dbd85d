"""The demo database that `make run` creates, registers and reflects."""

import secrets
from dataclasses import dataclass

from django.conf import settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from sync.exceptions import SyncError
from sync.remote.connections import check_connection

DEMO_NAME = "demo"
ROLE_SUFFIX = "_demo_reader"


@dataclass(frozen=True)
class DemoNames:
    """The demo database on the server, and the role dbsync reads it as (catalog and SELECT
    only, never a superuser)."""

    database: str
    role: str


def demo_names(service_database: str | None = None) -> DemoNames:
    """Return the demo's names, derived from the service database's: two dbsync services on
    one PostgreSQL server (dbsync, dbsync_staging) each have a demo of their own."""
    service = service_database or str(settings.DATABASES["default"]["NAME"])
    base = service.encode()[: 63 - len(ROLE_SUFFIX)].decode(errors="ignore")  # 63: NAMEDATALEN
    return DemoNames(f"{base}_demo", f"{base}{ROLE_SUFFIX}")


DEMO_DDL = """
CREATE SCHEMA IF NOT EXISTS library;
CREATE SCHEMA IF NOT EXISTS "Sales 2026";
CREATE TABLE IF NOT EXISTS library.authors (
    id serial PRIMARY KEY, name text NOT NULL, born date
);
CREATE TABLE IF NOT EXISTS library.books (
    id serial PRIMARY KEY,
    author_id int REFERENCES library.authors (id),
    title text NOT NULL,
    price numeric(8, 2),
    tags text[]
);
CREATE OR REPLACE VIEW library.books_by_author AS
    SELECT a.name AS author, count(b.id) AS books
    FROM library.authors a LEFT JOIN library.books b ON b.author_id = a.id
    GROUP BY a.name;
CREATE TABLE IF NOT EXISTS "Sales 2026"."Orders" (
    id bigserial PRIMARY KEY, placed_at timestamptz DEFAULT now(), total numeric(10, 2)
);
CREATE MATERIALIZED VIEW IF NOT EXISTS "Sales 2026".daily_totals AS
    SELECT date_trunc('day', placed_at) AS day, sum(total) AS total
    FROM "Sales 2026"."Orders" GROUP BY 1;
INSERT INTO library.authors (name, born)
    SELECT 'Ursula K. Le Guin', DATE '1929-10-21'
    WHERE NOT EXISTS (SELECT 1 FROM library.authors);
INSERT INTO library.books (author_id, title, price, tags)
    SELECT 1, 'The Dispossessed', 9.99, ARRAY['novel', 'utopia']
    WHERE NOT EXISTS (SELECT 1 FROM library.books);
"""


# What a least-privilege role needs (the README shows the same): CONNECT to read the catalog,
# USAGE and SELECT to read records. Its transactions are read-only by default as well.
READER_GRANTS = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE "{role}" LOGIN;
    END IF;
END $$;
ALTER ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER ROLE "{role}" SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE "{database}" TO "{role}";
GRANT USAGE ON SCHEMA library, "Sales 2026" TO "{role}";
GRANT SELECT ON ALL TABLES IN SCHEMA library, "Sales 2026" TO "{role}";
"""


def server_url(database: str) -> URL:
    """Return a URL to a database on the server that holds the service database."""
    db = settings.DATABASES["default"]
    return URL.create(
        "postgresql+psycopg2",
        username=db["USER"] or None,
        password=db.get("PASSWORD") or None,
        host=db["HOST"] or "127.0.0.1",
        port=int(db["PORT"] or 5432),
        database=database,
    )


def create_demo_database(current_url: str | None = None) -> str:
    """Create (or complete) the demo database and return its reader's URL, password included.

    current_url is the demo's URL as registered: when its role is the demo's and it still
    logs in, its password is kept (another process may be using it); otherwise the role gets
    a new one.
    """
    names = demo_names()
    admin = create_engine(server_url("postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": names.database}
        ).first()
        if exists is None:
            connection.exec_driver_sql(f'CREATE DATABASE "{names.database}"')
    admin.dispose()
    url = server_url(names.database)
    demo = create_engine(url, poolclass=NullPool)
    password = working_password(current_url, names)
    with demo.begin() as connection:
        connection.exec_driver_sql(DEMO_DDL)
        connection.exec_driver_sql(READER_GRANTS.format(role=names.role, database=names.database))
        if password is None:
            # A new password: it is stored encrypted, and nothing else needs it.
            password = secrets.token_urlsafe(18)
            connection.exec_driver_sql(
                f'ALTER ROLE "{names.role}" PASSWORD %(password)s', {"password": password}
            )
    demo.dispose()
    reader = url.set(drivername="postgresql", username=names.role, password=password)
    return reader.render_as_string(hide_password=False)


def working_password(current_url: str | None, names: DemoNames) -> str | None:
    """Return the password of current_url if it is the demo role's and logs in, else None."""
    if current_url is None:
        return None
    current = make_url(current_url)
    if current.username != names.role or current.database != names.database:
        return None
    if not current.password:
        return None
    try:
        check_connection(current_url)
    except SyncError:
        return None
    return str(current.password)
