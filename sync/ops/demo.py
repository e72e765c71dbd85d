"""The demo database that `make run` creates, registers and reflects."""

import secrets

from django.conf import settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

DEMO_NAME = "demo"
DEMO_DATABASE = "dbsync_demo"
# dbsync reads the demo as this role: catalog and SELECT only, never a superuser.
DEMO_ROLE = "dbsync_demo_reader"

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
ALTER ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %(password)s;
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


def create_demo_database() -> str:
    """Create (or complete) the demo database and return its reader's URL, password included."""
    admin = create_engine(server_url("postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": DEMO_DATABASE}
        ).first()
        if exists is None:
            connection.exec_driver_sql(f'CREATE DATABASE "{DEMO_DATABASE}"')
    admin.dispose()
    url = server_url(DEMO_DATABASE)
    demo = create_engine(url, poolclass=NullPool)
    # A new password on every run: it is stored encrypted, and nothing else needs it.
    password = secrets.token_urlsafe(18)
    with demo.begin() as connection:
        connection.exec_driver_sql(DEMO_DDL)
        grants = READER_GRANTS.format(role=DEMO_ROLE, database=DEMO_DATABASE)
        connection.exec_driver_sql(grants, {"password": password})
    demo.dispose()
    reader = url.set(drivername="postgresql", username=DEMO_ROLE, password=password)
    return reader.render_as_string(hide_password=False)
